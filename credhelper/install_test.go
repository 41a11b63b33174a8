package credhelper

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlaceLink(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	link := filepath.Join(dir, LinkName)
	// A missing directory is the operator's mistake: never created.
	if err := PlaceLink("/usr/local/bin/icr-credential-provider", dir, false); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing directory: %v", err)
	}
	if err := CheckLink("/usr/local/bin/icr-credential-provider", dir, true); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing directory, checked: %v", err)
	}
	if _, err := os.Lstat(dir); err == nil {
		t.Fatal("the missing directory was created")
	}
	os.Mkdir(dir, 0o755)
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
	if err := PlaceLink("/usr/local/bin/icr-credential-provider", dir, false); err != nil {
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
	if err := PlaceLink("/x", "", false); err == nil {
		t.Error("empty directory accepted")
	}
}

// A regular file of the link's name is someone's copy of a helper: it is
// replaced only with force.
func TestPlaceLinkRegularFileNeedsForce(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, LinkName)
	os.WriteFile(link, []byte("someone's helper"), 0o755)
	err := PlaceLink("/opt/icr/icr-credential-provider", dir, false)
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

// Uninstall (installer.PlanRemove) removes the link only when this says
// it is install's, or with --force.
func TestCheckLinkOwned(t *testing.T) {
	const ours = "/opt/icr/icr-credential-provider"
	tests := []struct {
		name    string
		setup   func(link string)
		wantErr string
	}{
		{name: "ours", setup: func(l string) { os.Symlink(ours, l) }},
		{name: "a link elsewhere", setup: func(l string) { os.Symlink("/usr/bin/other", l) }, wantErr: "points at /usr/bin/other"},
		{name: "a regular file", setup: func(l string) { os.WriteFile(l, []byte("x"), 0o755) }, wantErr: "not a symbolic link"},
		{name: "a directory", setup: func(l string) { os.Mkdir(l, 0o755) }, wantErr: "not a symbolic link"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			link := filepath.Join(t.TempDir(), LinkName)
			tc.setup(link)
			fi, err := os.Lstat(link)
			if err != nil {
				t.Fatal(err)
			}
			target, _ := os.Readlink(link)
			err = CheckLinkOwned(link, fi, target, []string{ours})
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The link's directory and an existing link follow hostfile's rule:
// nothing is written where another user can swap it, with force or not.
func TestLinkDirMustBeTrusted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bin")
	os.Mkdir(dir, 0o777)
	os.Chmod(dir, 0o777)
	for _, force := range []bool{false, true} {
		for name, err := range map[string]error{
			"check": CheckLink("/opt/icr/icr-credential-provider", dir, force),
			"place": PlaceLink("/opt/icr/icr-credential-provider", dir, force),
		} {
			if err == nil || !strings.Contains(err.Error(), "is not safe to write as root") || !strings.Contains(err.Error(), "chmod go-w "+dir) {
				t.Errorf("%s, force %v: %v", name, force, err)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("written to an untrusted directory: %v", entries)
	}

	if os.Geteuid() != 0 {
		t.Skip("a link owned by another user needs root")
	}
	sticky := filepath.Join(t.TempDir(), "sticky")
	os.Mkdir(sticky, 0o777)
	os.Chmod(sticky, 0o777|os.ModeSticky)
	link := filepath.Join(sticky, LinkName)
	os.Symlink("/home/mallory/helper", link)
	os.Lchown(link, 4242, 4242)
	err := PlaceLink("/opt/icr/icr-credential-provider", sticky, true)
	if err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
		t.Errorf("another user's link: %v", err)
	}
	if target, _ := os.Readlink(link); target != "/home/mallory/helper" {
		t.Errorf("another user's link was replaced: -> %s", target)
	}
}
