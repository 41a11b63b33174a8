package doctor

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile/hostfiletest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

func TestMatchImage(t *testing.T) {
	tests := []struct {
		pattern, image string
		want           bool
	}{
		{"icr.io", "icr.io", true},
		{"*.icr.io", "icr.io", false},
		{"*.icr.io", "us.icr.io", true},
		{"*.icr.io", "cp.icr.io", true},
		{"*.icr.io", "private.us.icr.io", false},
		{"private.*.icr.io", "private.us.icr.io", true},
		{"*.icr.io", "us.icr.io.evil.com", false},
		{"*.icr.io", "evilicr.io", false},
		{"registry.*.bluemix.net", "registry.ng.bluemix.net", true},
		{"registry.*.bluemix.net", "registry.bluemix.net", false},
		{"us.icr.io/team", "us.icr.io/team/app", true},
		{"us.icr.io/team", "us.icr.io/other/app", false},
		{"127.0.0.1:5000", "127.0.0.1:5000/team/app", true},
		{"127.0.0.1", "127.0.0.1:5000/team/app", false},
		{"127.0.0.1:5000", "127.0.0.1/team/app", false},
		{"u*.icr.io", "us.icr.io", true},
		{"*.*.icr.io", "private.us.icr.io", true},
		{"[", "icr.io", false},
	}
	for _, tt := range tests {
		if got := MatchImage(tt.pattern, tt.image); got != tt.want {
			t.Errorf("MatchImage(%q, %q) = %v, want %v", tt.pattern, tt.image, got, tt.want)
		}
	}
}

// kubeletOnly runs doctor with only the kubelet checks meaningful: the
// identity checks fail fast (no configuration), which does not matter here.
func kubeletOnly(t *testing.T, yaml string, binMode os.FileMode) *Report {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if binMode != 0 {
		if err := os.WriteFile(filepath.Join(dir, ProviderName), []byte("#!/bin/sh\n"), binMode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, ProviderName), binMode)
	}
	return Run(context.Background(), Env{
		// Two profiles: config.settings fails, so nothing is dialed.
		Config:        config.Config{ProfileID: "a", ProfileName: "b", CacheDir: config.CacheDisabled, MetadataURL: "http://127.0.0.1:1", IAMURL: "http://127.0.0.1:1"},
		KubeletConfig: p, BinDir: dir, ProcDir: "-",
		RegistryHosts: []string{},
	})
}

const taHeader = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: icr-credential-provider
    apiVersion: %s
    matchImages: ["icr.io", "*.icr.io", "private.*.icr.io", "private.icr.io", "registry.bluemix.net", "registry.*.bluemix.net"]
    defaultCacheDuration: "%s"
`

func TestKubeletChecks(t *testing.T) {
	v1 := "credentialprovider.kubelet.k8s.io/v1"
	cfg := func(apiVersion, dcd, extra string) string {
		return strings.Replace(strings.Replace(taHeader, "%s", apiVersion, 1), "%s", dcd, 1) + extra
	}
	ta := func(aud, cacheType, keys string) string {
		return "    tokenAttributes:\n      serviceAccountTokenAudience: " + aud + "\n      cacheType: " + cacheType + "\n      requireServiceAccount: false\n" + keys
	}
	both := "      optionalServiceAccountAnnotationKeys: [" + provider.AnnotationProfileID + ", " + provider.AnnotationProfileName + "]\n"
	tests := []struct {
		name    string
		yaml    string
		binMode os.FileMode
		id      string
		status  Status
		phrase  string
	}{
		{"all good", cfg(v1, "10m", ta("iam", "ServiceAccount", both)), 0o755, CheckTokenAttributes, StatusOK, "profile annotations passed"},
		{"cp.icr.io overlap", cfg(v1, "10m", ""), 0o755, CheckMatchImages, StatusOK, "cp.icr.io"},
		{"wrong audience", cfg(v1, "10m", ta("kubernetes", "ServiceAccount", both)), 0o755, CheckTokenAttributes, StatusFail, `audience "iam"`},
		{"token cache type", cfg(v1, "10m", ta("iam", "Token", both)), 0o755, CheckTokenAttributes, StatusWarn, "cacheType: ServiceAccount"},
		{"no annotation keys", cfg(v1, "10m", ta("iam", "ServiceAccount", "")), 0o755, CheckTokenAttributes, StatusFail, "never learns"},
		{"both required", cfg(v1, "10m", strings.Replace(ta("iam", "ServiceAccount", strings.Replace(both, "optional", "required", 1)), "requireServiceAccount: false", "requireServiceAccount: true", 1)), 0o755, CheckTokenAttributes, StatusFail, "ambiguous"},
		{"one key only", cfg(v1, "10m", ta("iam", "ServiceAccount", "      optionalServiceAccountAnnotationKeys: ["+provider.AnnotationProfileID+"]\n")), 0o755, CheckTokenAttributes, StatusWarn, "only one"},
		{"tokenAttributes with v1beta1 request", cfg("credentialprovider.kubelet.k8s.io/v1beta1", "10m", ta("iam", "ServiceAccount", both)), 0o755, CheckTokenAttributes, StatusFail, "needs the provider's apiVersion"},
		{"unsupported request version", cfg("credentialprovider.kubelet.k8s.io/v2", "10m", ""), 0o755, CheckKubeletProvider, StatusFail, "apiVersion"},
		{"long default cache duration", cfg(v1, "2h", ""), 0o755, CheckKubeletProvider, StatusWarn, "longer than an IAM token lives"},
		{"not executable", cfg(v1, "10m", ""), 0o644, CheckBinary, StatusFail, "chmod 0755"},
		{"group-writable binary", cfg(v1, "10m", ""), 0o775, CheckBinary, StatusFail, "chmod go-w"},
		{"other provider name", strings.Replace(cfg(v1, "10m", ""), "name: icr-credential-provider", "name: ecr-credential-provider", 1), 0o755, CheckKubeletProvider, StatusFail, "no provider named icr-credential-provider"},
		{"strict decode", cfg(v1, "10m", "    matchImage: [x]\n"), 0o755, CheckKubeletConfig, StatusFail, "does not decode strictly"},
		{"private hosts missed", strings.Replace(cfg(v1, "10m", ""), `"private.*.icr.io", "private.icr.io", `, "", 1), 0o755, CheckMatchImages, StatusWarn, "private.au.icr.io"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := kubeletOnly(t, tt.yaml, tt.binMode)
			c, ok := rep.Find(tt.id)
			if !ok {
				t.Fatalf("no %s", tt.id)
			}
			if c.Status != tt.status || !strings.Contains(c.Summary+" "+c.Fix, tt.phrase) {
				t.Errorf("%s: %s %q / %q; want %s with %q", tt.id, c.Status, c.Summary, c.Fix, tt.status, tt.phrase)
			}
		})
	}
}

// TestFindKubelet: the flags of the one kubelet running as root from a
// root-only executable; a user's "kubelet" is ignored and named; with two
// root kubelets none is picked.
func TestFindKubelet(t *testing.T) {
	proc := t.TempDir()
	exe, err := hostfiletest.Executable(filepath.Join(t.TempDir(), "kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(hostfiletest.Process(proc, 42, 0, exe, "/usr/bin/kubelet", "--image-credential-provider-config=/etc/k/c.yaml", "--image-credential-provider-bin-dir", "/opt/bin"))
	must(hostfiletest.Process(proc, 7, 0, exe, "/bin/sh", "-c", "kubelet"))
	must(hostfiletest.Process(proc, 3, 1000, exe, "/home/u/kubelet", "--image-credential-provider-config=/etc/shadow"))
	got := findKubelet(proc, "/nonexistent")
	if got.flags["image-credential-provider-config"] != "/etc/k/c.yaml" || got.flags["image-credential-provider-bin-dir"] != "/opt/bin" || got.origin != "the running kubelet (PID 42)" {
		t.Errorf("got %+v", got)
	}
	if len(got.ignored) != 1 || !strings.Contains(got.ignored[0], "PID 3 (it runs as uid 1000, not root)") {
		t.Errorf("ignored %q", got.ignored)
	}
	must(hostfiletest.Process(proc, 43, 0, exe, "kubelet", "--image-credential-provider-config=/elsewhere"))
	if got := findKubelet(proc, "/nonexistent"); got.flags != nil || !strings.Contains(got.problem, "2 processes named kubelet run as root (PIDs 42, 43)") {
		t.Errorf("two kubelets: %+v", got)
	}
	if got := findKubelet("-", "/nonexistent"); got.flags != nil || got.problem != "" {
		t.Error("ProcDir - must turn the look-up off")
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct{ h, realm, service string }{
		{`Bearer realm="https://us.icr.io/oauth/token",service="registry"`, "https://us.icr.io/oauth/token", "registry"},
		{`Bearer realm=https://us.icr.io/oauth/token,service=registry`, "https://us.icr.io/oauth/token", "registry"},
		{`bearer service="registry", realm="https://icr.io/oauth/token", scope="repository:a/b:pull"`, "https://icr.io/oauth/token", "registry"},
		{`Basic realm="registry"`, "", ""},
	}
	for _, tt := range tests {
		r, s, _ := parseChallenge(tt.h)
		if r != tt.realm || s != tt.service {
			t.Errorf("parseChallenge(%q) = %q, %q", tt.h, r, s)
		}
	}
}

func TestTrustedRealm(t *testing.T) {
	tests := []struct {
		realm, host string
		want        bool
	}{
		{"https://us.icr.io/oauth/token", "us.icr.io", true},
		{"https://icr.io/oauth/token", "us.icr.io", true},
		{"http://us.icr.io/oauth/token", "us.icr.io", false},
		{"https://evil.example.com/oauth/token", "us.icr.io", false},
		{"https://us.icr.io.evil.com/oauth/token", "us.icr.io", false},
		{"http://127.0.0.1:5000/oauth/token", "127.0.0.1:5000", true},
		{"http://10.0.0.1/oauth/token", "127.0.0.1:5000", false},
		{"https://user:pw@us.icr.io/oauth/token", "us.icr.io", false},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.realm)
		if got := trustedRealm(u, tt.host); got != tt.want {
			t.Errorf("trustedRealm(%q, %q) = %v", tt.realm, tt.host, got)
		}
	}
}

func TestRegionOf(t *testing.T) {
	for host, want := range map[string]string{"us.icr.io": "us-south", "private.de.icr.io": "eu-de", "icr.io": "global", "127.0.0.1:5000": "REGION"} {
		if got := regionOf(host); got != want {
			t.Errorf("regionOf(%s) = %s, want %s", host, got, want)
		}
	}
}

// TestFindsTheInstall: doctor finds what install wrote — a directory-style
// config, the kubelet's flags in k3s's kubelet-arg files, the default
// install paths — without being told.
func TestFindsTheInstall(t *testing.T) {
	v1 := "credentialprovider.kubelet.k8s.io/v1"
	yaml := strings.Replace(strings.Replace(taHeader, "%s", v1, 1), "%s", "10m", 1)
	root := t.TempDir()
	cfgDir := filepath.Join(root, "etc/kubernetes/icr-credential-provider/conf.d")
	binDir := filepath.Join(root, "opt/icr-credential-provider/bin")
	for _, d := range []string{cfgDir, binDir, filepath.Join(root, "etc/rancher/k3s/config.yaml.d")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(cfgDir, "50-icr.yaml"), []byte(yaml), 0o644)
	os.WriteFile(filepath.Join(binDir, ProviderName), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/rancher/k3s/config.yaml.d/90-icr-credential-provider.yaml"),
		[]byte("kubelet-arg:\n  - image-credential-provider-config="+cfgDir+"\n  - image-credential-provider-bin-dir="+binDir+"\n"), 0o644)
	rep := Run(context.Background(), Env{
		Config:   config.Config{ProfileID: "a", ProfileName: "b", CacheDir: config.CacheDisabled, MetadataURL: "http://127.0.0.1:1", IAMURL: "http://127.0.0.1:1"},
		ProcDir:  "-",
		HostRoot: root, RegistryHosts: []string{},
	})
	c, _ := rep.Find(CheckKubeletConfig)
	if c.Status != StatusOK || !strings.Contains(c.Summary, "50-icr.yaml") || !strings.Contains(c.Summary, "k3s's kubelet-arg's --image-credential-provider-config") {
		t.Errorf("kubelet.config: %s %s", c.Status, c.Summary)
	}
	if c, _ := rep.Find(CheckBinary); c.Status != StatusOK {
		t.Errorf("kubelet.binary: %s %s", c.Status, c.Summary)
	}
	for _, want := range []string{"/etc/kubernetes/icr-credential-provider/config.yaml"} {
		if DefaultKubeletConfigPaths[0] != want {
			t.Errorf("install's config path %s is not looked at first", want)
		}
	}
	if DefaultBinDirs[0] != "/opt/icr-credential-provider/bin" {
		t.Error("install's bin dir is not looked at first")
	}
}
