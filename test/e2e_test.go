package test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// examplesDir holds the kubelet configs under test.
var examplesDir = filepath.Join("..", "examples", "kubelet")

// servedImages are images of every shape the example matchImages cover.
var servedImages = []string{
	"us.icr.io/team/app",
	"icr.io/team/app",
	"private.icr.io/team/app",
	"private.de.icr.io/team/app",
	"jp2.icr.io/team/app:1.0",
	"registry.bluemix.net/team/app",
	"registry.eu-de.bluemix.net/team/app",
}

// notServedImages get no credentials: not matched at all (docker.io,
// look-alikes), or matched by "*.icr.io" but answered empty (cp.icr.io).
var notServedImages = []string{
	"docker.io/library/nginx",
	"nginx",
	"cp.icr.io/cp/ibm-mq",
	"us.icr.io.evil.com/team/app",
	"evilicr.io/team/app",
}

func lookups(images ...string) []Lookup {
	var l []Lookup
	for _, im := range images {
		l = append(l, Lookup{Image: im})
	}
	return l
}

// assertMinted checks that the credential is iambearer + an IAM token that
// the emulator itself minted (its registry accepts it) for the wanted
// identity (a substring of the token's id or iam_id).
func assertMinted(t *testing.T, emu *iamtest.Server, r LookupResult, wantIdentity string) {
	t.Helper()
	if !r.Found || len(r.Auths) != 1 {
		t.Errorf("%s: found %v, %d credentials; want one", r.Image, r.Found, len(r.Auths))
		return
	}
	a := r.Auths[0]
	if a.Username != "iambearer" {
		t.Errorf("%s: username %q, want iambearer", r.Image, a.Username)
	}
	claims, err := iamtest.DecodeClaims(a.Password)
	if err != nil {
		t.Errorf("%s: the password is not an IAM token: %v", r.Image, err)
		return
	}
	if !strings.Contains(claims.ID+" "+claims.IAMID, wantIdentity) {
		t.Errorf("%s: token for %s %s, want %s", r.Image, claims.SubType, claims.ID, wantIdentity)
	}
	req, _ := http.NewRequest(http.MethodGet, emu.URL+"/oauth/token?service=registry&scope=repository:team/app:pull", nil)
	req.SetBasicAuth(a.Username, a.Password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("%s: the emulator's registry refuses the credential: %s", r.Image, resp.Status)
	}
}

func assertNotServed(t *testing.T, r LookupResult) {
	t.Helper()
	if r.Found || len(r.Auths) != 0 {
		t.Errorf("%s: got %d credentials, want none", r.Image, len(r.Auths))
	}
}

// checkRun asserts the common outcome of a run of servedImages then
// notServedImages.
func checkRun(t *testing.T, emu *iamtest.Server, k Kubelet, out KubeletOutput, wantIdentity string, extraSecrets ...string) {
	t.Helper()
	if out.RegisterError != "" {
		t.Fatalf("the kubelet refused the config: %s", out.RegisterError)
	}
	if len(out.Results) != len(servedImages)+len(notServedImages) {
		t.Fatalf("%d results", len(out.Results))
	}
	for _, r := range out.Results[:len(servedImages)] {
		assertMinted(t, emu, r, wantIdentity)
	}
	for _, r := range out.Results[len(servedImages):] {
		assertNotServed(t, r)
	}
	// cacheKeyType Global: one plugin run, one token grant, for all hosts.
	if g := emu.Grants(); g != 1 {
		t.Errorf("%d token grants, want 1", g)
	}
	AssertNoSecrets(t, k, out, extraSecrets...)
}

func TestKubeletNodeIdentity(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	k := Kubelet{ConfigPath: WriteConfig(t, filepath.Join(examplesDir, "node-identity.yaml"), ConfigOptions{
		Emulator: emu, CacheDir: t.TempDir(),
		Env: map[string]string{"ICR_PROFILE_ID": iamtest.DefaultProfileID},
	})}
	out := k.Run(t, lookups(append(servedImages, notServedImages...)...)...)
	checkRun(t, emu, k, out, iamtest.DefaultProfileID)
}

func TestKubeletAPIKey(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	keyFile := filepath.Join(t.TempDir(), "apikey")
	if err := os.WriteFile(keyFile, []byte(iamtest.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := Kubelet{ConfigPath: WriteConfig(t, filepath.Join(examplesDir, "api-key.yaml"), ConfigOptions{
		Emulator: emu, CacheDir: "none",
		Env: map[string]string{"ICR_API_KEY_FILE": keyFile},
	})}
	out := k.Run(t, lookups(append(servedImages, notServedImages...)...)...)
	checkRun(t, emu, k, out, iamtest.DefaultServiceIDIAMID, iamtest.DefaultAPIKey)
}

// The service-account example without a pod context (e.g. a static pod):
// requireServiceAccount is false, so the kubelet runs the plugin without a
// token and the node identity answers.
func TestKubeletServiceAccountConfigWithoutServiceAccount(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	k := Kubelet{ConfigPath: WriteConfig(t, filepath.Join(examplesDir, "service-account.yaml"), ConfigOptions{
		Emulator: emu, CacheDir: t.TempDir(),
		Env: map[string]string{"ICR_PROFILE_ID": iamtest.DefaultProfileID},
	})}
	out := k.Run(t, lookups(append(servedImages, notServedImages...)...)...)
	checkRun(t, emu, k, out, iamtest.DefaultProfileID)
	if len(out.TokenRequests) != 0 {
		t.Errorf("the kubelet requested service-account tokens without a service account: %+v", out.TokenRequests)
	}
}

// The config written by `icr-credential-provider install` is accepted by the
// kubelet, and the installed binary answers.
func TestKubeletInstalledConfig(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	binDir, cfgDir := t.TempDir(), t.TempDir()
	cfg := filepath.Join(cfgDir, "config.yaml")
	install := exec.Command(filepath.Join(pluginBinDir, ProviderName), "install", "--bin-dir", binDir, "--config", cfg,
		"--profile-name", iamtest.DefaultProfileName, "--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(),
		"--cache-dir", t.TempDir(), "--service-account-tokens")
	install.Env = []string{"PATH=" + os.Getenv("PATH")}
	if b, err := install.CombinedOutput(); err != nil {
		t.Fatalf("install: %v\n%s", err, b)
	}
	k := Kubelet{ConfigPath: cfg, BinDir: binDir}
	out := k.Run(t, lookups(append(servedImages, notServedImages...)...)...)
	checkRun(t, emu, k, out, iamtest.DefaultProfileID)
}

// The kubelet refuses a config whose provider has no binary, and one with an
// unknown field: the plugin is then never run.
func TestKubeletRejects(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	cfg := WriteConfig(t, filepath.Join(examplesDir, "node-identity.yaml"), ConfigOptions{Emulator: emu})
	out := Kubelet{ConfigPath: cfg, BinDir: t.TempDir()}.Run(t, Lookup{Image: "us.icr.io/team/app"})
	if !strings.Contains(out.RegisterError, "did not exist") {
		t.Errorf("empty bin dir: register error %q", out.RegisterError)
	}

	b, _ := os.ReadFile(cfg)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(string(b), "matchImages:", "matchImage: [icr.io]\n  matchImages:", 1)), 0o600)
	out = Kubelet{ConfigPath: bad}.Run(t, Lookup{Image: "us.icr.io/team/app"})
	if !strings.Contains(out.RegisterError, "matchImage") {
		t.Errorf("unknown field: register error %q", out.RegisterError)
	}
	if emu.Grants() != 0 {
		t.Errorf("%d grants", emu.Grants())
	}
}
