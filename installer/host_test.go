package installer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Links in the host's file system resolve as on the host: an absolute
// target starts at the host root, and nothing leaves it.
func TestHostResolve(t *testing.T) {
	root := t.TempDir()
	h := Host{Root: root}
	os.MkdirAll(filepath.Join(root, "usr/lib/systemd/system"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/lib/systemd/system/kubelet.service"), []byte("unit"), 0o644)
	os.Symlink("usr/lib", filepath.Join(root, "lib"))
	os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755)
	os.Symlink("/usr/lib/systemd/system/kubelet.service", filepath.Join(root, "etc/systemd/system/multi-user.target.wants/kubelet.service"))
	os.Symlink("../../../../../../../../etc/passwd", filepath.Join(root, "escape"))
	os.Symlink("loop", filepath.Join(root, "loop"))

	for p, want := range map[string]string{
		"/lib/systemd/system/kubelet.service":                         "unit",
		"/etc/systemd/system/multi-user.target.wants/kubelet.service": "unit",
	} {
		b, err := h.read(p)
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v", p, b, err)
		}
	}
	if local, _ := h.resolve("/escape"); local != filepath.Join(root, "etc/passwd") {
		t.Errorf("escape resolved to %s", local)
	}
	if _, err := h.resolve("/loop"); err == nil || !strings.Contains(err.Error(), "too many levels") {
		t.Errorf("loop: %v", err)
	}
}

func TestHostPath(t *testing.T) {
	h := Host{Root: "/host"}
	if p, err := h.HostPath("--bin-dir", "/host/opt/icr/bin/"); err != nil || p != "/opt/icr/bin" {
		t.Errorf("%q %v", p, err)
	}
	if _, err := h.HostPath("--bin-dir", "/opt/icr/bin"); err == nil || !strings.Contains(err.Error(), "is not under --host-root /host") {
		t.Errorf("outside: %v", err)
	}
	if _, err := h.HostPath("--bin-dir", "/hostile/bin"); err == nil {
		t.Error("a sibling with the root as prefix accepted")
	}
	if p, _ := (Host{Root: "/"}).HostPath("--config", "/etc/x.yaml"); p != "/etc/x.yaml" {
		t.Errorf("root /: %q", p)
	}
	if _, err := NewHost("host"); err == nil {
		t.Error("relative host root accepted")
	}
}
