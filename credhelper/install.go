package credhelper

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// InstallLink places the symbolic link dir/docker-credential-icr -> binPath
// atomically (made under a temporary name and renamed over the final one),
// creating dir (0755) if missing. binPath is the target verbatim, and need
// not exist here (an installer in a container links for the host). A link
// already pointing at binPath is left alone and another link of that name is
// replaced; a regular file of that name (someone's copy of a helper) is an
// error, as are a directory and another file type.
func InstallLink(binPath, dir string) error { return PlaceLink(binPath, dir, false) }

// PlaceLink is InstallLink that, with force, also replaces a regular file.
func PlaceLink(binPath, dir string, force bool) error {
	if done, err := checkLink(binPath, dir, force); done || err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("credential helper link: create %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, "."+LinkName+".tmp-"+rand.Text())
	if err := os.Symlink(binPath, tmp); err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, LinkName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("credential helper link: %w", err)
	}
	return nil
}

// CheckLink returns the error PlaceLink would return before changing
// anything, so that an installer can check it first.
func CheckLink(binPath, dir string, force bool) error {
	_, err := checkLink(binPath, dir, force)
	return err
}

// checkLink also reports whether the link is in place already.
func checkLink(binPath, dir string, force bool) (done bool, err error) {
	if binPath == "" {
		return false, errors.New("credential helper link: the binary's path is empty")
	}
	if dir == "" {
		return false, errors.New("credential helper link: the directory is empty: give the directory on the clients' PATH, e.g. /usr/local/bin")
	}
	final := filepath.Join(dir, LinkName)
	if target, err := os.Readlink(final); err == nil && target == binPath {
		return true, nil
	}
	fi, err := os.Lstat(final)
	if err != nil {
		return false, nil
	}
	switch m := fi.Mode(); {
	case m&os.ModeSymlink != 0:
	case m.IsDir():
		return false, fmt.Errorf("credential helper link: %s is a directory: remove it, or choose another directory", final)
	case m.IsRegular():
		if !force {
			return false, fmt.Errorf("credential helper link: %s is a regular file, not a link this installer made: remove it, or give --force to replace it", final)
		}
	default:
		return false, fmt.Errorf("credential helper link: %s is not a regular file or link (%v): remove it, or choose another directory", final, m.Type())
	}
	return false, nil
}

// RemoveLink removes dir/docker-credential-icr if it is a symbolic link to
// one of targets, and reports whether it did. A missing link is not an
// error; any other file of that name is, unless force.
func RemoveLink(dir string, targets []string, force bool) (bool, error) {
	final := filepath.Join(dir, LinkName)
	fi, err := os.Lstat(final)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("credential helper link: %w", err)
	}
	if err := CheckLinkOwned(final, fi, targets); err != nil && !force {
		return false, err
	}
	if fi.IsDir() {
		return false, fmt.Errorf("credential helper link: %s is a directory: remove it by hand", final)
	}
	if err := os.Remove(final); err != nil {
		return false, fmt.Errorf("credential helper link: %w", err)
	}
	return true, nil
}

// CheckLinkOwned returns an error unless path (whose Lstat is fi) is a
// symbolic link to one of targets.
func CheckLinkOwned(path string, fi os.FileInfo, targets []string) error {
	if fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("credential helper link: %s is not a symbolic link, so install did not make it: remove it by hand, or give --force", path)
	}
	target, err := os.Readlink(path)
	if err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	for _, t := range targets {
		if t != "" && target == t {
			return nil
		}
	}
	return fmt.Errorf("credential helper link: %s points at %s, not at the installed binary: remove it by hand, or give --force", path, target)
}
