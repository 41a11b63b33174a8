package hostfile

import (
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir is a directory opened after CheckPath accepted it. Its entries are
// found by name relative to the open descriptor, never by path, and a
// symbolic link among them is never followed: nothing that changes a path
// between a check and a use can redirect what is created, read, renamed or
// removed in it. Not safe for concurrent use.
type Dir struct {
	f    *os.File
	path string
}

// OpenDir opens the directory path for the rule of CheckPath: path and
// every directory on the way to it, and the directory opened, are
// trusted, or the error is an *UntrustedError. A missing or non-directory
// path is the *fs.PathError of the open (fs.ErrNotExist, ENOTDIR).
func OpenDir(path string) (*Dir, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = Untrusted(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Dir{f: f, path: path}, nil
}

func (d *Dir) Close() error { return d.f.Close() }

// Path is the path of the entry name, for messages.
func (d *Dir) Path(name string) string { return filepath.Join(d.path, name) }

// Stat describes the directory itself.
func (d *Dir) Stat() (fs.FileInfo, error) { return d.f.Stat() }

// Sync makes renames and removals in the directory durable.
func (d *Dir) Sync() error { return d.f.Sync() }

func (d *Dir) fd() int { return int(d.f.Fd()) }

// plainName refuses a name that would be looked up beyond the directory.
func (d *Dir) plainName(op, name string) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return d.pathError(op, name, syscall.EINVAL)
	}
	return nil
}

func (d *Dir) pathError(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: d.Path(name), Err: err}
}

// openAt is openat(2) relative to d, restarted on EINTR.
func (d *Dir) openAt(op, name string, flags int, mode uint32) (*os.File, error) {
	if err := d.plainName(op, name); err != nil {
		return nil, err
	}
	for {
		fd, err := unix.Openat(d.fd(), name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, d.pathError(op, name, err)
		}
		return os.NewFile(uintptr(fd), d.Path(name)), nil
	}
}

// Lstat describes the entry name itself (a link is not followed).
func (d *Dir) Lstat(name string) (fs.FileInfo, error) {
	f, err := d.openAt("lstat", name, unix.O_PATH, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// Open opens the entry name for reading without following a link (a link
// is ELOOP), without blocking on a FIFO and without taking a terminal, and
// describes what was opened.
func (d *Dir) Open(name string) (*os.File, fs.FileInfo, error) {
	f, err := d.openAt("open", name, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// CreateTemp creates a new file, mode 0600, exclusively (O_EXCL, never
// through a link) under a name made of pattern with its last "*" replaced
// by a random string, and opens it for reading and writing. Its Name is
// its path; TempName gives the entry name.
func (d *Dir) CreateTemp(pattern string) (*os.File, error) {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for range 100 {
		name := prefix + rand.Text() + suffix
		f, err := d.openAt("create", name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, d.pathError("create", pattern, fs.ErrExist)
}

// Rename renames the entry from to to, both in d, atomically.
func (d *Dir) Rename(from, to string) error {
	if err := d.plainName("rename", from); err != nil {
		return err
	}
	if err := d.plainName("rename", to); err != nil {
		return err
	}
	if err := unix.Renameat(d.fd(), from, d.fd(), to); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Path(from), New: d.Path(to), Err: err}
	}
	return nil
}

// Remove removes the entry name, a file or link (never what a link points
// to); a directory is not removed.
func (d *Dir) Remove(name string) error {
	return d.at("remove", name, func(fd int) error { return unix.Unlinkat(fd, name, 0) })
}

// Symlink creates the symbolic link name pointing at target.
func (d *Dir) Symlink(target, name string) error {
	return d.at("symlink", name, func(fd int) error { return unix.Symlinkat(target, fd, name) })
}

// at calls f on d for the plain name; its error is a *fs.PathError.
func (d *Dir) at(op, name string, f func(fd int) error) error {
	if err := d.plainName(op, name); err != nil {
		return err
	}
	if err := f(d.fd()); err != nil {
		return d.pathError(op, name, err)
	}
	return nil
}

// Readlink returns the target of the symbolic link name.
func (d *Dir) Readlink(name string) (string, error) {
	if err := d.plainName("readlink", name); err != nil {
		return "", err
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(d.fd(), name, buf)
		if err != nil {
			return "", d.pathError("readlink", name, err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

func (d *Dir) Names() ([]string, error) {
	if _, err := d.f.Seek(0, 0); err != nil {
		return nil, err
	}
	return d.f.Readdirnames(-1)
}
