package installer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestSystemctlCommand(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := filepath.Join(dir, "systemctl")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" >> "+log+"\n[ \"$3\" = broken.service ] && { echo 'Job for broken.service failed.' >&2; exit 1; }\nexit 0\n"), 0o755)
	s, err := NewSystemctl(script+" --no-ask-password", "/")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(context.Background(), "kubelet.service"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); string(b) != "--no-ask-password restart kubelet.service\n" {
		t.Errorf("ran %q", b)
	}
	err = s.Restart(context.Background(), "broken.service")
	if err == nil || !strings.Contains(err.Error(), "restart broken.service") || !strings.Contains(err.Error(), "Job for broken.service failed.") {
		t.Errorf("err = %v", err)
	}

	d, _ := NewSystemctl("", "/")
	if strings.Join(d.Command, " ") != "nsenter --target 1 --mount --uts --ipc --net --pid -- systemctl" || d.Root != "" {
		t.Errorf("default %+v", d)
	}
}

// Without nsenter in the image, the host's is found under the host root.
func TestLookPathIn(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/nsenter"), []byte("#!/bin/sh\n"), 0o755)
	if p, err := lookPathIn(root, "nsenter"); err != nil || p != "/usr/bin/nsenter" {
		t.Errorf("%q %v", p, err)
	}
	if _, err := lookPathIn(root, "missing"); err == nil || !strings.Contains(err.Error(), "--systemctl") {
		t.Errorf("missing: %v", err)
	}
}

func TestHealthWait(t *testing.T) {
	var answer atomic.Value
	answer.Store("ok")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch a := answer.Load().(string); a {
		case "ok":
			w.Write([]byte("ok"))
		default:
			http.Error(w, a, http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	h := Health{URL: srv.URL, Timeout: 100 * time.Millisecond, Interval: 5 * time.Millisecond}
	if err := h.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	answer.Store("[-]pleg failed")
	err := h.Wait(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not healthy within 100ms") || !strings.Contains(err.Error(), "status 500") || !strings.Contains(err.Error(), "pleg failed") {
		t.Errorf("err = %v", err)
	}
	srv.Close()
	if err := h.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed: %v", err)
	}
}

// The fallback for an image without nsenter: the host's, run chrooted into
// the host root with the same arguments.
func TestSystemctlChrootIntoHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	root, src := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module fake\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(`package main

import (
	"fmt"
	"os"
)

func main() {
	_, err := os.Stat("/usr/bin/nsenter") // true inside the chroot only
	fmt.Println("chrooted:", err == nil, os.Args[1:])
	os.Exit(3)
}
`), 0o644)
	build := exec.Command("go", "build", "-o", filepath.Join(root, "usr/bin/nsenter"), ".")
	build.Dir, build.Env = src, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Skipf("building a static stand-in: %v\n%s", err, out)
	}
	s := Systemctl{Command: DefaultSystemctl, Root: root}
	err := s.Restart(context.Background(), "kubelet.service")
	if err != nil && strings.Contains(err.Error(), "operation not permitted") {
		t.Skip(err)
	}
	if err == nil || !strings.Contains(err.Error(), "chrooted: true [--target 1 --mount --uts --ipc --net --pid -- systemctl restart kubelet.service]") {
		t.Fatalf("err = %v", err)
	}
}
