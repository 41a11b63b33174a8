package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// helperLink is a docker-credential-icr symlink to pluginBin, as clients
// find the helper on PATH.
func helperLink(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := credhelper.PlaceLink(pluginBin, dir, false); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, credhelper.LinkName)
}

// runBinary is runPlugin for another executable (the helper link). cred, if
// set, runs the process as that user.
func runBinary(t testing.TB, bin string, inv invocation, cred *syscall.Credential) result {
	t.Helper()
	if inv.Timeout == 0 {
		inv.Timeout = 50 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), inv.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, inv.Args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, inv.Env...)
	if !hasEnv(inv.Env, "HOME") {
		cmd.Env = append(cmd.Env, "HOME="+t.TempDir())
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Stdin = strings.NewReader(inv.Stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v", bin, inv.Timeout)
	}
	return r
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// helperEnv points the helper at the emulator, as users configure it:
// through the environment only.
func helperEnv(emu *iamtest.Server, cacheDir string, extra ...string) []string {
	return append([]string{
		"ICR_IAM_URL=" + emu.IAMURL(),
		"ICR_METADATA_URL=" + emu.MetadataURL(),
		"ICR_CACHE_DIR=" + cacheDir,
	}, extra...)
}

// helperWays runs the helper both ways it is installed: the sub-command and
// the docker-credential-icr link (argv[0]).
func helperWays(t *testing.T) map[string]func(t testing.TB, inv invocation, action string) result {
	link := helperLink(t)
	return map[string]func(t testing.TB, inv invocation, action string) result{
		"subcommand": func(t testing.TB, inv invocation, action string) result {
			inv.Args = append([]string{"credential-helper", action}, inv.Args...)
			return runPlugin(t, inv)
		},
		"argv0": func(t testing.TB, inv invocation, action string) result {
			inv.Args = append([]string{action}, inv.Args...)
			return runBinary(t, link, inv, nil)
		},
	}
}

// decodeCredentials decodes get's answer strictly: exactly the protocol's
// three fields.
func decodeCredentials(t testing.TB, stdout string) credhelper.Credentials {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var c credhelper.Credentials
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("get's answer is not the protocol's JSON: %v", err)
	}
	var raw map[string]any
	json.Unmarshal([]byte(stdout), &raw)
	if len(raw) != 3 {
		t.Fatalf("get's answer has fields %v, want ServerURL, Username, Secret", keys(raw))
	}
	return c
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// assertNotFound checks the protocol's "credentials not found" answer:
// exit 1 and exactly that message on stdout, which clients compare.
func assertNotFound(t testing.TB, r result) {
	t.Helper()
	if r.Code != 1 {
		t.Errorf("exit code %d, want 1", r.Code)
	}
	if strings.TrimSpace(r.Stdout) != credhelper.NotFoundMessage {
		t.Errorf("stdout %q, want %q", r.Stdout, credhelper.NotFoundMessage)
	}
	if r.Stderr != "" {
		t.Errorf("stderr is not empty for a registry that is not served: %q", r.Stderr)
	}
}

// assertHelperFailure checks a failure in helper mode: exit 1, one line on
// stderr containing every want, and the same line on stdout (the protocol's
// clients quote stdout in their error).
func assertHelperFailure(t testing.TB, r result, want ...string) {
	t.Helper()
	if r.Code != 1 {
		t.Errorf("exit code %d, want 1", r.Code)
	}
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Errorf("stderr has %d lines, want exactly one:\n%s", len(lines), r.Stderr)
	}
	if r.Stdout != r.Stderr {
		t.Errorf("stdout %q is not the error line %q", r.Stdout, r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, r.Stderr)
		}
	}
}

func TestCredentialHelperGet(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	cache := t.TempDir()
	env := helperEnv(emu, cache, "ICR_PROFILE_ID="+iamtest.DefaultProfileID, "ICR_REGISTRIES=registry.example.com:5000")
	serverURLs := []string{
		"us.icr.io", "us.icr.io\n", "https://us.icr.io", "https://us.icr.io/v2/", "us.icr.io:443",
		"US.ICR.IO/team/app", "icr.io", "private.icr.io", "private.jp2.icr.io",
		"registry.bluemix.net", "https://registry.eu-de.bluemix.net/v1/", "registry.example.com:5000",
	}
	for way, run := range helperWays(t) {
		t.Run(way, func(t *testing.T) {
			for _, u := range serverURLs {
				r := run(t, invocation{Env: env, Stdin: u}, "get")
				if r.Code != 0 {
					t.Fatalf("get %q: exit %d: %s", u, r.Code, r.Stderr)
				}
				c := decodeCredentials(t, r.Stdout)
				if c.ServerURL != strings.TrimSpace(u) || c.Username != "iambearer" {
					t.Errorf("get %q: ServerURL %q, Username %q", u, c.ServerURL, c.Username)
				}
				claims, err := iamtest.DecodeClaims(c.Secret)
				if err != nil || claims.SubType != "Profile" || !strings.Contains(claims.ID, iamtest.DefaultProfileID) {
					t.Errorf("get %q: the secret is not the trusted profile's IAM token (%v)", u, err)
				}
				assertNoSecrets(t, r, c.Secret)
			}
		})
	}
	// Every invocation after the first took the token from the disk cache.
	if g := emu.Grants(); g != 1 {
		t.Errorf("%d token grants for %d invocations, want 1 (shared disk cache)", g, 2*len(serverURLs))
	}
}

func TestCredentialHelperNotServed(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	// A broken identity configuration: a host that is not served is answered
	// without reading it and without a network call.
	env := helperEnv(emu, "none", "ICR_API_KEY_FILE=/nonexistent", "ICR_REGISTRIES=127.0.0.1:5000")
	for way, run := range helperWays(t) {
		t.Run(way, func(t *testing.T) {
			for _, u := range []string{
				"cp.icr.io", "https://index.docker.io/v1/", "docker.io", "ghcr.io", "us.icr.io.evil.com",
				"evilicr.io", "https://evil.com/us.icr.io", "user@us.icr.io", "ftp://us.icr.io", "us.icr.io:444",
				"127.0.0.1:5001", "127.0.0.1", "localhost:5000", "*.icr.io", "us.icr.io.", "[::1]:5000", "not a host",
				"http://us.icr.io", "HTTP://us.icr.io/v2/", "[us.icr.io]:443", // a token never goes over plain http
			} {
				r := run(t, invocation{Env: env, Stdin: u}, "get")
				assertNotFound(t, r)
			}
		})
	}
	for _, ep := range iamtest.Endpoints() {
		if n := emu.Count(ep); n != 0 {
			t.Errorf("%d requests to %s for registries that are not served", n, ep)
		}
	}
}

func TestCredentialHelperList(t *testing.T) {
	want := map[string]string{"127.0.0.1:5000": "iambearer", "registry.example.com": "iambearer"}
	for _, h := range provider.DefaultHosts() {
		want[h] = "iambearer"
	}
	for way, run := range helperWays(t) {
		t.Run(way, func(t *testing.T) {
			// No identity at all: list needs none. Clients send "unused" on stdin.
			r := run(t, invocation{Env: []string{"ICR_REGISTRIES=127.0.0.1:5000,Registry.Example.com", "ICR_CACHE_DIR=none"}, Stdin: "unused"}, "list")
			if r.Code != 0 || r.Stderr != "" {
				t.Fatalf("list: exit %d: %s", r.Code, r.Stderr)
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
				t.Fatalf("list's answer is not a JSON object of strings: %v: %s", err, r.Stdout)
			}
			if len(got) != len(want) {
				t.Errorf("list: %d hosts %v, want %d %v", len(got), keys(got), len(want), keys(want))
			}
			for h, u := range want {
				if got[h] != u {
					t.Errorf("list: %s -> %q, want %q", h, got[h], u)
				}
			}
			if _, ok := got["cp.icr.io"]; ok {
				t.Error("list includes cp.icr.io")
			}
		})
	}
}

func TestCredentialHelperStoreErase(t *testing.T) {
	const secret = "s3cret-Passw0rd-that-must-not-leak"
	cred := func(url, user string) string {
		b, _ := json.Marshal(credhelper.Credentials{ServerURL: url, Username: user, Secret: secret})
		return string(b)
	}
	for way, run := range helperWays(t) {
		t.Run(way, func(t *testing.T) {
			env := []string{"ICR_CACHE_DIR=none"}
			ok := []struct{ action, stdin string }{
				{"store", cred("us.icr.io", "iambearer")},
				{"store", cred("https://us.icr.io", "iamapikey") + "\n"},
				{"erase", "us.icr.io"},
				{"erase", "https://index.docker.io/v1/\n"},
			}
			for _, tt := range ok {
				r := run(t, invocation{Env: env, Stdin: tt.stdin}, tt.action)
				if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want silent success", tt.action, r.Code, r.Stdout, redactFor(r.Stderr, secret))
				}
			}
			// A credential for a registry that is not served is not kept
			// either: success, and a warning that says so.
			r := run(t, invocation{Env: env, Stdin: cred("docker.io", "me")}, "store")
			if r.Code != 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "not stored") {
				t.Errorf("store docker.io: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, redactFor(r.Stderr, secret))
			}
			assertNoSecrets(t, r, secret)

			protocol := []struct{ action, stdin, want string }{
				{"store", cred("", "iambearer"), credhelper.MissingServerURLMessage},
				{"store", cred("us.icr.io", ""), credhelper.MissingUsernameMessage},
				{"erase", "", credhelper.MissingServerURLMessage},
				{"erase", " \n", credhelper.MissingServerURLMessage},
				{"get", "", credhelper.MissingServerURLMessage},
			}
			for _, tt := range protocol {
				r := run(t, invocation{Env: env, Stdin: tt.stdin}, tt.action)
				if r.Code != 1 || strings.TrimSpace(r.Stdout) != tt.want {
					t.Errorf("%s %q: exit %d, stdout %q; want 1 and %q", tt.action, redactFor(tt.stdin, secret), r.Code, r.Stdout, tt.want)
				}
				assertNoSecrets(t, r, secret)
				if strings.Contains(r.Stdout, secret) {
					t.Error("the secret appears on stdout")
				}
			}

			for _, stdin := range []string{"", "{", `{"ServerURL":"us.icr.io","Username":"iambearer","Secret":"` + secret + `"`, `{"ServerURL":1,"Secret":"` + secret + `"}`, "us.icr.io"} {
				r := run(t, invocation{Env: env, Stdin: stdin}, "store")
				assertHelperFailure(t, r, "store expects the JSON of a credential")
				assertNoSecrets(t, r, secret)
			}
		})
	}
}

func TestCredentialHelperUsage(t *testing.T) {
	link := helperLink(t)
	env := []string{"ICR_CACHE_DIR=none"}
	r := runBinary(t, link, invocation{Env: env, Args: []string{"version"}}, nil)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, credhelper.LinkName+" (") {
		t.Errorf("version: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, args := range [][]string{nil, {"frobnicate"}, {"get", "list"}, {"--no-such-flag", "get"}} {
		r := runBinary(t, link, invocation{Env: env, Args: args, Stdin: "us.icr.io"}, nil)
		assertHelperFailure(t, r)
		if !strings.Contains(r.Stderr, "get|list|store|erase|version") && !strings.Contains(r.Stderr, "unknown flag") {
			t.Errorf("%v: the usage error does not list the actions: %s", args, r.Stderr)
		}
	}
	r = runPlugin(t, invocation{Args: []string{"credential-helper", "--help"}})
	if r.Code != 0 || !strings.Contains(r.Stdout, "ICR_PROFILE_ID") {
		t.Errorf("--help: exit %d: %s", r.Code, r.Stderr)
	}
	// Flags work too (before or after the action), and beat the environment.
	emu := iamtest.NewServer()
	defer emu.Close()
	r = runBinary(t, link, invocation{
		Env:   helperEnv(emu, "none", "ICR_PROFILE_ID=Profile-not-linked-0000"),
		Args:  []string{"get", "--profile-id", iamtest.DefaultProfileID},
		Stdin: "us.icr.io",
	}, nil)
	if r.Code != 0 {
		t.Errorf("get with --profile-id: exit %d: %s", r.Code, r.Stderr)
	}
}

func TestCredentialHelperFailures(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	const wrongKey = "wrongKey-Zq8vR3xT1mN0pL7sW2yB5cD9fG4hJ6kQ"
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"api key unknown", []string{"IBMCLOUD_API_KEY=" + wrongKey}, []string{"BXNIM0415E", "service-api-key-create"}},
		{"profile not linked", []string{"ICR_PROFILE_ID=Profile-not-linked-0000"}, []string{"trusted-profile-link-create"}},
		{"bad registries", []string{"ICR_REGISTRIES=*.example.com"}, []string{"--registries entry"}},
		{"bad bool env", []string{"ICR_PRIVATE_ENDPOINTS=maybe"}, []string{"ICR_PRIVATE_ENDPOINTS"}},
		{"missing key file", []string{"ICR_API_KEY_FILE=/nonexistent"}, []string{"does not exist"}},
	}
	for way, run := range helperWays(t) {
		for _, tt := range tests {
			t.Run(way+"/"+tt.name, func(t *testing.T) {
				r := run(t, invocation{Env: helperEnv(emu, t.TempDir(), tt.env...), Stdin: "us.icr.io"}, "get")
				assertHelperFailure(t, r, tt.want...)
				assertNoSecrets(t, r, iamtest.DefaultAPIKey, wrongKey)
				if strings.Contains(r.Stdout, wrongKey) {
					t.Error("the API key appears on stdout")
				}
			})
		}
	}
}

// TestCredentialHelperNonRootCache runs the helper as an unprivileged user
// without ICR_CACHE_DIR: the token cache goes to $XDG_RUNTIME_DIR, else to
// the user's cache directory, never /run/icr-credential-provider.
func TestCredentialHelperNonRootCache(t *testing.T) {
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	// The binary must be reachable for that user: copy it out of the
	// 0700 build directory.
	base, err := os.MkdirTemp("", "icr-nonroot")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	os.Chmod(base, 0o755)
	bin := filepath.Join(base, credhelper.LinkName)
	data, err := os.ReadFile(pluginBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	mkUserDir := func(name string) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if cred != nil {
			os.Chown(d, int(cred.Uid), int(cred.Gid))
		}
		return d
	}
	emu := iamtest.NewServer()
	defer emu.Close()
	env := []string{"ICR_IAM_URL=" + emu.IAMURL(), "ICR_METADATA_URL=" + emu.MetadataURL(), "ICR_PROFILE_ID=" + iamtest.DefaultProfileID}

	runtimeDir, home := mkUserDir("runtime"), mkUserDir("home")
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"XDG_RUNTIME_DIR", []string{"XDG_RUNTIME_DIR=" + runtimeDir, "HOME=" + home}, filepath.Join(runtimeDir, "icr-credential-provider")},
		{"no runtime dir", []string{"XDG_RUNTIME_DIR=" + filepath.Join(base, "gone"), "HOME=" + home}, filepath.Join(home, ".cache", "icr-credential-provider")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := runBinary(t, bin, invocation{Env: append(env, tc.env...), Args: []string{"get"}, Stdin: "us.icr.io"}, cred)
			if r.Code != 0 {
				t.Fatalf("get as a non-root user: exit %d: %s", r.Code, r.Stderr)
			}
			if r.Stderr != "" {
				t.Errorf("stderr is not empty (a cache warning?): %s", r.Stderr)
			}
			c := decodeCredentials(t, r.Stdout)
			assertNoSecrets(t, r, c.Secret)
			fi, err := os.Stat(tc.want)
			if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
				t.Fatalf("token cache dir %s: %v %v, want a 0700 directory", tc.want, fi, err)
			}
			entries, _ := os.ReadDir(tc.want)
			if len(entries) == 0 {
				t.Errorf("no cache entry in %s", tc.want)
			}
		})
	}
}
