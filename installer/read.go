package installer

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"
)

// ConfigVersions are the API versions of CredentialProviderConfig the
// kubelet reads, newest first; v1beta1 and v1alpha1 have v1's fields but
// tokenAttributes.
var ConfigVersions = []string{"kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"}

// KubeletConfig is a CredentialProviderConfig as the kubelet reads it: the
// files it came from, each file's apiVersion, and the providers of all of
// them.
type KubeletConfig struct {
	Files       []string
	APIVersions []string
	Providers   []kubeletv1.CredentialProvider
}

// ReadKubeletConfig reads --image-credential-provider-config as the kubelet
// does: a file, or a directory whose *.json, *.yaml and *.yml files are read
// in lexicographic order and whose providers are taken together (a name
// twice is an error). Every file is decoded strictly, in any of
// ConfigVersions.
func ReadKubeletConfig(path string) (*KubeletConfig, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	kc := &KubeletConfig{Files: []string{path}}
	if fi.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, err
		}
		kc.Files = nil
		for _, e := range ents {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".json" || ext == ".yaml" || ext == ".yml") {
				kc.Files = append(kc.Files, filepath.Join(path, e.Name()))
			}
		}
		slices.Sort(kc.Files)
		if len(kc.Files) == 0 {
			return nil, fmt.Errorf("directory %s has no *.json, *.yaml or *.yml file", path)
		}
	}
	seen := map[string]bool{}
	for _, f := range kc.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		v, cfg, err := decodeAnyVersion(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		kc.APIVersions = append(kc.APIVersions, v)
		for _, p := range cfg.Providers {
			if seen[p.Name] {
				return nil, fmt.Errorf("%s: provider %q is named twice", f, p.Name)
			}
			seen[p.Name] = true
			kc.Providers = append(kc.Providers, p)
		}
	}
	return kc, nil
}

// Provider returns the provider entry named name.
func (kc *KubeletConfig) Provider(name string) (*kubeletv1.CredentialProvider, bool) {
	for i := range kc.Providers {
		if kc.Providers[i].Name == name {
			return &kc.Providers[i], true
		}
	}
	return nil, false
}

// ReadProvider reads the kubelet config at path and returns the provider
// entry named name, with its env as a map.
func ReadProvider(path, name string) (ProviderEntry, error) {
	kc, err := ReadKubeletConfig(path)
	if err != nil {
		return ProviderEntry{}, fmt.Errorf("cannot read the kubelet's credential provider config: %w", err)
	}
	p, ok := kc.Provider(name)
	if !ok {
		return ProviderEntry{}, fmt.Errorf("the kubelet's credential provider config %s has no provider named %s", path, name)
	}
	e := ProviderEntry{Args: p.Args, Env: map[string]string{}}
	for _, v := range p.Env {
		e.Env[v.Name] = v.Value
	}
	return e, nil
}

// ProviderEntry is what the plugin is run with: its arguments and the
// environment the config adds.
type ProviderEntry struct {
	Args []string
	Env  map[string]string
}

// decodeAnyVersion decodes a CredentialProviderConfig strictly (unknown or
// duplicate fields are errors, as the kubelet treats them) in any of
// ConfigVersions.
func decodeAnyVersion(data []byte) (string, *kubeletv1.CredentialProviderConfig, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return "", nil, err
	}
	if tm.Kind != "CredentialProviderConfig" {
		return "", nil, fmt.Errorf("kind is %q, not CredentialProviderConfig", tm.Kind)
	}
	if !slices.Contains(ConfigVersions, tm.APIVersion) {
		return "", nil, fmt.Errorf("apiVersion %q is not one of %s", tm.APIVersion, strings.Join(ConfigVersions, ", "))
	}
	var c kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return "", nil, err
	}
	for _, p := range c.Providers {
		if p.TokenAttributes != nil && tm.APIVersion != ConfigVersions[0] {
			return "", nil, fmt.Errorf("unknown field \"tokenAttributes\" in %s (it exists in %s only)", tm.APIVersion, ConfigVersions[0])
		}
	}
	return tm.APIVersion, &c, nil
}
