package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKubeletConfigVersions(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    string
	}{
		{"v1", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  matchImages: [icr.io]\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  defaultCacheDuration: 10m\n", ""},
		{"v1beta1", "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  matchImages: [icr.io]\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  defaultCacheDuration: 10m\n", ""},
		{"unknown field", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  matchImage: [icr.io]\n", "line 5: a field the kubelet does not know"},
		{"duplicate field", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  name: b\n", "line 5: a key given twice"},
		{"wrong kind", "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n", "its kind is not CredentialProviderConfig"},
		{"wrong version", "apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\n", "not one of"},
		{"tokenAttributes in v1alpha1", "apiVersion: kubelet.config.k8s.io/v1alpha1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  tokenAttributes: {serviceAccountTokenAudience: iam}\n", "tokenAttributes"},
		{"bad duration", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  defaultCacheDuration: SECRETVALUE\n", "an invalid duration"},
		{"wrong type", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: [SECRETVALUE]\n", "field providers.name has a value of type array, not string"},
		{"not YAML", "root:SECRETVALUE:19000:0:99999:7:::\nbin:*:19000\n  x: SECRETVALUE: y\n", "it is not valid YAML"},
		{"not JSON", `{"apiVersion": "SECRETVALUE`, "it is not valid YAML"},
		{"unknown env key", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: a\n  env:\n  - name: X\n    value: \"5\"\n    SECRETVALUE: 1\n", "line 8: a field the kubelet does not know"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeAnyVersion([]byte(tt.yaml))
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
			// The file may be any root-only file: none of it is repeated.
			if err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "matchImage") || strings.Contains(err.Error(), "KubeletConfiguration")) {
				t.Fatalf("the error quotes the file: %v", err)
			}
		})
	}
}

// TestReadKubeletConfigDirectory: a directory is read as the kubelet reads
// it: *.json, *.yaml and *.yml in lexicographic order, providers together,
// a name twice refused.
func TestReadKubeletConfigDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, providers string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"+providers), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string {
		return "- name: " + name + "\n  matchImages: [icr.io]\n  apiVersion: credentialprovider.kubelet.k8s.io/v1\n  defaultCacheDuration: 10m\n"
	}
	write("20-icr.yaml", p("icr-credential-provider"))
	write("10-ecr.json", p("ecr-credential-provider"))
	write("30-other.yml", p("other"))
	write("README.txt", "not: read")
	kc, err := ReadKubeletConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, pr := range kc.Providers {
		names = append(names, pr.Name)
	}
	if strings.Join(names, ",") != "ecr-credential-provider,icr-credential-provider,other" || len(kc.Files) != 3 {
		t.Fatalf("providers %v from %v", names, kc.Files)
	}
	if _, ok := kc.Provider("icr-credential-provider"); !ok {
		t.Error("Provider did not find icr-credential-provider")
	}
	write("40-dup.yaml", p("other"))
	if _, err := ReadKubeletConfig(dir); err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Errorf("a provider twice: %v", err)
	}
	if _, err := ReadKubeletConfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "has no *.json") {
		t.Errorf("an empty directory: %v", err)
	}
}
