package installer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// MaxConfigFile bounds a configuration, unit or environment file read by
// root on the node's say-so; the largest real one is a few KiB.
const MaxConfigFile = 1 << 20

// ConfigVersions are the API versions of CredentialProviderConfig the
// kubelet reads, newest first; v1beta1 and v1alpha1 have v1's fields but
// tokenAttributes.
var ConfigVersions = []string{"kubelet.config.k8s.io/v1", "kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"}

// KubeletConfig is a CredentialProviderConfig as the kubelet reads it: the
// files it came from, each file's apiVersion, and all their providers.
type KubeletConfig struct {
	Files       []string
	APIVersions []string
	Providers   []kubeletv1.CredentialProvider
}

// ReadKubeletConfig reads --image-credential-provider-config as the kubelet
// does: a file, or a directory whose *.json, *.yaml and *.yml files are read
// in name order, their providers taken together (a name twice is an error),
// each decoded strictly in any of ConfigVersions. Only what root can trust
// is read (hostfile.ReadTrusted, at most MaxConfigFile); a file that does
// not decode is a *DecodeError, which holds none of its content.
func ReadKubeletConfig(path string) (*KubeletConfig, error) {
	if err := hostfile.CheckPath(path); err != nil {
		return nil, err
	}
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
		if len(kc.Files) == 0 {
			return nil, fmt.Errorf("directory %s has no *.json, *.yaml or *.yml file", path)
		}
	}
	seen := map[string]bool{}
	for _, f := range kc.Files {
		data, err := hostfile.ReadTrusted(f, MaxConfigFile)
		if err != nil {
			return nil, err
		}
		v, cfg, err := decodeAnyVersion(data)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.File = f
			}
			return nil, err
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

// ProviderEntry is what the plugin is run with: arguments, and the
// environment the config adds.
type ProviderEntry struct {
	Args []string
	Env  map[string]string
}

// DecodeError is a CredentialProviderConfig that does not decode: where
// and what kind of problem, never a value, key or fragment of the file
// (it may be any root-only file a flag names).
type DecodeError struct {
	File string // "" for content that came from no file
	Line int    // 0 if unknown
	Kind string // e.g. "a field the kubelet does not know"
}

func (e *DecodeError) Error() string {
	where := cmp.Or(e.File, "the config")
	if e.Line > 0 {
		where += " line " + strconv.Itoa(e.Line)
	}
	return where + ": " + e.Kind
}

// decodeAnyVersion decodes a CredentialProviderConfig strictly (unknown or
// duplicate fields are errors, as the kubelet treats them) in any of
// ConfigVersions. Errors are *DecodeError.
func decodeAnyVersion(data []byte) (string, *kubeletv1.CredentialProviderConfig, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(data, &tm); err != nil {
		return "", nil, decodeProblem(data, err)
	}
	if tm.Kind != "CredentialProviderConfig" {
		return "", nil, &DecodeError{Kind: "its kind is not CredentialProviderConfig"}
	}
	if !slices.Contains(ConfigVersions, tm.APIVersion) {
		return "", nil, &DecodeError{Kind: "its apiVersion is not one of " + strings.Join(ConfigVersions, ", ")}
	}
	var c kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return "", nil, decodeProblem(data, err)
	}
	for _, p := range c.Providers {
		if p.TokenAttributes != nil && tm.APIVersion != ConfigVersions[0] {
			return "", nil, &DecodeError{Kind: fmt.Sprintf("tokenAttributes is a field of %s only, not of %s", ConfigVersions[0], tm.APIVersion)}
		}
	}
	return tm.APIVersion, &c, nil
}

// decodeProblem says where and what kind of problem err (from
// sigs.k8s.io/yaml) is, from its type or the decoders' fixed wording; its
// text, which quotes the file, is dropped.
func decodeProblem(data []byte, err error) *DecodeError {
	msg := err.Error()
	de := &DecodeError{Line: lineOf(msg), Kind: "it is not valid YAML"}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		// Value is "string", "number -5", …: its first word only. Field
		// is the path of the struct's own JSON names (no maps inside).
		kind, _, _ := strings.Cut(typeErr.Value, " ")
		de.Kind = "field " + typeErr.Field + " has a value of type " + kind + ", not " + typeErr.Type.String()
	case errors.As(err, &syntaxErr):
		de.Kind = "it is not valid JSON"
	case strings.Contains(msg, "unknown field "):
		de.Kind = "a field the kubelet does not know (a typo, or a field of another apiVersion)"
		if _, rest, ok := strings.Cut(msg, `unknown field "`); ok {
			name, _, _ := strings.Cut(rest, `"`)
			de.Line = keyLine(data, name)
		}
	case strings.Contains(msg, "already set in map") || strings.Contains(msg, "duplicate field") || strings.Contains(msg, "already defined"):
		de.Kind = "a key given twice"
	case strings.Contains(msg, "time: "):
		de.Kind = `an invalid duration (write it like "10m")`
	case strings.Contains(msg, "cannot unmarshal"):
		de.Kind = "a value of the wrong type"
	}
	return de
}

// lineOf is the number after the first "line " in a decoder's message.
func lineOf(msg string) int {
	_, rest, _ := strings.Cut(msg, "line ")
	if end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); end >= 0 {
		rest = rest[:end]
	}
	n, _ := strconv.Atoi(rest)
	return n
}

// keyLine is the first line of data that holds name as a YAML or JSON key.
func keyLine(data []byte, name string) int {
	for i, line := range strings.Split(string(data), "\n") {
		l := strings.TrimLeft(strings.TrimSpace(line), "- {,")
		l = strings.TrimPrefix(strings.TrimPrefix(l, `"`), "'")
		if rest, ok := strings.CutPrefix(l, name); ok {
			rest = strings.TrimLeft(rest, `"' `)
			if strings.HasPrefix(rest, ":") {
				return i + 1
			}
		}
	}
	return 0
}
