// Package hostfile is the one rule for files on the node that commands
// running as root act on (install, uninstall, doctor, the agent): who may
// change a path, and reading a file without blocking on a FIFO, following a
// terminal or reading without end.
//
// A path is trusted when it and every directory on the way to it, through
// symbolic links too, are owned by root (or by this process's user, so
// that the tools also run unprivileged) and not writable by group or
// others, except a directory with the sticky bit (/tmp), where others may
// add entries but not replace ours. Anything else can be swapped by another
// local user between a check and a use. A Dir (OpenDir) then acts on the
// entries of a trusted directory by name, never by path.
//
// Stdlib and golang.org/x/sys/unix only.
package hostfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// maxLinks bounds the symbolic links followed, as the kernel's ELOOP does.
const maxLinks = 40

// UntrustedError says which path another user can change, and why. Fix
// never changes the owner or mode of a path that is a symbolic link or is
// not owned by root: run as printed it cannot be turned against the node.
type UntrustedError struct {
	Path   string
	Reason string // e.g. "it is owned by uid 1000"
	Fix    string
}

func (e *UntrustedError) Error() string {
	return fmt.Sprintf("%s can be changed by another user: %s", e.Path, e.Reason)
}

// Untrusted checks one file or directory (its Lstat) for CheckPath's rule:
// nil, or an *UntrustedError.
func Untrusted(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &UntrustedError{Path: path, Reason: "its owner is unknown", Fix: "give a path on a local file system"}
	}
	mode := fi.Mode()
	if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("it is owned by uid %d, not root", st.Uid),
			Fix: fmt.Sprintf("move it out of the way (mv -T %s %s.untrusted) and run the command again, or give a path that only root can change", path, path)}
	}
	if mode&fs.ModeSymlink != 0 {
		return nil // its target is checked; a link's own mode means nothing
	}
	if mode.Perm()&0o022 != 0 && (!mode.IsDir() || mode&fs.ModeSticky == 0) {
		what := "group or others"
		if mode.Perm()&0o002 == 0 {
			what = "its group"
		}
		perm := uint32(mode.Perm())
		if mode&fs.ModeSticky != 0 {
			perm |= 0o1000
		}
		return &UntrustedError{Path: path, Reason: fmt.Sprintf("it is writable by %s (mode %04o)", what, perm),
			Fix: "chmod go-w " + path}
	}
	return nil
}

// ModeFix is the fix that gives path mode (and root as its owner), safe to
// run as printed: a chmod only of a root-owned path that is not a
// symbolic link; anything else is moved aside and made anew, never changed
// through whatever it points to.
func ModeFix(path string, mode fs.FileMode) string {
	fi, err := os.Lstat(path)
	switch {
	case err != nil:
		return fmt.Sprintf("create %s as root with mode %04o", path, uint32(mode))
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Sprintf("replace the symbolic link %s with a file of its own, owned by root, mode %04o (a chmod would change what it points to)", path, uint32(mode))
	case fi.Sys().(*syscall.Stat_t).Uid != 0:
		return fmt.Sprintf("move it out of the way (mv -T %s %s.untrusted) and create it anew as root, mode %04o", path, path, uint32(mode))
	}
	return fmt.Sprintf("run 'chmod %04o %s'", uint32(mode), path)
}

// CheckPath checks path (absolute), every directory above it, and through
// symbolic links what they point to, stopping silently at the first
// component that does not exist (what install will create). It returns an
// *UntrustedError for the first one another user can change, or the error
// that kept it from looking.
func CheckPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%s is a relative path", path)
	}
	links, cur := 0, "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return err
	}
	if err := Untrusted(cur, fi); err != nil {
		return err
	}
	rest := strings.Split(path, "/")
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur has no symbolic links in it
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := Untrusted(next, fi); err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return fmt.Errorf("%s: more than %d symbolic links", path, maxLinks)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return nil
}

// ErrNotRegular and ErrTooLarge are Read's refusals, wrapped with the path.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("larger than expected")
)

// Read reads the regular file path, at most max bytes: a FIFO, device or
// directory is refused without blocking (ErrNotRegular), a longer file too
// (ErrTooLarge). A failed open is the *fs.PathError of os.OpenFile.
func Read(path string, max int64) ([]byte, fs.FileInfo, error) {
	// O_NONBLOCK: opening a FIFO for reading would wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, fmt.Errorf("%s is %w (%s)", path, ErrNotRegular, kind(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fi, err
	}
	if int64(len(data)) > max {
		return nil, fi, fmt.Errorf("%s is %w: over %d bytes", path, ErrTooLarge, max)
	}
	return data, fi, nil
}

// ReadTrusted is Read of a path CheckPath accepts, whose opened file is
// itself trusted: for files root acts on because another program's
// settings named them (the kubelet's flags).
func ReadTrusted(path string, max int64) ([]byte, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	data, fi, err := Read(path, max)
	if err != nil {
		return nil, err
	}
	if err := Untrusted(path, fi); err != nil {
		return nil, err
	}
	return data, nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return m.Type().String()
}

// Process is a process found in a proc file system.
type Process struct {
	PID  int
	Argv []string
	// Untrusted says why the process may be another user's, "" if it
	// runs as root from an executable only root can change.
	Untrusted string
}

// Processes returns the processes under procDir (a proc file system; "-"
// for none) whose argv[0]'s base name is one of names, in PID order. A name
// proves nothing (any user can start a "kubelet"), so each says whether it
// is trusted: real and effective uid 0, and an executable that Untrusted
// accepts.
func Processes(procDir string, names ...string) []Process {
	if procDir == "-" {
		return nil
	}
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		dir := filepath.Join(procDir, e.Name())
		b, _, err := Read(filepath.Join(dir, "cmdline"), 1<<20)
		if err != nil || len(b) == 0 {
			continue
		}
		argv := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if !slices.Contains(names, filepath.Base(argv[0])) {
			continue
		}
		out = append(out, Process{PID: pid, Argv: argv, Untrusted: untrustedProcess(dir)})
	}
	slices.SortFunc(out, func(a, b Process) int { return a.PID - b.PID })
	return out
}

// untrustedProcess says why the process at dir may be another user's.
func untrustedProcess(dir string) string {
	status, _, err := Read(filepath.Join(dir, "status"), 1<<16)
	if err != nil {
		return "its status cannot be read"
	}
	var f []string // the last Uid line's: real, effective, saved, fs
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f = strings.Fields(v)
		}
	}
	if len(f) < 2 {
		return "its status has no uid"
	}
	if f[0] != "0" || f[1] != "0" {
		return "it runs as uid " + f[1] + ", not root"
	}
	exe := filepath.Join(dir, "exe")
	fi, err := os.Stat(exe) // follows the kernel's link to the running file
	if err != nil {
		return "its executable cannot be inspected"
	}
	if err := Untrusted(exe, fi); err != nil {
		return "its executable can be changed by another user: " + err.(*UntrustedError).Reason
	}
	return ""
}
