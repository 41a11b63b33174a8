package installer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// Every file the installer writes, reads back or removes is reached through
// a hostfile.Dir: the directory is checked (only root can change it) and
// opened once, and its entries are named relative to that descriptor, so
// nothing is looked up by path between a check and a use. A new file is
// written to an exclusive temporary file, given its mode and owner, synced,
// run (the binary) through the open file, then renamed into place.

// openDir opens dir for the installer (what names it in messages, e.g.
// "--bin-dir"): it must exist, be a directory, and be trusted.
func openDir(dir, what string) (*hostfile.Dir, error) {
	d, err := hostfile.OpenDir(dir)
	if err != nil {
		return nil, dirError(dir, what, err)
	}
	return d, nil
}

func dirError(dir, what string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf("%s %s does not exist: create it, or check the path (and the hostPath mount when running in a pod)", what, dir)
	case errors.Is(err, syscall.ENOTDIR):
		return errorf("%s %s is not a directory: give a directory", what, dir)
	}
	return trustError(what+" "+dir, err)
}

// trustError words hostfile's refusal of what (why, the fix), or another
// error about it.
func trustError(what string, err error) error {
	if ue := (*hostfile.UntrustedError)(nil); errors.As(err, &ue) {
		return errorf("%s is not safe to write as root: %v: %s (--force does not override this)", what, ue, ue.Fix)
	}
	return errorf("%s: %v", what, config.Bare(err))
}

// CheckTrusted returns hostfile.CheckPath's refusal of path (what names it)
// in the installer's words, or nil.
func CheckTrusted(path, what string) error {
	if err := hostfile.CheckPath(path); err != nil {
		return trustError(what+" "+path, err)
	}
	return nil
}

// existing is an entry about to be replaced: absent (fi nil), a symbolic
// link (f nil), or a regular file opened read-only (f).
type existing struct {
	fi fs.FileInfo
	f  *os.File
}

func (e existing) close() {
	if e.f != nil {
		e.f.Close()
	}
}

// examine checks the entry name of d before it is replaced: it must be
// trusted, and a regular file, or missing, or (with force) a symbolic
// link, which is replaced and never followed.
func examine(d *hostfile.Dir, name string, force bool) (existing, error) {
	path := d.Path(name)
	fi, err := lstatTrusted(d, name, path)
	if fi == nil {
		return existing{}, err
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
	case m&fs.ModeSymlink != 0:
		if !force {
			return existing{}, errorf("%s is a symbolic link: remove it, or give --force to replace the link itself (its target is left alone)", path)
		}
		return existing{fi: fi}, nil
	case m.IsDir():
		return existing{}, errorf("%s is a directory, not a regular file: remove it or choose another path", path)
	default:
		return existing{}, errorf("%s is not a regular file (%v): remove it or choose another path", path, m.Type())
	}
	f, ofi, err := d.Open(name)
	if err != nil {
		return existing{}, errorf("reading %s: %v: check its permissions", path, config.Bare(err))
	}
	if !os.SameFile(fi, ofi) || !ofi.Mode().IsRegular() {
		f.Close()
		return existing{}, errorf("%s was replaced while install checked it: run install again", path)
	}
	return existing{fi: ofi, f: f}, nil
}

// lstatTrusted describes the entry name of d (nil if missing), which must
// be trusted; what names it in errors.
func lstatTrusted(d *hostfile.Dir, name, what string) (fs.FileInfo, error) {
	fi, err := d.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		err = hostfile.Untrusted(d.Path(name), fi)
	}
	if err != nil {
		return nil, trustError(what, err)
	}
	return fi, nil
}

// readUpTo reads up to n bytes of f from its start, and whether there is more.
func readUpTo(f *os.File, n int) ([]byte, bool, error) {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, int64(n)+1))
	return b[:min(len(b), n)], len(b) > n, err
}

type putOptions struct {
	force   bool                                        // replace a symbolic link at the name
	fixMode bool                                        // an unchanged file is given perm
	verify  func(ctx context.Context, f *os.File) error // runs the file written, read-only, before the rename
}

// put makes the entry name of d hold data with perm: unchanged if it does
// (its mode fixed if fixMode, through the open file), else replaced.
func put(ctx context.Context, d *hostfile.Dir, name string, data []byte, perm fs.FileMode, o putOptions) (Action, error) {
	old, err := examine(d, name, o.force)
	if err != nil {
		return "", err
	}
	defer old.close()
	if old.f != nil {
		cur, more, err := readUpTo(old.f, len(data))
		if err != nil {
			return "", errorf("reading %s: %v", d.Path(name), config.Bare(err))
		}
		if !more && bytes.Equal(cur, data) {
			if !o.fixMode || old.fi.Mode().Perm() == perm {
				return Unchanged, nil
			}
			if err := old.f.Chmod(perm); err != nil {
				return "", writeError(d.Path(""), err)
			}
			return Updated, nil
		}
	}
	old.close()
	if err := replace(ctx, d, name, data, perm, o.verify); err != nil {
		return "", err
	}
	if old.fi == nil {
		return Created, nil
	}
	return Updated, nil
}

// replace writes data to a new temporary file in d with perm and this
// process's owner, syncs it, runs verify on it (read-only: the kernel runs
// no file open for writing), renames it over name and syncs d. On error, or
// when ctx is done, the temporary file goes and name is left as it was.
func replace(ctx context.Context, d *hostfile.Dir, name string, data []byte, perm fs.FileMode, verify func(context.Context, *os.File) error) (err error) {
	dir := d.Path("")
	w, err := d.CreateTemp(tempPattern(name))
	if err != nil {
		return writeError(dir, err)
	}
	tmp := filepath.Base(w.Name())
	var wrote fs.FileInfo
	defer func() {
		w.Close()
		if err == nil {
			return
		}
		// Only if still the file written (nil: unknown), never another process's.
		if now, lerr := d.Lstat(tmp); lerr == nil && (wrote == nil || os.SameFile(now, wrote)) {
			_ = d.Remove(tmp)
		}
	}()
	if wrote, err = w.Stat(); err != nil {
		return writeError(dir, err)
	}
	if _, err = w.Write(data); err != nil {
		return writeError(dir, err)
	}
	// The directory's group, if it is set-group-ID, is not for the binary.
	if st, ok := wrote.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		if err = w.Chown(os.Geteuid(), os.Getegid()); err != nil {
			return writeError(dir, err)
		}
	}
	if err = w.Chmod(perm); err != nil {
		return writeError(dir, err)
	}
	if err = w.Sync(); err != nil {
		return writeError(dir, err)
	}
	if verify != nil {
		var r *os.File
		if r, err = reopen(w); err != nil {
			return err
		}
		w.Close()
		err = verify(ctx, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return interrupted(ctx)
	}
	// Only root can change d (hostfile's rule); were that not so, what is
	// renamed must still be what was written, and what is in place after.
	if now, lerr := d.Lstat(tmp); lerr != nil || !os.SameFile(now, wrote) {
		return errorf("the new %s was replaced while install wrote it: something else writes %s; nothing was changed", d.Path(name), dir)
	}
	if err = d.Rename(tmp, name); err != nil {
		return writeError(dir, err)
	}
	if now, lerr := d.Lstat(name); lerr != nil || !os.SameFile(now, wrote) {
		return errorf("%s was replaced by another file right after install wrote it: something else writes %s; check what is there before the kubelet runs it", d.Path(name), dir)
	}
	_ = d.Sync() // best effort: some file systems refuse
	return nil
}

// reopen opens w's file again, read-only, through /proc/self/fd, whatever its name.
func reopen(w *os.File) (*os.File, error) {
	r, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(w.Fd())))
	if err != nil {
		return nil, errorf("cannot open the copied binary again through /proc/self/fd (%v): install needs /proc mounted", config.Bare(err))
	}
	fi, err := r.Stat()
	wfi, werr := w.Stat()
	if err != nil || werr != nil || !os.SameFile(fi, wfi) {
		r.Close()
		return nil, errorf("/proc/self/fd did not give the copied binary back: install needs the host's /proc semantics")
	}
	return r, nil
}

// tempPattern names temporary files: hidden, never taken for a provider.
func tempPattern(name string) string { return "." + name + ".icr-install-*" }

// staleAfter is the age at which a killed installer's temporary file goes.
const staleAfter = 10 * time.Minute

// removeStale removes killed installers' temporary files from d.
func removeStale(d *hostfile.Dir) {
	names, _ := d.Names()
	for _, n := range names {
		if ok, _ := filepath.Match(".*.icr-install-*", n); !ok {
			continue
		}
		if fi, err := d.Lstat(n); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleAfter {
			_ = d.Remove(n)
		}
	}
}

func probeWritable(d *hostfile.Dir) error {
	f, err := d.CreateTemp(tempPattern("probe"))
	if err != nil {
		return writeError(d.Path(""), err)
	}
	f.Close()
	return d.Remove(filepath.Base(f.Name()))
}

// writeFile is put of the file path, its directory opened for it.
func writeFile(path string, content []byte, perm fs.FileMode, o putOptions) (Action, error) {
	d, err := openDir(filepath.Dir(path), "directory")
	if err != nil {
		return "", err
	}
	defer d.Close()
	return put(context.Background(), d, filepath.Base(path), content, perm, o)
}

// removeFile removes the file or link at path, if there, from its
// directory opened for it.
func removeFile(path string) error {
	d, err := hostfile.OpenDir(filepath.Dir(path))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return dirError(filepath.Dir(path), "directory", err)
	}
	defer d.Close()
	if err := d.Remove(filepath.Base(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return writeError(filepath.Dir(path), err)
	}
	_ = d.Sync()
	return nil
}

// geteuid is os.Geteuid; tests pretend to be root.
var geteuid = os.Geteuid

func writeError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return errorf("cannot write to %s: read-only file system: mount it read-write (hostPath without readOnly) or choose a writable directory", dir)
	case errors.Is(err, fs.ErrPermission) && geteuid() == 0:
		return errorf("cannot write to %s: permission denied although running as root: the directory's owner or mode denies it and this process lacks CAP_DAC_OVERRIDE, or SELinux/AppArmor or an immutable attribute (chattr +i) denies it: check 'ls -ld %s' and the container's capabilities", dir, dir)
	case errors.Is(err, fs.ErrPermission):
		return errorf("cannot write to %s: permission denied: run the installer as root (the DaemonSet does) or choose a directory you can write", dir)
	case errors.Is(err, syscall.ENOSPC):
		return errorf("cannot write to %s: no space left on device: free some space", dir)
	}
	return errorf("cannot write to %s: %v", dir, config.Bare(err))
}

// Target is a file the installer writes: what names it in messages, and
// its path as this process sees it.
type Target struct{ What, Path string }

// Distinct refuses two targets that are one file: the same path however
// spelled, the same name in the same directory (reached through a link),
// or two links to one file. Each would overwrite the other.
func Distinct(ts ...Target) error {
	dirs, files := make([]fs.FileInfo, len(ts)), make([]fs.FileInfo, len(ts))
	for i, t := range ts {
		dirs[i], _ = os.Stat(filepath.Dir(t.Path))
		files[i], _ = os.Lstat(t.Path)
	}
	same := func(a, b fs.FileInfo) bool { return a != nil && b != nil && os.SameFile(a, b) }
	for i, a := range ts {
		for j, b := range ts[:i] {
			if filepath.Clean(a.Path) == filepath.Clean(b.Path) || same(files[i], files[j]) ||
				same(dirs[i], dirs[j]) && filepath.Base(a.Path) == filepath.Base(b.Path) {
				return errorf("%s %s and %s %s are the same file: give each its own path", b.What, b.Path, a.What, a.Path)
			}
		}
	}
	return nil
}

func interrupted(ctx context.Context) error {
	return fmt.Errorf("interrupted: %w", context.Cause(ctx))
}
