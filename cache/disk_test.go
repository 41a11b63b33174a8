package cache

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// plantedToken is what an attacker or a corrupt file offers; it must never
// be served.
const plantedToken = "SECRET-planted-token"

func TestUntrustedEntries(t *testing.T) {
	asRoot := os.Geteuid() == 0
	tests := []struct {
		name     string
		needRoot bool
		// plant replaces the entry at path (a good one exists already).
		plant func(t *testing.T, dir, path string, good []byte)
		// check runs after the refresh, e.g. that a symlink target is intact.
		check func(t *testing.T, dir string)
	}{{
		name:  "corrupt",
		plant: writeFile("{not json "+plantedToken+"}", 0o600),
	}, {
		name: "truncated",
		plant: func(t *testing.T, dir, path string, good []byte) {
			writeFile(string(good[:len(good)/2]), 0o600)(t, dir, path, good)
		},
	}, {
		name:  "empty",
		plant: writeFile("", 0o600),
	}, {
		name: "trailing garbage",
		plant: func(t *testing.T, dir, path string, good []byte) {
			writeFile(string(good)+"x", 0o600)(t, dir, path, good)
		},
	}, {
		name:  "unknown version",
		plant: writeEntry(func(e *entry) { e.Version = entryVersion + 1 }, 0o600),
	}, {
		name:  "version missing",
		plant: writeEntry(func(e *entry) { e.Version = 0 }, 0o600),
	}, {
		name:  "key hash of another identity",
		plant: writeEntry(func(e *entry) { e.KeySHA256 = hashOf("someone-else") }, 0o600),
	}, {
		name:  "no token",
		plant: writeEntry(func(e *entry) { e.AccessToken = "" }, 0o600),
	}, {
		name:  "mode 0644",
		plant: writeEntry(nil, 0o644),
	}, {
		name:  "mode 0640",
		plant: writeEntry(nil, 0o640),
	}, {
		name:     "owned by another user",
		needRoot: true,
		plant: func(t *testing.T, dir, path string, good []byte) {
			writeEntry(nil, 0o600)(t, dir, path, good)
			if err := os.Lchown(path, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "hard link",
		plant: func(t *testing.T, dir, path string, good []byte) {
			writeEntry(nil, 0o600)(t, dir, path, good)
			if err := os.Link(path, filepath.Join(filepath.Dir(dir), "hardlink")); err != nil {
				t.Fatal(err)
			}
		},
		check: func(t *testing.T, dir string) {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "hardlink"))
			if err != nil || !strings.Contains(string(b), plantedToken) {
				t.Errorf("the other link was changed: %v", err)
			}
		},
	}, {
		name: "symlink to a valid-looking entry",
		plant: func(t *testing.T, dir, path string, good []byte) {
			target := filepath.Join(filepath.Dir(dir), "target")
			writeEntry(nil, 0o600)(t, dir, target, good)
			replaceWith(t, path, func() error { return os.Symlink(target, path) })
		},
		check: func(t *testing.T, dir string) {
			target := filepath.Join(filepath.Dir(dir), "target")
			fi, err := os.Lstat(target)
			if err != nil || fi.Mode() != 0o600 {
				t.Fatalf("target: %v, %v", fi, err)
			}
			b, _ := os.ReadFile(target)
			if !strings.Contains(string(b), plantedToken) {
				t.Errorf("symlink target was written to")
			}
		},
	}, {
		name: "dangling symlink",
		plant: func(t *testing.T, dir, path string, good []byte) {
			target := filepath.Join(filepath.Dir(dir), "nothing-here")
			replaceWith(t, path, func() error { return os.Symlink(target, path) })
		},
		check: func(t *testing.T, dir string) {
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "nothing-here")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("symlink target was created: %v", err)
			}
		},
	}, {
		name: "fifo",
		plant: func(t *testing.T, dir, path string, good []byte) {
			replaceWith(t, path, func() error { return syscall.Mkfifo(path, 0o600) })
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && !asRoot {
				t.Skip("needs root to chown")
			}
			dir := filepath.Join(t.TempDir(), "cache")
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			logger, logs := newLogCapture()
			opts := Options{Dir: dir, Now: clock.Now, Logger: logger}
			if _, err := newCache(fake.source(), testKey, opts).Token(context.Background()); err != nil {
				t.Fatal(err)
			}
			good, err := os.ReadFile(entryPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			tc.plant(t, dir, entryPath(dir), good)

			r, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Origin != FromSource || r.Token.AccessToken == plantedToken || fake.calls.Load() != 2 {
				t.Fatalf("untrusted entry served: origin %v, %d calls", r.Origin, fake.calls.Load())
			}
			if !strings.Contains(logs.String(), "untrusted token cache entry") {
				t.Errorf("not reported at V(2):\n%s", logs)
			}
			// Replaced by a trusted entry, which the next process uses.
			if e := readStoredEntry(t, dir); e.AccessToken != r.Token.AccessToken {
				t.Errorf("entry not replaced")
			}
			r2, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
			if err != nil || r2.Origin != FromDisk || r2.Token.AccessToken != r.Token.AccessToken {
				t.Errorf("after replacement: %v from %v, %v", r2.Token, r2.Origin, err)
			}
			if tc.check != nil {
				tc.check(t, dir)
			}
			assertNoSecret(t, logs, plantedToken)
			assertNoSecret(t, logs, r.Token.AccessToken)
		})
	}
}

func TestUntrustedEntryRemovedWhenRefreshFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	fake.setErr(errIAMDown)
	logger, logs := newLogCapture()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeEntry(nil, 0o644)(t, dir, entryPath(dir), nil)
	_, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger}).Fetch(context.Background())
	if !errors.Is(err, errIAMDown) {
		t.Fatalf("err %v, want %v (no stale token from an untrusted entry)", err, errIAMDown)
	}
	// What is there now is the record of the failed refresh, without a
	// token.
	if e := readStoredEntry(t, dir); e.AccessToken != "" || e.RefreshFailedAt.IsZero() {
		t.Errorf("untrusted entry still there, or no failure record: %+v", e.RefreshFailedAt)
	}
	assertNoSecret(t, logs, plantedToken, err.Error())
}

// writeFile plants content with mode at path.
func writeFile(content string, mode os.FileMode) func(*testing.T, string, string, []byte) {
	return func(t *testing.T, dir, path string, _ []byte) {
		t.Helper()
		replaceWith(t, path, func() error { return os.WriteFile(path, []byte(content), mode) })
		if err := os.Chmod(path, mode); err != nil { // despite umask
			t.Fatal(err)
		}
	}
}

// writeEntry plants a well-formed, fresh entry carrying plantedToken.
func writeEntry(mutate func(*entry), mode os.FileMode) func(*testing.T, string, string, []byte) {
	return func(t *testing.T, dir, path string, good []byte) {
		t.Helper()
		b := entryJSON(t, plantedToken, t0, t0.Add(time.Hour), mutate)
		writeFile(string(b), mode)(t, dir, path, good)
	}
}

func replaceWith(t *testing.T, path string, create func() error) {
	t.Helper()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if err := create(); err != nil {
		t.Fatal(err)
	}
}

func TestUnusableDir(t *testing.T) {
	asRoot := os.Geteuid() == 0
	tests := []struct {
		name     string
		needRoot bool
		// setup returns the Dir option for a fresh base directory.
		setup  func(t *testing.T, base string) string
		unsafe bool // CheckDir reports ErrUnsafeDir
	}{{
		name: "symlink to a directory",
		setup: func(t *testing.T, base string) string {
			mkdir(t, filepath.Join(base, "real"), 0o700)
			symlink(t, filepath.Join(base, "real"), filepath.Join(base, "link"))
			return filepath.Join(base, "link")
		},
		unsafe: true,
	}, {
		name: "group-writable",
		setup: func(t *testing.T, base string) string {
			return mkdir(t, filepath.Join(base, "cache"), 0o770)
		},
		unsafe: true,
	}, {
		name: "world-writable sticky",
		setup: func(t *testing.T, base string) string {
			d := mkdir(t, filepath.Join(base, "cache"), 0o777)
			if err := os.Chmod(d, 0o777|os.ModeSticky); err != nil {
				t.Fatal(err)
			}
			return d
		},
		unsafe: true,
	}, {
		name:     "owned by another user",
		needRoot: true,
		setup: func(t *testing.T, base string) string {
			d := mkdir(t, filepath.Join(base, "cache"), 0o700)
			if err := os.Chown(d, 4242, 4242); err != nil {
				t.Fatal(err)
			}
			return d
		},
		unsafe: true,
	}, {
		name: "a regular file",
		setup: func(t *testing.T, base string) string {
			p := filepath.Join(base, "file")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		},
		unsafe: true,
	}, {
		// Uncreatable even for root, like a read-only or full parent.
		name: "missing, parent is a regular file",
		setup: func(t *testing.T, base string) string {
			p := filepath.Join(base, "file")
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(p, "cache")
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needRoot && !asRoot {
				t.Skip("needs root to chown")
			}
			base := t.TempDir()
			dir := tc.setup(t, base)
			before := listTree(t, base)
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			logger, logs := newLogCapture()
			s := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger})
			for i, want := range []Origin{FromSource, FromMemory} {
				r, err := s.Fetch(context.Background())
				if err != nil || r.Origin != want {
					t.Fatalf("call %d: origin %v, %v; want %v", i, r.Origin, err, want)
				}
			}
			if n := logs.loudLines("Token cache on disk disabled"); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, logs)
			}
			if after := listTree(t, base); after != before {
				t.Errorf("files changed:\n%s\n->\n%s", before, after)
			}
			err := CheckDir(dir)
			if err == nil || errors.Is(err, ErrUnsafeDir) != tc.unsafe {
				t.Errorf("CheckDir: %v, unsafe want %v", err, tc.unsafe)
			}
			assertNoSecret(t, logs, "SECRET-token-1")
		})
	}
}

func TestCheckDir(t *testing.T) {
	base := t.TempDir()
	if err := CheckDir(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(base, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CheckDir created the dir")
	}
	if err := CheckDir(mkdir(t, filepath.Join(base, "ok"), 0o700)); err != nil {
		t.Errorf("good dir: %v", err)
	}
	if err := CheckDir(mkdir(t, filepath.Join(base, "ok755"), 0o755)); err != nil {
		t.Errorf("0755 dir: %v", err)
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name string
		sys  func(real sysOps) sysOps
	}{{
		name: "disk full",
		sys: func(real sysOps) sysOps {
			real.write = func(int, []byte) (int, error) { return 0, syscall.ENOSPC }
			return real
		},
	}, {
		name: "short writes then disk full",
		sys: func(real sysOps) sysOps {
			n := 0
			real.write = func(fd int, p []byte) (int, error) {
				if n++; n > 2 {
					return 0, syscall.ENOSPC
				}
				return syscall.Write(fd, p[:1])
			}
			return real
		},
	}, {
		name: "read-only file system",
		sys: func(real sysOps) sysOps {
			real.openat = func(dirfd int, path string, flags int, mode uint32) (int, error) {
				if flags&syscall.O_CREAT != 0 {
					return -1, syscall.EROFS
				}
				return syscall.Openat(dirfd, path, flags, mode)
			}
			return real
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			logger, logs := newLogCapture()
			opts := Options{Dir: dir, Now: clock.Now, Logger: logger}
			s := newCache(fake.source(), testKey, opts)
			s.file().sys = tc.sys(s.file().sys)
			r, err := s.Fetch(context.Background())
			if err != nil || r.Origin != FromSource {
				t.Fatalf("origin %v, %v", r.Origin, err)
			}
			if n := strings.Count(logs.String(), " I0 "); n != 1 {
				t.Errorf("%d warnings, want 1:\n%s", n, logs)
			}
			names, _ := os.ReadDir(dir)
			for _, n := range names {
				if !strings.HasSuffix(n.Name(), ".lock") && n.Name() != sweepStamp {
					t.Errorf("left behind: %s", n.Name())
				}
			}
			// Memory still works.
			if r, err := s.Fetch(context.Background()); err != nil || r.Origin != FromMemory {
				t.Errorf("second call: %v, %v", r.Origin, err)
			}
			assertNoSecret(t, logs, r.Token.AccessToken)
		})
	}
}

func TestUntrustedLockFile(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, hashOf(testKey)+".lock")
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	symlink(t, target, lock)
	fake := newSource(time.Now, time.Hour)
	logger, _ := newLogCapture()
	if _, err := newCache(fake.source(), testKey, Options{Dir: dir, Logger: logger}).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(lock); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("lock file not replaced: %v, %v", fi, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("symlink target changed")
	}
}

func mkdir(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // despite umask
		t.Fatal(err)
	}
	return path
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// listTree lists the files under root with their modes, for before/after
// comparisons.
func listTree(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		b.WriteString(rel + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestUnsafeParents: a cache directory reached through a symbolic link, or
// through a directory others may write (without the sticky bit), is not
// used; nothing is created in it.
func TestUnsafeParents(t *testing.T) {
	base := t.TempDir()
	real := mkdir(t, filepath.Join(base, "real"), 0o700)
	symlink(t, real, filepath.Join(base, "link"))
	open := mkdir(t, filepath.Join(base, "open"), 0o777)
	if err := os.Chmod(open, 0o777); err != nil { // despite umask
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(base, "link", "cache"), filepath.Join(open, "cache")} {
		if err := CheckDir(dir); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("CheckDir(%s) = %v, want ErrUnsafeDir", dir, err)
		}
		logger, logs := newLogCapture()
		fake := newSource(time.Now, time.Hour)
		if _, err := newCache(fake.source(), testKey, Options{Dir: dir, Logger: logger}).Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was created", dir)
		}
		if logs.loudLines("Token cache on disk disabled") != 1 {
			t.Errorf("no warning:\n%s", logs)
		}
	}
}

// TestLockFileWithLinks: a lock file with another hard link (to a file
// someone else can read or change) is replaced, not used.
func TestLockFileWithLinks(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, hashOf(testKey)+".lock")
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(other, lock); err != nil {
		t.Fatal(err)
	}
	logger, _ := newLogCapture()
	if _, err := newCache(newSource(time.Now, time.Hour).source(), testKey, Options{Dir: dir, Logger: logger}).Token(t.Context()); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(lock, &st); err != nil || st.Nlink != 1 {
		t.Errorf("lock file still has %d links (%v)", st.Nlink, err)
	}
	if b, _ := os.ReadFile(other); string(b) != "keep" {
		t.Error("the other link's file changed")
	}
}
