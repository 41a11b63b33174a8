package test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	cpinstall "k8s.io/kubelet/pkg/apis/credentialprovider/install"
	kustomize "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
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

func decodeObjects(t *testing.T, path string) []runtime.Object {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for i, d := range documents(b) {
		obj, _, err := strictDecoder.Decode(d, nil, nil)
		if err != nil {
			t.Fatalf("%s document %d: %v", path, i, err)
		}
		objs = append(objs, obj)
	}
	return objs
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
	if _, err := installer.DecodeConfig(bad); err == nil || !strings.Contains(err.Error(), "matchImage") {
		t.Errorf("kubelet config with an unknown field: %v", err)
	}
	var kc kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(bad, &kc); err == nil {
		t.Error("yaml.UnmarshalStrict accepted an unknown field")
	}

	ds, _ := os.ReadFile(filepath.Join("..", "examples", "install", "daemonset.yaml"))
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

func TestExampleDaemonSet(t *testing.T) {
	objs := decodeObjects(t, filepath.Join("..", "examples", "install", "daemonset.yaml"))
	ds, ok := objs[0].(*appsv1.DaemonSet)
	if len(objs) != 1 || !ok {
		t.Fatalf("objects %T", objs)
	}
	if ds.Namespace != "kube-system" {
		t.Errorf("namespace %q", ds.Namespace)
	}
	spec := ds.Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v: want one that tolerates every taint", spec.Tolerations)
	}
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
		t.Fatalf("%d init containers, %d containers", len(spec.InitContainers), len(spec.Containers))
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[res]; !ok {
				t.Errorf("%s: no %s request", c.Name, res)
			}
			if _, ok := c.Resources.Limits[res]; !ok {
				t.Errorf("%s: no %s limit", c.Name, res)
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Privileged != nil && *sc.Privileged ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: securityContext %+v", c.Name, sc)
		}
	}
	ic := spec.InitContainers[0]
	args := strings.Join(ic.Args, " ")
	if !strings.HasPrefix(args, "install ") {
		t.Errorf("init container args %q", args)
	}
	// The flags point into the hostPath mounts.
	mounts := map[string]string{}
	for _, m := range ic.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath == nil {
			t.Errorf("volume %s is not a hostPath", v.Name)
			continue
		}
		hostPaths[v.Name] = v.HostPath.Path
	}
	for flag, vol := range map[string]string{"--bin-dir=": "bin", "--config=": "config"} {
		i := slices.IndexFunc(ic.Args, func(a string) bool { return strings.HasPrefix(a, flag) })
		if i < 0 || mounts[vol] == "" || hostPaths[vol] == "" || !strings.HasPrefix(ic.Args[i][len(flag):], mounts[vol]) {
			t.Errorf("%s does not point into the %s hostPath mount (%v, %v)", flag, vol, mounts, hostPaths)
		}
	}
	if ds.Spec.Selector == nil || ds.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != ds.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Error("selector does not match the template's labels")
	}
}

func TestExampleInstallObjects(t *testing.T) {
	sa, ok := decodeObjects(t, filepath.Join("..", "examples", "install", "serviceaccount.yaml"))[0].(*corev1.ServiceAccount)
	if !ok || sa.Namespace != "kube-system" || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("service account %+v", sa)
	}
	rbac := decodeObjects(t, filepath.Join("..", "examples", "install", "service-account-rbac.yaml"))
	if len(rbac) != 2 {
		t.Fatalf("%d RBAC objects", len(rbac))
	}
	role, ok1 := rbac[0].(*rbacv1.ClusterRole)
	binding, ok2 := rbac[1].(*rbacv1.ClusterRoleBinding)
	if !ok1 || !ok2 {
		t.Fatalf("RBAC objects %T %T", rbac[0], rbac[1])
	}
	r := role.Rules[0]
	if !slices.Equal(r.Resources, []string{provider.ServiceAccountAudience}) || !slices.Equal(r.Verbs, []string{"request-serviceaccounts-token-audience"}) {
		t.Errorf("rule %+v", r)
	}
	if binding.RoleRef.Name != role.Name || binding.Subjects[0].Name != "system:nodes" {
		t.Errorf("binding %+v", binding)
	}
}

func TestExampleKustomization(t *testing.T) {
	dir := filepath.Join("..", "examples", "install")
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomize.Kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		t.Fatal(err)
	}
	if k.Kind != kustomize.KustomizationKind || k.APIVersion != kustomize.KustomizationVersion {
		t.Errorf("kind %q apiVersion %q", k.Kind, k.APIVersion)
	}
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("resource %s: %v", r, err)
		}
	}
	if !slices.Contains(k.Resources, "daemonset.yaml") {
		t.Error("the DaemonSet is not a resource")
	}
	ds := decodeObjects(t, filepath.Join(dir, "daemonset.yaml"))[0].(*appsv1.DaemonSet)
	for _, im := range k.Images {
		if im.Name != strings.Split(ds.Spec.Template.Spec.InitContainers[0].Image, ":")[0] {
			t.Errorf("images entry %q does not name the installer image", im.Name)
		}
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
