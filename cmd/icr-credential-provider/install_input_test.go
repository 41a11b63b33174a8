package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// snapshot is every entry under dirs (path → mode and content).
func snapshot(t *testing.T, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range dirs {
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, _ := os.Lstat(p)
			b, _ := os.ReadFile(p)
			out[p] = fi.Mode().String() + " " + string(b)
			return nil
		})
	}
	return out
}

func assertUnchanged(t *testing.T, before map[string]string, dirs ...string) {
	t.Helper()
	after := snapshot(t, dirs...)
	for p, v := range after {
		if before[p] != v {
			t.Errorf("%s changed or is new", p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			t.Errorf("%s is gone", p)
		}
	}
}

// noControl fails on any raw control character in what the command wrote.
func noControl(t *testing.T, r result) {
	t.Helper()
	for _, s := range []string{r.Stdout, r.Stderr} {
		if i := strings.IndexFunc(strings.TrimSuffix(s, "\n"), func(r rune) bool { return r < ' ' || r == 0x7f || r == '\u202e' }); i >= 0 {
			t.Errorf("raw control character at %d: %q", i, s)
		}
	}
}

// Operator mistakes that once overwrote the plugin or a setting, or wrote
// half an installation: each is one line naming the problem and the fix,
// a non-zero exit, and nothing written.
func TestInstallBadInput(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, d installDirs) []string
		env   []string
		want  []string // {bin} is the bin dir
	}{
		{"config is the binary", func(t *testing.T, d installDirs) []string {
			return []string{"install", "--bin-dir", d.bin, "--config", filepath.Join(d.bin, "icr-credential-provider")}
		}, nil, []string{"the binary {bin}/icr-credential-provider and --config {bin}/icr-credential-provider are the same file: give each its own path"}},
		{"config is the binary, spelled otherwise", func(t *testing.T, d installDirs) []string {
			return []string{"install", "--bin-dir", d.bin, "--config", d.bin + "/../bin/./icr-credential-provider"}
		}, nil, []string{"are the same file"}},
		{"config is the binary, through a link to the bin dir", func(t *testing.T, d installDirs) []string {
			os.Symlink(d.bin, filepath.Join(d.etc, "bin-link"))
			return []string{"install", "--bin-dir", d.bin, "--config", filepath.Join(d.etc, "bin-link", "icr-credential-provider")}
		}, nil, []string{"are the same file"}},
		{"config is a hard link to the binary", func(t *testing.T, d installDirs) []string {
			os.WriteFile(filepath.Join(d.bin, "icr-credential-provider"), []byte("#!/bin/sh\n"), 0o755)
			os.Link(filepath.Join(d.bin, "icr-credential-provider"), d.cfg)
			return d.args()
		}, nil, []string{"are the same file"}},
		{"API key file is the config", func(t *testing.T, d installDirs) []string {
			key := filepath.Join(t.TempDir(), "apikey")
			os.WriteFile(key, []byte("0123456789abcdefghijABCDEFGHIJ_-0123456789\n"), 0o600)
			return d.args("--api-key-from", key, "--api-key-to", d.cfg)
		}, nil, []string{"the API key file", "are the same file"}},
		{"registries over two lines", func(t *testing.T, d installDirs) []string {
			return d.args("--registries", "registry.example.com\nother.example.com")
		}, nil, []string{`--registries "registry.example.com\nother.example.com" has a line break`, "comma-separated"}},
		{"registries over two lines, from the environment", func(t *testing.T, d installDirs) []string { return d.args() },
			[]string{"ICR_REGISTRIES=registry.example.com\nother.example.com"}, []string{"--registries", "has a line break"}},
		{"a setting with an escape sequence", func(t *testing.T, d installDirs) []string {
			return d.args("--profile-id", "Profile-1\x1b]0;owned\a")
		}, nil, []string{"--profile-id", "has a control, invisible or non-UTF-8 character"}},
		{"a bin dir with a line break", func(t *testing.T, d installDirs) []string {
			return []string{"install", "--bin-dir", d.bin + "\nx", "--config", d.cfg}
		}, nil, []string{`--bin-dir "{bin}\nx" has a control or invisible character`}},
		{"a config path with a bidi override", func(t *testing.T, d installDirs) []string {
			return []string{"install", "--bin-dir", d.bin, "--config", d.cfg + "\u202e"}
		}, nil, []string{`has a control or invisible character`, `\u202e`}},
		{"the link's directory missing", func(t *testing.T, d installDirs) []string {
			return d.args("--credential-helper", filepath.Join(d.etc, "no-such-dir"))
		}, nil, []string{"credential helper link: directory", "does not exist", "install does not create it"}},
		{"the link's directory writable by others", func(t *testing.T, d installDirs) []string {
			dir := filepath.Join(d.etc, "helper")
			os.Mkdir(dir, 0o777)
			os.Chmod(dir, 0o777)
			return d.args("--credential-helper", dir)
		}, nil, []string{"credential helper link", "is not safe to write as root", "chmod go-w"}},
		{"the link's directory unwritable", func(t *testing.T, d installDirs) []string {
			if os.Geteuid() == 0 {
				return d.args("--credential-helper", "/sys") // sysfs refuses even root
			}
			dir := filepath.Join(d.etc, "helper")
			os.Mkdir(dir, 0o555)
			return d.args("--credential-helper", dir)
		}, nil, []string{"credential helper link: cannot write to"}},
		{"bin dir writable by others", func(t *testing.T, d installDirs) []string {
			os.Chmod(d.bin, 0o777)
			return d.args("--force")
		}, nil, []string{"--bin-dir {bin} is not safe to write as root", "chmod go-w {bin}", "--force does not override this"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newInstallDirs(t)
			args := tc.setup(t, d)
			root := filepath.Dir(d.bin)
			before := snapshot(t, root)
			r := runPlugin(t, invocation{Process: true, Args: args, Env: tc.env})
			var want []string
			for _, w := range tc.want {
				want = append(want, strings.ReplaceAll(w, "{bin}", d.bin))
			}
			assertFailure(t, r, want...)
			noControl(t, r)
			assertUnchanged(t, before, root)
		})
	}
}

// hangingKubelet answers the first `healthy` health probes, then holds
// every probe until the test ends; probed receives each probe's number.
func hangingKubelet(t *testing.T, healthy int) (*httptest.Server, <-chan int) {
	probed := make(chan int, 16)
	release := make(chan struct{})
	var mu sync.Mutex
	n := 0
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		probed <- i
		if i <= healthy {
			w.Write([]byte("ok"))
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); s.Close() })
	return s, probed
}

// runUntilProbe starts the plugin with args, sends it sig once the kubelet
// has seen probe number `at`, and returns what it did.
func runUntilProbe(t *testing.T, args []string, probed <-chan int, at int, sig syscall.Signal) result {
	t.Helper()
	cmd := exec.Command(pluginBin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(40 * time.Second)
	for waiting := true; waiting; {
		select {
		case i := <-probed:
			waiting = i < at
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no health probe %d: %s", at, errb.String())
		}
	}
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		r := result{Stdout: out.String(), Stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.Code = ee.ExitCode()
		}
		return r
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("install did not stop after %v", sig)
	}
	return result{}
}

// SIGTERM or SIGINT (the DaemonSet's pod deleted) in the middle of install
// is reported as what it is, with what it left, and leaves no temporary
// file: before anything was written, and after the binary and the config
// were.
func TestInstallInterrupted(t *testing.T) {
	t.Run("before anything is written", func(t *testing.T) {
		n := newNode(t)
		kubelet, probed := hangingKubelet(t, 0)
		args := n.args("install", "--configure-kubelet=kubeadm", "--kubelet-timeout", "60s")
		args = append(args, "--kubelet-healthz", kubelet.URL+"/healthz")
		before := snapshot(t, n.root)
		r := runUntilProbe(t, args, probed, 1, syscall.SIGTERM)
		assertFailure(t, r, "install interrupted by SIGTERM: nothing changed: run install again")
		assertUnchanged(t, before, n.root)
	})
	t.Run("after the binary and the config", func(t *testing.T) {
		n := newNode(t)
		kubelet, probed := hangingKubelet(t, 1) // healthy before, then the wiring's own wait hangs
		args := n.args("install", "--configure-kubelet=kubeadm", "--kubelet-timeout", "60s")
		args = append(args, "--kubelet-healthz", kubelet.URL+"/healthz")
		r := runUntilProbe(t, args, probed, 2, syscall.SIGINT)
		bin, cfg := filepath.Join(n.bin, "icr-credential-provider"), filepath.Join(n.cfgDir, "config.yaml")
		want := "install interrupted by SIGINT: binary " + bin + " created, config " + cfg + " created; nothing else changed: run install again"
		if r.Code == 0 || !strings.Contains(r.Stderr, want) || strings.Count(r.Stderr, "\n") != 1 {
			t.Errorf("exit %d, stderr %q, want %q", r.Code, r.Stderr, want)
		}
		if n.read("/etc/default/kubelet") != defaultKubelet || len(n.restarts()) != 0 {
			t.Error("the kubelet wiring changed")
		}
		for _, p := range []string{bin, cfg} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		}
		for _, dir := range []string{n.bin, n.cfgDir} {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), ".") {
					t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
				}
			}
		}
	})
}
