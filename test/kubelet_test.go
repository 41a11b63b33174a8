package test

// A harness that runs the kubelet's own credential-provider code
// (k8s.io/kubernetes/pkg/credentialprovider/plugin) against the plugin
// binary. The kubelet code keeps its registered providers in package
// globals (registering a name twice panics), so every Kubelet.Run is a new
// process: this test binary re-executed in "kubelet mode" (see TestMain),
// which registers one config, performs the lookups in order (sharing the
// kubelet's in-memory cache, as one kubelet does) and prints the results as
// JSON.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/klog/v2"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"k8s.io/kubernetes/pkg/credentialprovider/plugin"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// ProviderName is the provider's name in the configs and the binary's file
// name in the bin dir.
const ProviderName = "icr-credential-provider"

// kubeletSpecEnv names the spec file that turns the test binary into a
// kubelet (see TestMain).
const kubeletSpecEnv = "ICR_E2E_KUBELET_SPEC"

// pluginBinDir holds the plugin built by TestMain as ProviderName.
var pluginBinDir string

func TestMain(m *testing.M) {
	if spec := os.Getenv(kubeletSpecEnv); spec != "" {
		os.Exit(kubeletMain(spec))
	}
	dir, err := os.MkdirTemp("", "icr-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBinDir = dir
	// Built in the root module, with its go.mod, as it ships.
	build := exec.Command("go", "build", "-o", filepath.Join(dir, ProviderName), "./cmd/icr-credential-provider")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the plugin:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// ServiceAccount is a service account the kubelet can look up, with the
// tokens the API server would issue for it, by audience.
type ServiceAccount struct {
	Namespace, Name, UID string
	Annotations          map[string]string
	Tokens               map[string]string
}

// Pod is the pod an image is pulled for.
type Pod struct {
	Namespace, Name, UID, ServiceAccountName string
}

// Lookup is one keyring lookup, as the kubelet makes before a pull. Pod nil:
// no pod context.
type Lookup struct {
	Image string
	Pod   *Pod `json:",omitempty"`
}

// Auth is one credential the keyring returned.
type Auth struct {
	Username, Password string
	// ServiceAccount is the credential's source as the kubelet tracks it
	// (namespace/name/uid of the service account whose token produced
	// it); empty when no service account was involved.
	ServiceAccount string `json:",omitempty"`
}

// LookupResult is the keyring's answer.
type LookupResult struct {
	Lookup
	Found bool
	Auths []Auth
}

// TokenRequest is a service-account token the kubelet asked for.
type TokenRequest struct {
	Namespace, Name string
	Audiences       []string
	BoundPod        string
}

// KubeletOutput is what one kubelet run reports.
type KubeletOutput struct {
	// RegisterError: RegisterCredentialProviderPlugins refused the config.
	RegisterError string
	Results       []LookupResult
	TokenRequests []TokenRequest
	// Stderr is the kubelet's log (klog) including the plugin's stderr.
	Stderr string
}

// Kubelet is one kubelet process: a config, a bin dir, the API objects it
// can see.
type Kubelet struct {
	ConfigPath, BinDir string
	// FeatureGates are set on the kubelet's default feature gate.
	FeatureGates    map[string]bool
	ServiceAccounts []ServiceAccount
	// Env is the kubelet's environment, inherited by the plugin (PATH and
	// HOME are always set; nothing else leaks in from the test's
	// environment).
	Env []string
	// Verbosity is the kubelet's klog -v level (0: the default).
	Verbosity int
}

type kubeletSpec struct {
	Kubelet
	Lookups []Lookup
}

// Run starts the kubelet, registers the config and performs the lookups in
// order. It fails the test only if the process itself fails.
func (k Kubelet) Run(t testing.TB, lookups ...Lookup) KubeletOutput {
	t.Helper()
	if k.BinDir == "" {
		k.BinDir = pluginBinDir
	}
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.json")
	b, _ := json.Marshal(kubeletSpec{Kubelet: k, Lookups: lookups})
	if err := os.WriteFile(spec, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, kubeletSpecEnv + "=" + spec}, k.Env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := KubeletOutput{}
	if jerr := json.Unmarshal(stdout.Bytes(), &out); err != nil || jerr != nil {
		t.Fatalf("kubelet process: %v, %v\n%s", err, jerr, redactAll(stderr.String(), secretsIn(nil, k)))
	}
	out.Stderr = stderr.String()
	return out
}

// kubeletMain is the re-executed test binary: a kubelet with one config.
func kubeletMain(specPath string) int {
	b, err := os.ReadFile(specPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var spec kubeletSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	klog.SetOutput(os.Stderr)
	if spec.Verbosity > 0 {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		if err := fs.Set("v", strconv.Itoa(spec.Verbosity)); err != nil {
			fmt.Fprintln(os.Stderr, "klog verbosity:", err)
			return 2
		}
	}
	if len(spec.FeatureGates) > 0 {
		if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(spec.FeatureGates); err != nil {
			fmt.Fprintln(os.Stderr, "feature gates:", err)
			return 2
		}
	}
	sas := map[string]ServiceAccount{}
	for _, sa := range spec.ServiceAccounts {
		sas[sa.Namespace+"/"+sa.Name] = sa
	}
	var mu sync.Mutex
	var out KubeletOutput
	getSA := func(ns, name string) (*corev1.ServiceAccount, error) {
		sa, ok := sas[ns+"/"+name]
		if !ok {
			return nil, fmt.Errorf("serviceaccount %s/%s not found", ns, name)
		}
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, UID: types.UID(sa.UID), Annotations: sa.Annotations,
		}}, nil
	}
	getToken := func(ns, name string, tr *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
		rec := TokenRequest{Namespace: ns, Name: name, Audiences: tr.Spec.Audiences}
		if tr.Spec.BoundObjectRef != nil {
			rec.BoundPod = tr.Spec.BoundObjectRef.Name
		}
		mu.Lock()
		out.TokenRequests = append(out.TokenRequests, rec)
		mu.Unlock()
		sa, ok := sas[ns+"/"+name]
		if !ok || len(tr.Spec.Audiences) != 1 || sa.Tokens[tr.Spec.Audiences[0]] == "" {
			return nil, fmt.Errorf("no token for serviceaccount %s/%s audiences %v", ns, name, tr.Spec.Audiences)
		}
		res := tr.DeepCopy()
		res.Status = authenticationv1.TokenRequestStatus{
			Token:               sa.Tokens[tr.Spec.Audiences[0]],
			ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Hour)),
		}
		return res, nil
	}
	if err := plugin.RegisterCredentialProviderPlugins(spec.ConfigPath, spec.BinDir, getToken, getSA); err != nil {
		out.RegisterError = err.Error()
	} else {
		for _, l := range spec.Lookups {
			p := l.Pod
			if p == nil {
				p = &Pod{}
			}
			keyring := plugin.NewExternalCredentialProviderDockerKeyring(p.Namespace, p.Name, p.UID, p.ServiceAccountName)
			auths, found := keyring.Lookup(l.Image)
			r := LookupResult{Lookup: l, Found: found}
			for _, a := range auths {
				auth := Auth{Username: a.Username, Password: a.Password}
				if a.Source != nil && a.Source.ServiceAccount != nil {
					c := a.Source.ServiceAccount
					auth.ServiceAccount = c.Namespace + "/" + c.Name + "/" + c.UID
				}
				r.Auths = append(r.Auths, auth)
			}
			out.Results = append(out.Results, r)
		}
	}
	klog.Flush()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

// ConfigOptions rewrite an example config for a test.
type ConfigOptions struct {
	// Emulator: ICR_IAM_URL and ICR_METADATA_URL point at it.
	Emulator *iamtest.Server
	// CacheDir: ICR_CACHE_DIR ("none" turns the disk cache off).
	CacheDir string
	// Env entries set (replacing any of the same name); an empty value
	// removes the entry.
	Env map[string]string
	// TokenAttributes replaces the provider's tokenAttributes if non-nil.
	TokenAttributes *kubeletv1.ServiceAccountTokenAttributes
	// NoTokenAttributes removes them.
	NoTokenAttributes bool
}

// WriteConfig reads a kubelet config (strictly), applies o to its single
// provider and writes it to a new file in a temporary directory.
func WriteConfig(t testing.TB, example string, o ConfigOptions) string {
	t.Helper()
	b, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var cfg kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatalf("%s: %v", example, err)
	}
	if len(cfg.Providers) != 1 {
		t.Fatalf("%s: %d providers, want 1", example, len(cfg.Providers))
	}
	p := &cfg.Providers[0]
	set := map[string]string{}
	if o.Emulator != nil {
		set["ICR_IAM_URL"] = o.Emulator.IAMURL()
		set["ICR_METADATA_URL"] = o.Emulator.MetadataURL()
	}
	if o.CacheDir != "" {
		set["ICR_CACHE_DIR"] = o.CacheDir
	}
	for k, v := range o.Env {
		set[k] = v
	}
	var env []kubeletv1.ExecEnvVar
	for _, e := range p.Env {
		if v, ok := set[e.Name]; ok {
			delete(set, e.Name)
			if v == "" {
				continue
			}
			e.Value = v
		}
		env = append(env, e)
	}
	for _, k := range sortedKeys(set) {
		if set[k] != "" {
			env = append(env, kubeletv1.ExecEnvVar{Name: k, Value: set[k]})
		}
	}
	p.Env = env
	if o.TokenAttributes != nil {
		p.TokenAttributes = o.TokenAttributes
	}
	if o.NoTokenAttributes {
		p.TokenAttributes = nil
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "credential-provider-config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// secretsIn collects every secret a run can know: returned passwords,
// service-account tokens, and extra.
func secretsIn(results []LookupResult, k Kubelet, extra ...string) []string {
	s := append([]string{}, extra...)
	for _, r := range results {
		for _, a := range r.Auths {
			s = append(s, a.Password)
		}
	}
	for _, sa := range k.ServiceAccounts {
		for _, tok := range sa.Tokens {
			s = append(s, tok)
		}
	}
	return s
}

func redactAll(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	return s
}

// AssertNoSecrets fails if a secret appears in the kubelet's log (which
// includes the plugin's stderr).
func AssertNoSecrets(t testing.TB, k Kubelet, out KubeletOutput, extra ...string) {
	t.Helper()
	for _, sec := range secretsIn(out.Results, k, extra...) {
		if len(sec) >= 4 && strings.Contains(out.Stderr, sec) {
			t.Errorf("a secret appears in the kubelet's log:\n%s", redactAll(out.Stderr, []string{sec}))
		}
	}
}
