package credhelper

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// InstallLink places the symbolic link dir/docker-credential-icr -> binPath
// atomically: the link is created under a temporary name in dir and renamed
// over the final name, so a client running at that moment sees either the
// old entry or the new link, never none. dir is created (0755) if missing.
//
// binPath is written as the link's target verbatim: absolute, or relative to
// dir. It is not required to exist where InstallLink runs (an installer in a
// container writes links for the host's file system). An existing link
// already pointing at binPath is left alone; an existing file or link of
// that name is replaced; a directory of that name is an error.
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
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	tmp := filepath.Join(dir, "."+LinkName+".tmp-"+hex.EncodeToString(rnd[:]))
	if err := os.Symlink(binPath, tmp); err != nil {
		return fmt.Errorf("credential helper link: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("credential helper link: %w", err)
	}
	return nil
}
