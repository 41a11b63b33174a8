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

// InstallLink places the symbolic link dir/docker-credential-icr -> binPath
// atomically (made under a temporary name and renamed over the final one).
// dir must exist, and only root (or this user) may be able to change it
// (hostfile's rule). binPath is the target verbatim, and need not exist
// here (an installer in a container links for the host). A link already
// pointing at binPath is left alone and another link of that name is
// replaced; a regular file of that name (someone's copy of a helper) is an
// error, as are a directory and another file type.
func InstallLink(binPath, dir string) error { return PlaceLink(binPath, dir, false) }

// PlaceLink is InstallLink that, with force, also replaces a regular file.
// force never makes it write where another user can change a file.
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
	if d == nil {
		return err
	}
	defer d.Close()
	if done || err != nil {
		return err
	}
	probe := "." + LinkName + ".probe-" + rand.Text()
	if err := d.Symlink(binPath, probe); err != nil {
		return fmt.Errorf("credential helper link: cannot write to %s: %w", dir, errors.Unwrap(err))
	}
	return d.Remove(probe)
}

// checkLink opens dir and reports whether the link is in place already.
func checkLink(binPath, dir string, force bool) (d *hostfile.Dir, done bool, err error) {
	if binPath == "" {
		return nil, false, errors.New("credential helper link: the binary's path is empty")
	}
	if dir == "" {
		return nil, false, errors.New("credential helper link: the directory is empty: give the directory on the clients' PATH, e.g. /usr/local/bin")
	}
	d, fi, err := linkEntry(dir, false)
	if err != nil || fi == nil {
		return d, false, err
	}
	final := d.Path(LinkName)
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

// linkEntry opens the link's directory (never created; missing is no error
// if missingOK) under hostfile's rule and describes the link's entry (nil:
// none), which must obey the rule too.
func linkEntry(dir string, missingOK bool) (*hostfile.Dir, fs.FileInfo, error) {
	d, err := hostfile.OpenDir(dir)
	var ue *hostfile.UntrustedError
	switch {
	case missingOK && errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil
	case errors.As(err, &ue):
		return nil, nil, untrusted(dir, ue)
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("credential helper link: directory %s does not exist: create it, or give a directory on the clients' PATH that exists (install does not create it)", dir)
	case errors.Is(err, syscall.ENOTDIR):
		return nil, nil, fmt.Errorf("credential helper link: %s is not a directory: give the directory on the clients' PATH", dir)
	case err != nil:
		return nil, nil, fmt.Errorf("credential helper link: %w", err)
	}
	fi, err := d.Lstat(LinkName)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d, nil, nil
	case err != nil:
		err = fmt.Errorf("credential helper link: %w", err)
	case errors.As(hostfile.Untrusted(d.Path(LinkName), fi), &ue):
		err = untrusted(d.Path(LinkName), ue)
	}
	if err != nil {
		d.Close()
		return nil, nil, err
	}
	return d, fi, nil
}

func untrusted(what string, ue *hostfile.UntrustedError) error {
	return fmt.Errorf("credential helper link: %s is not safe to write as root: %v: %s (--force does not override this)", what, ue, ue.Fix)
}

// RemoveLink removes dir/docker-credential-icr if it is a symbolic link to
// one of targets, and reports whether it did. A missing link or directory
// is not an error; any other file of that name is, unless force; a
// directory another user can change always is.
func RemoveLink(dir string, targets []string, force bool) (bool, error) {
	d, fi, err := linkEntry(dir, true)
	if d != nil {
		defer d.Close()
	}
	if err != nil || fi == nil {
		return false, err
	}
	final := d.Path(LinkName)
	target, _ := d.Readlink(LinkName)
	if err := CheckLinkOwned(final, fi, target, targets); err != nil && !force {
		return false, err
	}
	if fi.IsDir() {
		return false, fmt.Errorf("credential helper link: %s is a directory: remove it by hand", final)
	}
	if err := d.Remove(LinkName); err != nil {
		return false, fmt.Errorf("credential helper link: %w", err)
	}
	_ = d.Sync()
	return true, nil
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
