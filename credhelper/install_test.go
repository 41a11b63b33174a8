package credhelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInstallLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	link := filepath.Join(dir, LinkName)
	check := func(want string) {
		t.Helper()
		got, err := os.Readlink(link)
		if err != nil || got != want {
			t.Fatalf("link -> %q (%v), want %q", got, err, want)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("%d entries in %s, want only the link (no temporary left behind)", len(entries), dir)
		}
	}
	if err := InstallLink("/usr/local/bin/icr-credential-provider", dir); err != nil {
		t.Fatal(err)
	}
	check("/usr/local/bin/icr-credential-provider")
	if err := PlaceLink("/usr/local/bin/icr-credential-provider", dir, false); err != nil {
		t.Fatal(err)
	}
	check("/usr/local/bin/icr-credential-provider")
	// Replaces another link.
	if err := PlaceLink("/opt/icr/icr-credential-provider", dir, false); err != nil {
		t.Fatal(err)
	}
	check("/opt/icr/icr-credential-provider")

	os.Remove(link)
	os.Mkdir(link, 0o755)
	if err := PlaceLink("/x", dir, true); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("over a directory: %v", err)
	}
	if err := PlaceLink("", dir, false); err == nil {
		t.Error("empty binary path accepted")
	}
	if err := InstallLink("/x", ""); err == nil {
		t.Error("empty directory accepted")
	}
}

// A regular file of the link's name is someone's copy of a helper: it is
// replaced only with force.
func TestInstallLinkRegularFileNeedsForce(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, LinkName)
	os.WriteFile(link, []byte("someone's helper"), 0o755)
	err := InstallLink("/opt/icr/icr-credential-provider", dir)
	if err == nil || !strings.Contains(err.Error(), "regular file") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(link); string(b) != "someone's helper" {
		t.Fatal("the regular file was replaced without force")
	}
	if err := PlaceLink("/opt/icr/icr-credential-provider", dir, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(link); got != "/opt/icr/icr-credential-provider" {
		t.Errorf("with force: link -> %q", got)
	}
}

func TestRemoveLink(t *testing.T) {
	const ours = "/opt/icr/icr-credential-provider"
	tests := []struct {
		name        string
		setup       func(link string)
		force       bool
		wantRemoved bool
		wantErr     string
	}{
		{name: "missing", setup: func(string) {}},
		{name: "ours", setup: func(l string) { os.Symlink(ours, l) }, wantRemoved: true},
		{name: "a link elsewhere", setup: func(l string) { os.Symlink("/usr/bin/other", l) }, wantErr: "points at /usr/bin/other"},
		{name: "a link elsewhere, forced", setup: func(l string) { os.Symlink("/usr/bin/other", l) }, force: true, wantRemoved: true},
		{name: "a regular file", setup: func(l string) { os.WriteFile(l, []byte("x"), 0o755) }, wantErr: "not a symbolic link"},
		{name: "a directory, forced", setup: func(l string) { os.Mkdir(l, 0o755) }, force: true, wantErr: "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			link := filepath.Join(dir, LinkName)
			tc.setup(link)
			removed, err := RemoveLink(dir, []string{ours}, tc.force)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Lstat(link); err != nil {
					t.Error("removed although refused")
				}
				return
			}
			if err != nil || removed != tc.wantRemoved {
				t.Fatalf("removed %v, err %v", removed, err)
			}
			if _, err := os.Lstat(link); err == nil {
				t.Error("still there")
			}
		})
	}
}
