package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/agent"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

var agentBin, pluginBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "icr-agent-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin, pluginBin = filepath.Join(dir, "icr-node-agent"), filepath.Join(dir, "icr-credential-provider")
	for bin, pkg := range map[string]string{agentBin: ".", pluginBin: "../icr-credential-provider"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg, err)
			os.Exit(1)
		}
	}
	code := iam.RunLoopbackOnly(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// kubeletConfig writes the config install would write for the emulator.
func kubeletConfig(t *testing.T, emu *iamtest.Server, cacheDir string) string {
	t.Helper()
	cfg, err := installer.Config(installer.Provider{Env: []kubeletv1.ExecEnvVar{
		{Name: "ICR_IAM_URL", Value: emu.IAMURL()}, {Name: "ICR_METADATA_URL", Value: emu.MetadataURL()},
		{Name: "ICR_PROFILE_ID", Value: iamtest.DefaultProfileID}, {Name: "ICR_CACHE_DIR", Value: cacheDir},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// plugin runs the plugin as the kubelet would, with the config's env.
func plugin(t *testing.T, emu *iamtest.Server, cacheDir string) (string, error) {
	cmd := exec.Command(pluginBin)
	cmd.Env = []string{"ICR_IAM_URL=" + emu.IAMURL(), "ICR_METADATA_URL=" + emu.MetadataURL(), "ICR_PROFILE_ID=" + iamtest.DefaultProfileID, "ICR_CACHE_DIR=" + cacheDir}
	cmd.Stdin = strings.NewReader(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/team/app"}`)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// TestAgentAndPluginsOneGrant: the agent's refresh and 64 plugin
// processes on a cold cache at once make one IAM grant; a plugin run after
// the agent's refresh makes none.
func TestAgentAndPluginsOneGrant(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	cacheDir := filepath.Join(t.TempDir(), "cache")
	a := agent.New(agent.Options{KubeletConfig: kubeletConfig(t, emu, cacheDir), NodeName: "n"})
	var wg sync.WaitGroup
	errs := make(chan error, 65)
	start := make(chan struct{})
	for range 64 {
		wg.Go(func() {
			<-start
			if _, err := plugin(t, emu, cacheDir); err != nil {
				errs <- err
			}
		})
	}
	wg.Go(func() {
		<-start
		if _, err := a.Refresh(context.Background()); err != nil {
			errs <- err
		}
	})
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if g := emu.Grants(); g != 1 {
		t.Errorf("%d grants for the agent and 64 plugins on a cold cache, want 1", g)
	}
	if _, err := plugin(t, emu, cacheDir); err != nil || emu.Grants() != 1 {
		t.Errorf("plugin after the agent: %v, %d grants", err, emu.Grants())
	}
}

// freePort returns a loopback address nothing listens on.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunAndSIGTERM: the agent starts without an API server (it says so
// once and carries on), serves its metrics, and stops cleanly on SIGTERM
// well within a pod's grace period.
func TestRunAndSIGTERM(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	addr := freePort(t)
	cmd := exec.Command(agentBin, "--kubelet-config", kubeletConfig(t, emu, filepath.Join(t.TempDir(), "cache")),
		"--node-name", "n", "--kubeconfig", "/nonexistent", "--metrics-address", addr, "--bin-dir", t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var metrics string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "icr_credential_provider_token_expiry_timestamp_seconds ") && strings.Contains(string(b), "icr_credential_provider_credentials_ready ") {
			metrics = string(b)
			break
		}
	}
	if metrics == "" {
		t.Fatalf("no metrics with a token expiry and a health result:\n%s", stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM:\n%s", stderr.String())
	}
	for _, tok := range emu.Minted() {
		if strings.Contains(stderr.String()+metrics, tok[:40]) {
			t.Fatal("a token in the agent's output or metrics")
		}
	}
	if n := strings.Count(stderr.String(), "No Kubernetes API client"); n != 1 {
		t.Errorf("the missing API server is said %d times, want once:\n%s", n, stderr.String())
	}
}

// TestIdle: the uninstall DaemonSet's placeholder container does nothing,
// says nothing and returns 0 on SIGTERM. In process: the test catches
// SIGTERM too, so one sent before run listens is not fatal, and it sends
// until run returns.
func TestIdle(t *testing.T) {
	caught := make(chan os.Signal, 64)
	signal.Notify(caught, syscall.SIGTERM)
	defer signal.Stop(caught)
	var out bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"--idle"}, &out, func(string) (string, bool) { return "", false }) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; ; {
		select {
		case code := <-done:
			if sent == 0 {
				t.Fatal("returned before it was stopped")
			}
			if code != 0 || out.Len() > 0 {
				t.Fatalf("exit %d, output %q", code, out.String())
			}
			return
		case <-tick.C:
			if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
}
