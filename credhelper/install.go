package credhelper

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// PlaceLink places the symbolic link dir/docker-credential-icr -> binPath
// atomically (made under a temporary name and renamed over the final one).
// dir must exist, and only root (or this user) may be able to change it
// (hostfile's rule). binPath is the target verbatim, and need not exist
// here (an installer in a container links for the host). A link already
// pointing at binPath is left alone and another link of that name is
// replaced; a regular file of that name (someone's copy of a helper) is an
// error unless force; a directory or another file type always is. force
// never makes it write where another user can change a file.
func PlaceLink(binPath, dir string, force bool) error {
	d, done, err := checkLink(binPath, dir, force)
	if d != nil {
		defer d.Close()
	}
	if done || err != nil {
		return err
	}
	tmp := "." + LinkName + ".tmp-" + rand.Text()
	if err := d.Symlink(binPath, tmp); err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	if err := d.Rename(tmp, LinkName); err != nil {
		_ = d.Remove(tmp)
		return fmt.Errorf("credential helper link: %w", err)
	}
	_ = d.Sync()
	return nil
}

// CheckLink returns the error PlaceLink would return before changing
// anything, a directory that cannot be written included, so that an
// installer can check it first.
func CheckLink(binPath, dir string, force bool) error {
	d, done, err := checkLink(binPath, dir, force)
	if d != nil {
		defer d.Close()
	}
	if done || err != nil {
		return err
	}
	probe := "." + LinkName + ".probe-" + rand.Text()
	if err := d.Symlink(binPath, probe); err != nil {
		return fmt.Errorf("credential helper link: cannot write to %s: %w", dir, errors.Unwrap(err))
	}
	return d.Remove(probe)
}

// checkLink opens dir (never created) and its link's entry under
// hostfile's rule and reports whether the link is in place already.
func checkLink(binPath, dir string, force bool) (d *hostfile.Dir, done bool, err error) {
	if binPath == "" {
		return nil, false, errors.New("credential helper link: the binary's path is empty")
	}
	if dir == "" {
		return nil, false, errors.New("credential helper link: the directory is empty: give the directory on the clients' PATH, e.g. /usr/local/bin")
	}
	d, err = hostfile.OpenDir(dir)
	var ue *hostfile.UntrustedError
	switch {
	case errors.As(err, &ue):
		return nil, false, untrusted(dir, ue)
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("credential helper link: directory %s does not exist: create it, or give a directory on the clients' PATH that exists (install does not create it)", dir)
	case errors.Is(err, syscall.ENOTDIR):
		return nil, false, fmt.Errorf("credential helper link: %s is not a directory: give the directory on the clients' PATH", dir)
	case err != nil:
		return nil, false, fmt.Errorf("credential helper link: %w", err)
	}
	final := d.Path(LinkName)
	fi, err := d.Lstat(LinkName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d, false, nil
	case err != nil:
		return d, false, fmt.Errorf("credential helper link: %w", err)
	case errors.As(hostfile.Untrusted(final, fi), &ue):
		return d, false, untrusted(final, ue)
	}
	switch m := fi.Mode(); {
	case m&os.ModeSymlink != 0:
		if target, err := d.Readlink(LinkName); err == nil && target == binPath {
			return d, true, nil
		}
	case m.IsDir():
		return d, false, fmt.Errorf("credential helper link: %s is a directory: remove it, or choose another directory", final)
	case m.IsRegular():
		if !force {
			return d, false, fmt.Errorf("credential helper link: %s is a regular file, not a link this installer made: remove it, or give --force to replace it", final)
		}
	default:
		return d, false, fmt.Errorf("credential helper link: %s is not a regular file or link (%v): remove it, or choose another directory", final, m.Type())
	}
	return d, false, nil
}

func untrusted(what string, ue *hostfile.UntrustedError) error {
	return fmt.Errorf("credential helper link: %s is not safe to write as root: %v: %s (--force does not override this)", what, ue, ue.Fix)
}

// CheckLinkOwned returns an error unless path (whose Lstat is fi) is a
// symbolic link, to target, and target is one of targets.
func CheckLinkOwned(path string, fi os.FileInfo, target string, targets []string) error {
	if fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("credential helper link: %s is not a symbolic link, so install did not make it: remove it by hand, or give --force", path)
	}
	if target != "" && slices.Contains(targets, target) {
		return nil
	}
	return fmt.Errorf("credential helper link: %s points at %s, not at the installed binary: remove it by hand, or give --force", path, target)
}
