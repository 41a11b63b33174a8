package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// pluginBin is the plugin built once for the tests that run it as the
// kubelet does: a new process with a request on stdin.
var pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "icr-plugin-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginBin = filepath.Join(dir, "icr-credential-provider")
	build := exec.Command("go", "build", "-o", pluginBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the plugin:", err)
		os.Exit(1)
	}
	// No test may reach beyond loopback: a forgotten --metadata-url fails
	// the run instead of dialling 169.254.169.254.
	code := iam.RunLoopbackOnly(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// invocation is one run of the plugin.
type invocation struct {
	Args  []string
	Env   []string // added to a minimal environment (PATH, HOME)
	Stdin string
	// Process runs the built binary in a new process, as the kubelet does,
	// where the process boundary is the point (exit codes, what the
	// process writes on its real stdout and stderr); otherwise run is
	// called in this process.
	Process bool
	// Timeout kills the process; the default is well above the plugin's own
	// bound so that a test sees the plugin's behaviour, not the kill.
	Timeout time.Duration
}

type result struct {
	Stdout, Stderr string
	Code           int
	Elapsed        time.Duration
}

// runPlugin runs the plugin, in this process unless inv.Process. The
// environment is minimal so that nothing from the developer's shell
// (IBMCLOUD_API_KEY, proxies) leaks in.
func runPlugin(t testing.TB, inv invocation) result {
	t.Helper()
	if !inv.Process {
		return runInProcess(t, inv)
	}
	if inv.Timeout == 0 {
		inv.Timeout = 50 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), inv.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pluginBin, inv.Args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, inv.Env...)
	cmd.Stdin = strings.NewReader(inv.Stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String(), Elapsed: time.Since(start)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the plugin: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the plugin did not finish within %v", inv.Timeout)
	}
	return r
}

// emulatorArgs points the plugin at the emulator.
func emulatorArgs(s *iamtest.Server, cacheDir string) []string {
	return []string{"--iam-url", s.IAMURL(), "--metadata-url", s.MetadataURL(), "--cache-dir", cacheDir}
}

// requestJSON is a request in the given version (v1, v1beta1, v1alpha1).
func requestJSON(version, image string) string {
	return `{"apiVersion":"credentialprovider.kubelet.k8s.io/` + version + `","kind":"CredentialProviderRequest","image":"` + image + `"}`
}

// decodeStrict decodes stdout as the kubelet's plugin manager does.
func decodeStrict(t testing.TB, stdout, wantVersion string) *credentialprovider.CredentialProviderResponse {
	t.Helper()
	s := runtime.NewScheme()
	install.Install(s)
	obj, gvk, err := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDecoder(credentialprovider.SchemeGroupVersion).Decode([]byte(stdout), nil, nil)
	if err != nil {
		t.Fatalf("the kubelet would reject the response: %v\n%s", err, stdout)
	}
	if want := "credentialprovider.kubelet.k8s.io/" + wantVersion; gvk.GroupVersion().String() != want {
		t.Fatalf("response apiVersion %s, want %s", gvk.GroupVersion(), want)
	}
	return obj.(*credentialprovider.CredentialProviderResponse)
}

// assertNoSecrets fails if any secret appears in any output.
func assertNoSecrets(t testing.TB, r result, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(r.Stderr, s) {
			t.Errorf("a secret appears on stderr: %q", redactFor(r.Stderr, s))
		}
	}
}

// assertFailure checks the failure contract: non-zero exit, nothing on
// stdout, exactly one line on stderr that contains every want.
func assertFailure(t testing.TB, r result, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("exit code 0, want non-zero")
	}
	if r.Stdout != "" {
		t.Errorf("stdout is not empty on failure: %q", r.Stdout)
	}
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	if len(lines) != 1 || lines[0] == "" {
		t.Errorf("stderr has %d lines, want exactly one:\n%s", len(lines), r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, r.Stderr)
		}
	}
}

func redactFor(s, secret string) string { return strings.ReplaceAll(s, secret, "<SECRET>") }

// runInProcess calls run as main does, with inv's environment only. Runs
// are serialised: klog's configuration is global to the process.
func runInProcess(t testing.TB, inv invocation) result {
	t.Helper()
	env := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir()}
	for _, kv := range inv.Env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	inProcess.Lock()
	defer inProcess.Unlock()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(inv.Args, strings.NewReader(inv.Stdin), &out, &errb, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code, Elapsed: time.Since(start)}
}

var inProcess sync.Mutex
