package installer

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// Host is the node's root file system as this process sees it: "/", or the
// mount point of a hostPath volume of "/" in a pod. Paths in kubelet flags
// and unit files are the host's; Path turns them into paths to open.
type Host struct{ Root string }

// NewHost returns the Host at root ("" is "/"), which must be absolute.
func NewHost(root string) (Host, error) {
	root = filepath.Clean(cmp.Or(root, "/"))
	if !filepath.IsAbs(root) {
		return Host{}, errorf("--host-root %s is a relative path: give the absolute path where the host's / is mounted", root)
	}
	return Host{Root: root}, nil
}

// Paths checks --bin-dir and --config (CheckPaths) and returns the Host
// at root with both as the host sees them: what the kubelet is told.
func Paths(root, binDir, configPath string) (h Host, hostBinDir, hostConfig string, err error) {
	if err = CheckPaths(binDir, configPath, ""); err != nil {
		return Host{}, "", "", err
	}
	if root != "" {
		if err = PathArg("--host-root", root); err != nil {
			return Host{}, "", "", err
		}
	}
	if h, err = NewHost(root); err != nil {
		return Host{}, "", "", err
	}
	if hostBinDir, err = h.HostPath("--bin-dir", binDir); err != nil {
		return Host{}, "", "", err
	}
	if hostConfig, err = h.HostPath("--config", configPath); err != nil {
		return Host{}, "", "", err
	}
	return h, hostBinDir, hostConfig, nil
}

// Path is the host's path p as this process sees it.
func (h Host) Path(p string) string { return filepath.Join(h.Root, p) }

// HostPath is the host's view of local, a path under Root: what the kubelet is told.
func (h Host) HostPath(flag, local string) (string, error) {
	rel, err := filepath.Rel(h.Root, filepath.Clean(local))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", errorf("%s %s is not under --host-root %s: give it as a path under the host root, e.g. %s", flag, local, h.Root, h.Path(local))
	}
	return filepath.Join("/", rel), nil
}

// Check requires Root to look like a host's root file system (an etc and
// a systemd unit directory), not a wrong mount where no host reads files.
func (h Host) Check() error {
	fi, err := os.Stat(h.Path("/etc"))
	if err != nil || !fi.IsDir() {
		return errorf("--host-root %s is not a host's root file system (no etc/): mount the host's / there (a hostPath volume of path /) or give the right --host-root", h.Root)
	}
	for _, d := range unitDirs {
		if fi, err := h.stat(d); err == nil && fi.IsDir() {
			return nil
		}
	}
	return errorf("--host-root %s has no systemd unit directory (looked in %s): the kubelet wiring needs a systemd host; mount the host's / there or give the right --host-root", h.Root, strings.Join(unitDirs, ", "))
}

const maxLinks = 40 // symbolic links followed while resolving one path

// resolve returns the local path of the host's path p with every symbolic
// link followed as the host would: an absolute target starts again at Root,
// and ".." never leaves Root.
func (h Host) resolve(p string) (string, error) {
	links := 0
	done := "/" // resolved so far, a host path without links
	rest := strings.Split(strings.Trim(filepath.Clean("/"+p), "/"), "/")
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		fi, err := os.Lstat(h.Path(next))
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			done = next // a missing component: the caller's open of the result fails
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(h.Path(next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
	}
	return h.Path(done), nil
}

// stat is os.Stat of the host's path p, links followed within Root.
func (h Host) stat(p string) (fs.FileInfo, error) {
	local, err := h.resolve(p)
	if err != nil {
		return nil, err
	}
	return os.Stat(local)
}

// exists reports whether the host's path p exists (links followed).
func (h Host) exists(p string) bool {
	_, err := h.stat(p)
	return err == nil
}

// read returns the content of the host's regular file p (links followed),
// or nil and fs.ErrNotExist.
func (h Host) read(p string) ([]byte, error) {
	local, err := h.resolve(p)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(local)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if fi.Size() > MaxConfigFile {
		return nil, fmt.Errorf("%s is larger than %d KiB", p, MaxConfigFile>>10)
	}
	return os.ReadFile(local)
}

// readDir lists the host's directory p (links followed); a missing one is empty.
func (h Host) readDir(p string) []fs.DirEntry {
	local, err := h.resolve(p)
	if err != nil {
		return nil
	}
	ents, _ := os.ReadDir(local)
	return ents
}

func hostFileError(p string, err error) error {
	return errorf("cannot read %s: %v: check the file (and that --host-root is the host's /)", p, config.Bare(err))
}

// readWritable returns the local path at which to write the host's file p,
// its directory's links followed within Root, and the content (nil: absent)
// and mode of the file there. p itself must be a regular file or missing,
// never a link (a write through it would land where it points).
func (h Host) readWritable(p string) (string, []byte, fs.FileMode, error) {
	dir := filepath.Dir(p)
	local, err := h.resolve(dir)
	if err != nil {
		return "", nil, 0, errorf("%s: %v", dir, err)
	}
	target := filepath.Join(local, filepath.Base(p))
	fi, err := os.Lstat(target)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", nil, 0, errorf("%s: %v", p, config.Bare(err))
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", nil, 0, errorf("%s on the host is a symbolic link: the installer does not write through links into host configuration; make it a regular file, or wire the kubelet by hand", p)
	case !fi.Mode().IsRegular():
		return "", nil, 0, errorf("%s on the host is not a regular file (%v): remove it or wire the kubelet by hand", p, fi.Mode().Type())
	}
	if err := CheckTrusted(target, "the kubelet's"); err != nil {
		return "", nil, 0, err
	}
	b, err := os.ReadFile(target)
	if errors.Is(err, fs.ErrNotExist) {
		return target, nil, 0, nil
	}
	if err == nil {
		fi, err = os.Stat(target)
	}
	if err != nil {
		return "", nil, 0, hostFileError(p, err)
	}
	return target, cmp0(b), fi.Mode().Perm(), nil
}
