package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

func TestKubeletModeNodeIdentity(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	for _, v := range []string{"v1", "v1beta1", "v1alpha1"} {
		t.Run(v, func(t *testing.T) {
			emu.Reset()
			r := runPlugin(t, invocation{
				Args:  append(emulatorArgs(emu, "none"), "--profile-id", iamtest.DefaultProfileID),
				Stdin: requestJSON(v, "us.icr.io/team/app:1.2"),
			})
			if r.Code != 0 {
				t.Fatalf("exit %d: %s", r.Code, r.Stderr)
			}
			resp := decodeStrict(t, r.Stdout, v)
			if resp.CacheKeyType != "Global" || len(resp.Auth) != len(provider.DefaultHosts()) {
				t.Fatalf("response: cacheKeyType %s, %d hosts", resp.CacheKeyType, len(resp.Auth))
			}
			a := resp.Auth["us.icr.io"]
			claims, err := iamtest.DecodeClaims(a.Password)
			if err != nil || a.Username != "iambearer" {
				t.Fatalf("auth for us.icr.io: user %q, token claims %v", a.Username, err)
			}
			if claims.SubType != "Profile" || !strings.Contains(claims.ID, iamtest.DefaultProfileID) {
				t.Errorf("token is for %s %s, want the trusted profile", claims.SubType, claims.ID)
			}
			if d := resp.CacheDuration.Duration; d < 49*time.Minute || d > 50*time.Minute {
				t.Errorf("cacheDuration %v, want about 50m (1h token minus 10m margin)", d)
			}
			if emu.Grants() != 1 {
				t.Errorf("%d grants, want 1", emu.Grants())
			}
			assertNoSecrets(t, r, a.Password)
		})
	}
}

func TestKubeletModeAPIKey(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	keyFile := filepath.Join(t.TempDir(), "apikey")
	if err := os.WriteFile(keyFile, []byte(iamtest.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  []string
	}{
		{"flag", []string{"--api-key-file", keyFile}, nil},
		{"ICR_API_KEY_FILE", nil, []string{"ICR_API_KEY_FILE=" + keyFile}},
		{"IBMCLOUD_API_KEY", nil, []string{"IBMCLOUD_API_KEY=" + iamtest.DefaultAPIKey}},
		{"explicit source", []string{"--token-source", "api-key"}, []string{"IBMCLOUD_API_KEY=" + iamtest.DefaultAPIKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu.Reset()
			r := runPlugin(t, invocation{Args: append(emulatorArgs(emu, "none"), tt.args...), Env: tt.env, Stdin: requestJSON("v1", "icr.io/team/app")})
			if r.Code != 0 {
				t.Fatalf("exit %d: %s", r.Code, r.Stderr)
			}
			resp := decodeStrict(t, r.Stdout, "v1")
			claims, err := iamtest.DecodeClaims(resp.Auth["icr.io"].Password)
			if err != nil || claims.SubType != "ServiceId" {
				t.Fatalf("token: %+v, %v", claims.SubType, err)
			}
			if emu.Count(iamtest.EndpointMetadataToken) != 0 {
				t.Error("the metadata service was called although an API key is configured")
			}
			assertNoSecrets(t, r, iamtest.DefaultAPIKey)
		})
	}
}

func TestKubeletModeNotServedNeedsNoIdentity(t *testing.T) {
	// No emulator, a broken API key file: an image we do not serve is
	// answered without touching either.
	r := runPlugin(t, invocation{
		Args:  []string{"--api-key-file", "/nonexistent", "--cache-dir", "none"},
		Stdin: requestJSON("v1", "cp.icr.io/cp/app"),
	})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	resp := decodeStrict(t, r.Stdout, "v1")
	if len(resp.Auth) != 0 || resp.CacheKeyType != "Registry" {
		t.Fatalf("got %+v", resp)
	}
}

func TestKubeletModeFailures(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	dir := t.TempDir()
	badKey := filepath.Join(dir, "bad-key")
	os.WriteFile(badKey, []byte("wrongKey-Zq8vR3xT1mN0pL7sW2yB5cD9fG4hJ6kQ"), 0o600)
	emptyKey := filepath.Join(dir, "empty-key")
	os.WriteFile(emptyKey, nil, 0o600)
	req := requestJSON("v1", "us.icr.io/team/app")

	tests := []struct {
		name    string
		args    []string
		env     []string
		stdin   string
		fault   *iamtest.Fault
		ep      iamtest.Endpoint
		want    []string
		maxTime time.Duration
	}{
		{name: "empty stdin", stdin: "", want: []string{"no request on stdin", "examples/requests"}},
		{name: "not json", stdin: "{", want: []string{"not a JSON object"}},
		{name: "unknown version", stdin: requestJSON("v2", "us.icr.io/x"), want: []string{`unsupported API version`}},
		{name: "bad flag", args: []string{"--no-such-flag"}, stdin: req, want: []string{"unknown flag"}},
		{name: "bad token source", args: []string{"--token-source", "magic"}, stdin: req, want: []string{"--token-source"}},
		{name: "bad bool env", env: []string{"ICR_PRIVATE_ENDPOINTS=maybe"}, stdin: req, want: []string{"ICR_PRIVATE_ENDPOINTS"}},
		{name: "two profiles", args: []string{"--profile-id", "a", "--profile-name", "b"}, stdin: req, want: []string{"more than one of --profile-id"}},
		{name: "missing key file", args: []string{"--api-key-file", filepath.Join(dir, "nope")}, stdin: req, want: []string{"does not exist", "service-api-key-create"}},
		{name: "empty key file", args: []string{"--api-key-file", emptyKey}, stdin: req, want: []string{"is empty"}},
		{name: "api key unknown", args: []string{"--api-key-file", badKey}, stdin: req, want: []string{"BXNIM0415E", "service-api-key-create"}},
		{name: "api-key source without key", args: []string{"--token-source", "api-key"}, stdin: req, want: []string{"no API key is configured"}},
		{name: "profile not linked", args: []string{"--profile-id", "Profile-not-linked-0000"}, stdin: req, want: []string{"trusted-profile-link-create"}},
		{name: "metadata hang", fault: ptr(iamtest.Hang()), ep: iamtest.EndpointMetadataToken, stdin: req, want: []string{"did not answer in time", "metadata service enabled"}, maxTime: 8 * time.Second},
		{name: "iam 503", args: []string{"--api-key-file", "KEYFILE"}, fault: ptr(iamtest.HTTPError(503)), ep: iamtest.EndpointIAMToken, stdin: req, want: []string{"HTTP 503", "attempts"}},
		{name: "iam malformed", args: []string{"--api-key-file", "KEYFILE"}, fault: &iamtest.Fault{Kind: iamtest.FaultMalformedJSON}, ep: iamtest.EndpointIAMToken, stdin: req, want: []string{"unusable body"}},
		{name: "metadata missing fields", fault: &iamtest.Fault{Kind: iamtest.FaultMissingAccessToken}, ep: iamtest.EndpointMetadataIAMToken, stdin: req, want: []string{"unusable body"}},
	}
	goodKey := filepath.Join(dir, "good-key")
	os.WriteFile(goodKey, []byte(iamtest.DefaultAPIKey), 0o600)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu.ClearFaults()
			if tt.fault != nil {
				emu.SetFault(tt.ep, *tt.fault)
			}
			args := append(emulatorArgs(emu, "none"), tt.args...)
			for i, a := range args {
				if a == "KEYFILE" {
					args[i] = goodKey
				}
			}
			r := runPlugin(t, invocation{Args: args, Env: tt.env, Stdin: tt.stdin})
			assertFailure(t, r, tt.want...)
			assertNoSecrets(t, r, iamtest.DefaultAPIKey, "wrongKey-Zq8vR3xT1mN0pL7sW2yB5cD9fG4hJ6kQ")
			if tt.maxTime > 0 && r.Elapsed > tt.maxTime {
				t.Errorf("took %v, want under %v", r.Elapsed, tt.maxTime)
			}
			if strings.Contains(r.Stderr, "panic") || strings.Contains(r.Stderr, "goroutine ") {
				t.Errorf("panic output: %s", r.Stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := runPlugin(t, invocation{Args: []string{"version"}})
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "icr-credential-provider ") {
		t.Fatalf("version: %d %q %q", r.Code, r.Stdout, r.Stderr)
	}
}

func ptr[T any](v T) *T { return &v }

// TestJSONLogLines: with --logging-format json every stderr line is one
// JSON object with no key twice (a named logger's "logger" included).
func TestJSONLogLines(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	r := runPlugin(t, invocation{
		Args:  append(emulatorArgs(emu, t.TempDir()), "--profile-id", iamtest.DefaultProfileID, "-v=6", "--logging-format", "json"),
		Stdin: requestJSON("v1", "us.icr.io/team/app"),
	})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if len(lines) < 2 {
		t.Fatalf("want log lines at -v=6, got %q", r.Stderr)
	}
	for _, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("not a JSON object: %s", l)
		}
		seen := map[string]bool{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			if seen[k.(string)] {
				t.Errorf("key %q twice: %s", k, l)
			}
			seen[k.(string)] = true
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
		}
	}
}

// TestStdinTrickleAndSIGTERM: a kubelet or client (or anything) that never
// finishes writing its input does not keep the plugin or the credential
// helper: SIGTERM ends the wait at once, with the usual one line.
func TestStdinTrickleAndSIGTERM(t *testing.T) {
	for _, tt := range []struct {
		name  string
		args  []string
		input string
	}{
		{"kubelet mode", []string{"--cache-dir", "none"}, `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1",`},
		{"credential-helper get", []string{"credential-helper", "get", "--cache-dir", "none"}, "us.icr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(pluginBin, tt.args...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := stdin.Write([]byte(tt.input)); err != nil {
				t.Fatal(err)
			}
			waitForPipeRead(t, cmd.Process.Pid)
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				r := result{Stdout: stdout.String(), Stderr: stderr.String()}
				if ee, ok := err.(*exec.ExitError); ok {
					r.Code = ee.ExitCode()
				}
				if !strings.Contains(r.Stderr, "stdin did not end before the process was told to stop") || r.Code == 0 {
					t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatal("SIGTERM did not end the wait for stdin")
			}
		})
	}
}

// waitForPipeRead returns once a thread of process pid is blocked reading a
// pipe (its stdin): by then the process has set up its signal handling.
func waitForPipeRead(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
		for _, w := range tasks {
			if b, _ := os.ReadFile(w); strings.Contains(string(b), "pipe_read") {
				return
			}
		}
	}
	t.Fatal("the process never waited on stdin")
}

// TestTerminalHint: run by hand without a pipe, kubelet mode says what it
// waits for instead of waiting silently; ICR_HELP is no request for help.
func TestTerminalHint(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer pts.Close()
	if !isTerminal(pts) || isTerminal(strings.NewReader("")) {
		t.Fatal("isTerminal is wrong")
	}
	// End of input on the terminal (Ctrl-D), so that the run ends.
	if _, err := ptmx.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"--cache-dir", "none"}, pts, &out, &errb, func(k string) (string, bool) {
		if k == "ICR_HELP" {
			return "1", true
		}
		return "", false
	})
	if code == 0 || out.Len() != 0 || !strings.Contains(errb.String(), "reading a CredentialProviderRequest from stdin") || !strings.Contains(errb.String(), "no request on stdin") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}
