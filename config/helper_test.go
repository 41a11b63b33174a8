package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHelperCacheDir(t *testing.T) {
	// A non-root user owning the runtime directory (as root: chown it).
	euid := os.Geteuid()
	runtimeDir := t.TempDir()
	if euid == 0 {
		euid = 65534
		if err := os.Chown(runtimeDir, euid, -1); err != nil {
			t.Fatal(err)
		}
	}
	other := euid + 1
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	tests := []struct {
		name string
		euid int
		env  map[string]string
		want string
	}{
		{"root", 0, map[string]string{"XDG_RUNTIME_DIR": runtimeDir, "HOME": "/root"}, DefaultCacheDir},
		{"runtime dir", euid, map[string]string{"XDG_RUNTIME_DIR": runtimeDir, "HOME": "/home/u"}, filepath.Join(runtimeDir, "icr-credential-provider")},
		{"runtime dir of another user", other, map[string]string{"XDG_RUNTIME_DIR": runtimeDir, "HOME": "/home/u"}, "/home/u/.cache/icr-credential-provider"},
		{"runtime dir missing", euid, map[string]string{"XDG_RUNTIME_DIR": filepath.Join(runtimeDir, "gone"), "HOME": "/home/u"}, "/home/u/.cache/icr-credential-provider"},
		{"runtime dir relative", euid, map[string]string{"XDG_RUNTIME_DIR": "run", "HOME": "/home/u"}, "/home/u/.cache/icr-credential-provider"},
		{"XDG_CACHE_HOME", euid, map[string]string{"XDG_CACHE_HOME": "/c", "HOME": "/home/u"}, "/c/icr-credential-provider"},
		{"relative XDG_CACHE_HOME", euid, map[string]string{"XDG_CACHE_HOME": "c", "HOME": "/home/u"}, "/home/u/.cache/icr-credential-provider"},
		{"nothing", euid, map[string]string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, why := HelperCacheDir(tt.euid, env(tt.env))
			if dir != tt.want || why == "" {
				t.Errorf("HelperCacheDir = %q (%s), want %q", dir, why, tt.want)
			}
		})
	}
}
