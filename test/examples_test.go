package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	cpinstall "k8s.io/kubelet/pkg/apis/credentialprovider/install"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

// strictDecoder decodes Kubernetes objects as `kubectl apply
// --validate=strict` would: unknown and duplicate fields are errors.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// documents splits a multi-document YAML file.
func documents(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

// The kubelet configs decode strictly (kubelet's own v1 types), cover every
// served host shape, and carry no secret.
func TestExampleKubeletConfigs(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if len(files) != 3 {
		t.Fatalf("kubelet examples: %v", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, _ := os.ReadFile(f)
			cfg, err := installer.DecodeConfig(b)
			if err != nil {
				t.Fatal(err)
			}
			p := cfg.Providers[0]
			if p.Name != ProviderName || p.APIVersion != installer.ProviderAPIVersion || p.DefaultCacheDuration == nil {
				t.Errorf("provider %s %s", p.Name, p.APIVersion)
			}
			if !slices.Equal(p.MatchImages, installer.DefaultMatchImages()) {
				t.Errorf("matchImages %v, want %v", p.MatchImages, installer.DefaultMatchImages())
			}
			for _, e := range p.Env {
				if !strings.HasPrefix(e.Name, "ICR_") || e.Name == "ICR_API_KEY" {
					t.Errorf("env %s: only ICR_* settings, and never a key", e.Name)
				}
			}
			if strings.Contains(f, "service-account") {
				want := installer.ServiceAccountTokenAttributes()
				got, _ := json.Marshal(p.TokenAttributes)
				w, _ := json.Marshal(want)
				if string(got) != string(w) {
					t.Errorf("tokenAttributes %s, want %s", got, w)
				}
			} else if p.TokenAttributes != nil {
				t.Error("tokenAttributes outside service-account.yaml")
			}
			// The kubelet's own loader (strict codec, validation) accepts
			// the file as it is.
			if out := (Kubelet{ConfigPath: f}).Run(t); out.RegisterError != "" {
				t.Errorf("the kubelet refuses %s: %s", f, out.RegisterError)
			}
		})
	}
}

// Unknown fields fail: the tests above would catch a typo.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join(examplesDir, "node-identity.yaml"))
	bad := bytes.Replace(b, []byte("    matchImages:"), []byte("    matchImage: []\n    matchImages:"), 1)
	// The error names the line, never the file's content (the decoder may
	// be pointed at any root-only file).
	line := bytes.Count(b[:bytes.Index(b, []byte("    matchImages:"))], []byte("\n")) + 1
	if _, err := installer.DecodeConfig(bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("line %d: a field the kubelet does not know", line)) {
		t.Errorf("kubelet config with an unknown field: %v", err)
	}
	var kc kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(bad, &kc); err == nil {
		t.Error("yaml.UnmarshalStrict accepted an unknown field")
	}

	ds, err := os.ReadFile(filepath.Join("..", "examples", "install", "base", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	badDS := bytes.Replace(ds, []byte("      priorityClassName:"), []byte("      priorityClass: x\n      priorityClassName:"), 1)
	if _, _, err := strictDecoder.Decode(badDS, nil, nil); err == nil || !strings.Contains(err.Error(), "priorityClass") {
		t.Errorf("DaemonSet with an unknown field: %v", err)
	}

	k, _ := os.ReadFile(filepath.Join("..", "examples", "install", "kustomization.yaml"))
	var kz kustomize.Kustomization
	if err := yaml.UnmarshalStrict(append(k, []byte("resourcez: [x]\n")...), &kz); err == nil {
		t.Error("kustomization with an unknown field accepted")
	}
}

// The sample requests decode strictly, as the plugin's input, with the
// kubelet's own credentialprovider API types.
func TestExampleRequests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "requests", "*.json"))
	if len(files) == 0 {
		t.Fatal("no sample requests")
	}
	s := runtime.NewScheme()
	cpinstall.Install(s)
	dec := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDecoder(credentialprovider.SchemeGroupVersion)
	for _, f := range files {
		b, _ := os.ReadFile(f)
		obj, gvk, err := dec.Decode(b, nil, nil)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		req, ok := obj.(*credentialprovider.CredentialProviderRequest)
		if !ok || req.Image == "" || gvk.Kind != "CredentialProviderRequest" {
			t.Errorf("%s: %T %v", f, obj, gvk)
		}
	}
	bad := []byte(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"icr.io/a","imag":"x"}`)
	if _, _, err := dec.Decode(bad, nil, nil); err == nil {
		t.Error("a request with an unknown field decoded")
	}
}
