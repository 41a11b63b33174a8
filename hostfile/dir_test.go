package hostfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestOpenDir(t *testing.T) {
	base := t.TempDir()
	ok := mkdir(t, filepath.Join(base, "ok"), 0o755)
	d, err := OpenDir(ok)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	gw := mkdir(t, filepath.Join(base, "gw"), 0o775)
	_, err = OpenDir(gw)
	wantUntrusted(t, err, gw, "writable by its group", "chmod go-w "+gw)
	_, err = OpenDir(filepath.Join(gw, "below"))
	wantUntrusted(t, err, gw, "writable by its group", "chmod go-w "+gw)

	if _, err := OpenDir(filepath.Join(ok, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	file := filepath.Join(ok, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := OpenDir(file); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("a file: %v", err)
	}
	// A link to a trusted directory is followed, as CheckPath follows it.
	os.Symlink("ok", filepath.Join(base, "link"))
	d, err = OpenDir(filepath.Join(base, "link"))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := d.Stat()
	want, _ := os.Stat(ok)
	if !os.SameFile(fi, want) {
		t.Error("the link's directory was not opened")
	}
	d.Close()
}

func TestDirEntries(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	f, err := d.CreateTemp(".x.tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Base(f.Name())
	if !strings.HasPrefix(tmp, ".x.tmp-") || len(tmp) < len(".x.tmp-")+16 || filepath.Dir(f.Name()) != dir {
		t.Errorf("temporary %s", f.Name())
	}
	f.WriteString("data")
	f.Close()
	if fi, _ := os.Lstat(filepath.Join(dir, tmp)); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	if err := d.Rename(tmp, "file"); err != nil {
		t.Fatal(err)
	}
	f, fi, err := d.Open("file")
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("%v %v", fi, err)
	}
	f.Close()

	// A link is never followed: Open refuses it, Lstat describes it,
	// Remove removes it and not its target.
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	if err := d.Symlink(victim, "link"); err != nil {
		t.Fatal(err)
	}
	if target, err := d.Readlink("link"); err != nil || target != victim {
		t.Errorf("readlink %q %v", target, err)
	}
	if _, _, err := d.Open("link"); !errors.Is(err, syscall.ELOOP) {
		t.Errorf("open of a link: %v", err)
	}
	if fi, err := d.Lstat("link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat of a link: %v %v", fi, err)
	}
	if err := d.Remove("link"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Error("the link's target was touched")
	}

	// A FIFO opens without a writer, and says what it is.
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, fi, err = d.Open("fifo")
	if err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatalf("fifo: %v %v", fi, err)
	}
	f.Close()

	names, err := d.Names()
	slices.Sort(names)
	if err != nil || strings.Join(names, " ") != "fifo file" {
		t.Errorf("names %v %v", names, err)
	}

	// Names that would leave the directory.
	for _, n := range []string{"", ".", "..", "../x", "a/b", "/etc/passwd"} {
		if _, _, err := d.Open(n); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("open %q: %v", n, err)
		}
		if err := d.Remove(n); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("remove %q: %v", n, err)
		}
		if err := d.Rename("file", n); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("rename to %q: %v", n, err)
		}
	}
}
