package hostfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile/hostfiletest"
)

// other is a uid that is neither root nor this process's user.
const other = 4242

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// needChown skips what only root can set up: a file another user owns.
func needChown(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
}

func wantUntrusted(t *testing.T, err error, path, reason, fix string) {
	t.Helper()
	var ue *UntrustedError
	if !errors.As(err, &ue) {
		t.Fatalf("err %v, want an *UntrustedError for %s", err, path)
	}
	if ue.Path != path || !strings.Contains(ue.Reason, reason) || !strings.Contains(ue.Fix, fix) {
		t.Fatalf("got %+v, want path %s, reason ~%q, fix ~%q", ue, path, reason, fix)
	}
}

func TestCheckPath(t *testing.T) {
	base := t.TempDir()
	ok := mkdir(t, filepath.Join(base, "ok"), 0o755)
	if err := CheckPath(filepath.Join(ok, "not", "yet")); err != nil {
		t.Errorf("a trusted chain to a path still to be created: %v", err)
	}
	if err := CheckPath("relative/path"); err == nil {
		t.Error("a relative path was accepted")
	}

	gw := mkdir(t, filepath.Join(base, "group-writable"), 0o775)
	wantUntrusted(t, CheckPath(filepath.Join(gw, "bin", "x")), gw, "writable by its group (mode 0775)", "chmod go-w "+gw)
	ww := mkdir(t, filepath.Join(base, "world-writable"), 0o777)
	wantUntrusted(t, CheckPath(filepath.Join(ww, "x")), ww, "writable by group or others (mode 0777)", "chmod go-w "+ww)

	sticky := mkdir(t, filepath.Join(base, "sticky"), os.ModeSticky|0o777)
	if err := CheckPath(filepath.Join(sticky, "x")); err != nil {
		t.Errorf("a sticky directory (/tmp's kind): %v", err)
	}

	file := filepath.Join(ok, "file")
	if err := os.WriteFile(file, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	wantUntrusted(t, CheckPath(file), file, "mode 0666", "chmod go-w")

	// Links: the target's chain counts, relative targets and ".." too.
	if err := os.Symlink(filepath.Join(ww, "bin"), filepath.Join(ok, "abs")); err != nil {
		t.Fatal(err)
	}
	wantUntrusted(t, CheckPath(filepath.Join(ok, "abs", "x")), ww, "0777", "chmod go-w")
	if err := os.Symlink("../group-writable/y", filepath.Join(ok, "rel")); err != nil {
		t.Fatal(err)
	}
	wantUntrusted(t, CheckPath(filepath.Join(ok, "rel")), gw, "0775", "")
	if err := os.Symlink("../ok/not", filepath.Join(ok, "fine")); err != nil {
		t.Fatal(err)
	}
	if err := CheckPath(filepath.Join(ok, "fine", "deeper")); err != nil {
		t.Errorf("a link within trusted directories: %v", err)
	}
	if err := os.Symlink("loop", filepath.Join(ok, "loop")); err != nil {
		t.Fatal(err)
	}
	if err := CheckPath(filepath.Join(ok, "loop")); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("a link loop: %v", err)
	}
}

func TestCheckPathOwners(t *testing.T) {
	needChown(t)
	base := t.TempDir()
	sticky := mkdir(t, filepath.Join(base, "sticky"), os.ModeSticky|0o777)

	// Another user's directory in a sticky one: theirs to swap.
	theirs := mkdir(t, filepath.Join(sticky, "bin"), 0o755)
	if err := os.Chown(theirs, other, other); err != nil {
		t.Fatal(err)
	}
	wantUntrusted(t, CheckPath(filepath.Join(theirs, "icr-credential-provider")), theirs, "owned by uid 4242",
		"mv -T "+theirs+" "+theirs+".untrusted")

	// Another user's link: its fix moves it, never chowns what it points to.
	link := filepath.Join(sticky, "link")
	if err := os.Symlink(base, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, other, other); err != nil {
		t.Fatal(err)
	}
	err := CheckPath(filepath.Join(link, "x"))
	wantUntrusted(t, err, link, "owned by uid 4242", "mv -T "+link)
	if strings.Contains(err.(*UntrustedError).Fix, "chown") || strings.Contains(err.(*UntrustedError).Fix, "chmod") {
		t.Errorf("a fix that changes a link's target: %s", err.(*UntrustedError).Fix)
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _, err := Read(p, 5); err != nil || string(b) != "12345" {
		t.Errorf("Read = %q, %v", b, err)
	}
	if _, _, err := Read(p, 4); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the bound: %v", err)
	}
	if _, _, err := Read(dir, 10); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a directory") {
		t.Errorf("a directory: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Returns without a writer: blocking here would hang the test.
	if _, _, err := Read(fifo, 10); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "a FIFO") {
		t.Errorf("a FIFO: %v", err)
	}
	if _, _, err := Read("/dev/zero", 10); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a device: %v", err)
	}
	if _, _, err := Read(filepath.Join(dir, "missing"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
}

func TestReadTrusted(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, []byte("a: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadTrusted(p, 1<<20); err != nil || string(b) != "a: b\n" {
		t.Errorf("ReadTrusted = %q, %v", b, err)
	}
	if err := os.Chmod(p, 0o646); err != nil {
		t.Fatal(err)
	}
	_, err := ReadTrusted(p, 1<<20)
	wantUntrusted(t, err, p, "writable by group or others", "chmod go-w")
}

// TestProcesses: a process's name proves nothing; only one running as root
// from an executable only root can change is trusted.
func TestProcesses(t *testing.T) {
	proc, bin := t.TempDir(), t.TempDir()
	kubelet, err := hostfiletest.Executable(filepath.Join(bin, "usr", "bin", "kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	writable, err := hostfiletest.Executable(filepath.Join(bin, "writable", "kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(writable, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		pid, uid int
		exe      string
		argv     []string
	}{
		{10, 0, kubelet, []string{"/usr/bin/kubelet", "--v=2"}},
		{9, 1000, kubelet, []string{"kubelet", "--image-credential-provider-config=/etc/shadow"}},
		{11, 0, writable, []string{"/tmp/kubelet"}},
		{12, 0, "", []string{"kubelet"}},
		{13, 0, kubelet, []string{"/bin/sh", "-c", "kubelet"}},
	} {
		if err := hostfiletest.Process(proc, p.pid, p.uid, p.exe, p.argv...); err != nil {
			t.Fatal(err)
		}
	}
	got := Processes(proc, "kubelet")
	want := []struct {
		pid       int
		untrusted string
	}{{9, "runs as uid 1000, not root"}, {10, ""}, {11, "its executable can be changed by another user: it is writable by group or others"}, {12, "its executable cannot be inspected"}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		if got[i].PID != w.pid || !strings.Contains(got[i].Untrusted, w.untrusted) || (w.untrusted == "") != (got[i].Untrusted == "") {
			t.Errorf("process %d: %+v, want untrusted ~%q", w.pid, got[i], w.untrusted)
		}
	}
	if got[1].Argv[1] != "--v=2" {
		t.Errorf("argv %q", got[1].Argv)
	}
	if Processes("-", "kubelet") != nil {
		t.Error(`"-" must turn the look-up off`)
	}
	// This test process itself, in the real /proc: found by its name, and
	// trusted exactly when it runs as root.
	self := filepath.Base(os.Args[0])
	found := false
	for _, p := range Processes("/proc", self) {
		if p.PID == os.Getpid() {
			found = true
			if (p.Untrusted == "") != (os.Geteuid() == 0 && os.Getuid() == 0) {
				t.Errorf("this process: %+v", p)
			}
		}
	}
	if !found {
		t.Errorf("this process (%s) is not found in /proc", self)
	}
}

func TestModeFix(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("/etc/shadow", link); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if got := ModeFix(f, 0o600); got != "run 'chmod 0600 "+f+"'" {
			t.Errorf("root's file: %s", got)
		}
	}
	if got := ModeFix(link, 0o600); strings.Contains(got, "chmod 0600 "+link) || !strings.Contains(got, "replace the symbolic link") {
		t.Errorf("a link: %s", got)
	}
	if got := ModeFix(filepath.Join(dir, "missing"), 0o700); !strings.Contains(got, "create") {
		t.Errorf("missing: %s", got)
	}
	needChown(t)
	if err := os.Chown(f, other, other); err != nil {
		t.Fatal(err)
	}
	if got := ModeFix(f, 0o600); strings.Contains(got, "chmod") || strings.Contains(got, "chown") || !strings.Contains(got, "mv -T "+f) {
		t.Errorf("another user's file: %s", got)
	}
}
