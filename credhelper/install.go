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
// already pointing at binPath is left alone; another file or link of that
// name is replaced; a directory is an error.
func InstallLink(binPath, dir string) error {
	if binPath == "" {
		return errors.New("credential helper link: the binary's path is empty")
	}
	if dir == "" {
		return errors.New("credential helper link: the directory is empty: give the directory on the clients' PATH, e.g. /usr/local/bin")
	}
	final := filepath.Join(dir, LinkName)
	if target, err := os.Readlink(final); err == nil && target == binPath {
		return nil
	}
	if fi, err := os.Lstat(final); err == nil && fi.IsDir() {
		return fmt.Errorf("credential helper link: %s is a directory: remove it, or choose another directory", final)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("credential helper link: create %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, "."+LinkName+".tmp-"+rand.Text())
	if err := os.Symlink(binPath, tmp); err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("credential helper link: %w", err)
	}
	return nil
}
