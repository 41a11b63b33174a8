package config

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// cacheSubdir is the helper's token cache under a user's runtime or cache
// directory.
const cacheSubdir = "icr-credential-provider"

// HelperCacheDir is the token cache directory of credential-helper mode
// without --cache-dir or ICR_CACHE_DIR (users' tools rarely run as root, and
// cannot create DefaultCacheDir), and why, for logs. For root it is
// DefaultCacheDir, shared with kubelet mode. $XDG_RUNTIME_DIR (tmpfs, per
// user) counts only if owned by euid: after `sudo -u` it may name another
// user's. "" (no $HOME) turns the disk cache off.
func HelperCacheDir(euid int, getenv func(string) string) (dir, why string) {
	if euid == 0 {
		return DefaultCacheDir, "running as root"
	}
	if rt := getenv("XDG_RUNTIME_DIR"); rt != "" && ownedDir(rt, euid) {
		return filepath.Join(rt, cacheSubdir), "$XDG_RUNTIME_DIR"
	}
	if base, ok := userCacheDir(getenv); ok {
		return filepath.Join(base, cacheSubdir), "the user's cache directory"
	}
	return "", "neither $XDG_RUNTIME_DIR nor a user cache directory ($XDG_CACHE_HOME, $HOME) is usable"
}

// ownedDir reports whether path is an absolute, existing directory (not a
// symbolic link) owned by euid.
func ownedDir(path string, euid int) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == euid
}

// userCacheDir is os.UserCacheDir, with getenv's environment on Unix
// systems other than macOS.
func userCacheDir(getenv func(string) string) (string, bool) {
	switch runtime.GOOS {
	case "darwin", "ios", "windows", "plan9":
		d, err := os.UserCacheDir()
		return d, err == nil && d != ""
	}
	if d := getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return d, true
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".cache"), true
	}
	return "", false
}
