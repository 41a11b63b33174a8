package config

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// cacheSubdir is the directory the helper's token cache gets under a user's
// runtime or cache directory.
const cacheSubdir = "icr-credential-provider"

// HelperCacheDir is the token cache directory of credential-helper mode when
// neither --cache-dir nor ICR_CACHE_DIR is set. Helpers are run by users'
// tools, often not as root, where DefaultCacheDir cannot be created:
//
//   - root (euid 0) keeps DefaultCacheDir, shared with kubelet mode;
//   - otherwise $XDG_RUNTIME_DIR/icr-credential-provider (tmpfs, per user,
//     gone at logout), if $XDG_RUNTIME_DIR is an absolute path to an existing
//     directory owned by euid (after `sudo -u`, it may still name another
//     user's);
//   - otherwise icr-credential-provider under the user's cache directory
//     (os.UserCacheDir: $XDG_CACHE_HOME, else $HOME/.cache on Linux); the
//     cache creates it 0700.
//
// dir is "" when none of these can be found (no $HOME): the disk cache is
// then off and tokens are kept for one invocation only. why says which rule
// chose dir, for logs. getenv is os.Getenv in production.
func HelperCacheDir(euid int, getenv func(string) string) (dir, why string) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if euid == 0 {
		return DefaultCacheDir, "running as root"
	}
	if rt := getenv("XDG_RUNTIME_DIR"); rt != "" {
		if ownedDir(rt, euid) {
			return filepath.Join(rt, cacheSubdir), "$XDG_RUNTIME_DIR"
		}
	}
	if base, ok := userCacheDir(getenv); ok {
		return filepath.Join(base, cacheSubdir), "the user's cache directory"
	}
	return "", "neither $XDG_RUNTIME_DIR nor a user cache directory ($XDG_CACHE_HOME, $HOME) is usable"
}

// ownedDir reports whether path is absolute and an existing directory (not a
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

// userCacheDir is os.UserCacheDir with the environment taken from getenv on
// Unix systems other than macOS (the rules of os.UserCacheDir there).
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
