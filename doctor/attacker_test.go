package doctor

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile/hostfiletest"
)

// rootOnly is what a local user must never see through doctor: the content
// of a root-only file named by a flag.
const rootOnly = "SECRETVALUE"

// runDoctor runs the kubelet checks (identity fails fast, nothing dialed)
// with env's kubelet fields, bounded: a hang is a failure, not a timing.
func runDoctor(t *testing.T, env Env) *Report {
	t.Helper()
	env.Config = config.Config{ProfileID: "a", ProfileName: "b", CacheDir: config.CacheDisabled, MetadataURL: "http://127.0.0.1:1", IAMURL: "http://127.0.0.1:1"}
	env.RegistryHosts = []string{}
	if env.ProcDir == "" {
		env.ProcDir = "-"
	}
	if env.HostRoot == "" {
		env.HostRoot = t.TempDir()
	}
	if env.KubeletConfigPaths == nil {
		env.KubeletConfigPaths = []string{filepath.Join(t.TempDir(), "none.yaml")}
	}
	done := make(chan *Report, 1)
	go func() { done <- Run(context.Background(), env) }()
	select {
	case rep := <-done:
		return rep
	case <-time.After(30 * time.Second):
		t.Fatal("doctor did not finish: it blocked on something a user planted")
		return nil
	}
}

// TestLocalAttacker: a local user who can start processes and write files
// of their own cannot make root's doctor read root-only files, hang, run
// out of memory, print control characters or print a fix that harms.
func TestLocalAttacker(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "root-only.yaml")
	if err := os.WriteFile(secretFile, []byte("apiVersion: "+rootOnly+"\nproviders:\n  - env: {HTTPS_PROXY: http://u:"+rootOnly+"@proxy}\n    "+rootOnly+"KEY: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := hostfiletest.Executable(filepath.Join(t.TempDir(), "kubelet"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("a user's kubelet is not the kubelet", func(t *testing.T) {
		proc := t.TempDir()
		if err := hostfiletest.Process(proc, 3000, 1000, exe, "kubelet", "--image-credential-provider-config="+secretFile); err != nil {
			t.Fatal(err)
		}
		rep := runDoctor(t, Env{ProcDir: proc})
		out := render(t, rep)
		c, _ := rep.Find(CheckKubeletConfig)
		if strings.Contains(out, rootOnly) || c.Details["path"] == secretFile || !strings.Contains(out, "PID 3000 (it runs as uid 1000, not root)") {
			t.Fatalf("the user's kubelet steered doctor:\n%s", out)
		}
	})

	t.Run("a root-only file that does not parse is not quoted", func(t *testing.T) {
		rep := runDoctor(t, Env{KubeletConfig: secretFile})
		out := render(t, rep)
		c, _ := rep.Find(CheckKubeletConfig)
		if c.Status != StatusFail || strings.Contains(out, rootOnly) {
			t.Fatalf("%s %s\n%s", c.Status, c.Summary, out)
		}
	})

	t.Run("FIFO and device: no hang, no memory", func(t *testing.T) {
		fifo := filepath.Join(t.TempDir(), "fifo.yaml")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{fifo, "/dev/zero"} {
			rep := runDoctor(t, Env{KubeletConfig: p})
			if c, _ := rep.Find(CheckKubeletConfig); c.Status != StatusFail || !strings.Contains(c.Summary, "not a regular file") && !strings.Contains(c.Summary, "can be changed by another user") {
				t.Errorf("%s: %s %s", p, c.Status, c.Summary)
			}
		}
	})

	t.Run("a config others can write", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(strings.Replace(strings.Replace(taHeader, "%s", "credentialprovider.kubelet.k8s.io/v1", 1), "%s", "10m", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
		rep := runDoctor(t, Env{KubeletConfig: p})
		if c, _ := rep.Find(CheckKubeletConfig); c.Status != StatusFail || !strings.Contains(c.Summary, "can be changed by another user") || c.Fix != "chmod go-w "+p {
			t.Errorf("%s %q / %q", c.Status, c.Summary, c.Fix)
		}
	})

	t.Run("control characters reach no terminal", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c\x1b[2J\x1b[32m[ ok ]\u202e.yaml")
		if err := os.WriteFile(p, []byte("kind: \x1b[31mX\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		rep := runDoctor(t, Env{KubeletConfig: p, Image: "us.icr.io/x\x1b[2J"})
		var b bytes.Buffer
		if err := rep.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(b.String(), "\x1b\u202e") || !strings.Contains(b.String(), `c\x1b[2J\x1b[32m[ ok ]\u202e.yaml`) {
			t.Errorf("text output:\n%q", b.String())
		}
	})

	t.Run("another user's binary fails, with a fix that changes nothing through it", func(t *testing.T) {
		needRoot(t)
		yaml := strings.Replace(strings.Replace(taHeader, "%s", "credentialprovider.kubelet.k8s.io/v1", 1), "%s", "10m", 1)
		dir := t.TempDir()
		cfg := filepath.Join(dir, "c.yaml")
		bin := filepath.Join(dir, ProviderName)
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(bin, 1000, 1000); err != nil {
			t.Fatal(err)
		}
		rep := runDoctor(t, Env{KubeletConfig: cfg, BinDir: dir})
		c, _ := rep.Find(CheckBinary)
		if c.Status != StatusFail || !strings.Contains(c.Summary, "owned by uid 1000") || !strings.Contains(c.Fix, "mv -T "+bin) || strings.Contains(c.Fix, "chmod") || strings.Contains(c.Fix, "chown") {
			t.Errorf("%s %q / %q", c.Status, c.Summary, c.Fix)
		}

		// A link to a root-only file: not executable, and the fix does not
		// chmod the link (that would open up its target).
		if err := os.Remove(bin); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(secretFile, bin); err != nil {
			t.Fatal(err)
		}
		rep = runDoctor(t, Env{KubeletConfig: cfg, BinDir: dir})
		c, _ = rep.Find(CheckBinary)
		if c.Status != StatusFail || strings.Contains(c.Fix, "chmod 0755 "+bin) {
			t.Errorf("%s %q / %q", c.Status, c.Summary, c.Fix)
		}
	})

	t.Run("credentials in the provider's env are not shown", func(t *testing.T) {
		yaml := strings.Replace(strings.Replace(taHeader, "%s", "credentialprovider.kubelet.k8s.io/v1", 1), "%s", "10m", 1) +
			"    env:\n" +
			"      - {name: HTTPS_PROXY, value: \"http://user:" + rootOnly + "@proxy:3128\"}\n" +
			"      - {name: NO_PROXY, value: \"tok" + rootOnly + "@x\"}\n" +
			"      - {name: ICR_API_KEY_FILE, value: \"" + rootOnly + "typedkey\"}\n" +
			"      - {name: MY_ACCESS_TOKEN, value: \"" + rootOnly + "\"}\n"
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		rep := runDoctor(t, Env{KubeletConfig: p})
		if out := render(t, rep); strings.Contains(out, rootOnly) || !strings.Contains(out, "http://proxy:3128 (user info not shown)") {
			t.Errorf("report:\n%s", out)
		}
	})
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
}
