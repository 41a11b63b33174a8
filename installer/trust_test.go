package installer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// attackerUID is the other local user.
const attackerUID = 4242

// needRoot skips what needs another user: giving files away, running as
// uid 4242.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("another user's files and processes need root")
	}
}

// tree is every entry under root: path → type, mode, owner, content hash.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		desc := fmt.Sprintf("%v uid %d", fi.Mode(), st.Uid)
		switch {
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			desc += " -> " + target
		}
		out[p] = desc
		return nil
	})
	return out
}

func assertTree(t *testing.T, root string, before map[string]string) {
	t.Helper()
	after := tree(t, root)
	for p, d := range before {
		if after[p] != d {
			t.Errorf("%s changed: %q, was %q", p, after[p], d)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s is new", p)
		}
	}
}

// chownTo gives path to another user (root only).
func chownTo(t *testing.T, path string) {
	t.Helper()
	needRoot(t)
	if err := os.Lchown(path, attackerUID, attackerUID); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Install writes nowhere another user can change a file, --force or not:
// one line naming the path, why, and the fix; nothing written or changed.
func TestInstallRefusesWhatOthersCanChange(t *testing.T) {
	tests := []struct {
		name      string
		installed bool                                 // install first
		setup     func(t *testing.T, f fixture) string // returns the path refused
		want      []string
	}{
		{name: "bin dir writable by others", setup: func(t *testing.T, f fixture) string { chmod(t, f.bin, 0o777); return f.bin },
			want: []string{"--bin-dir", "writable by group or others (mode 0777)", "chmod go-w "}},
		{name: "bin dir writable by its group", setup: func(t *testing.T, f fixture) string { chmod(t, f.bin, 0o775); return f.bin },
			want: []string{"writable by its group (mode 0775)"}},
		{name: "config dir writable by others", setup: func(t *testing.T, f fixture) string { chmod(t, f.cfgDir, 0o777); return f.cfgDir },
			want: []string{"the directory of --config", "chmod go-w "}},
		{name: "a directory above the bin dir writable by others", setup: func(t *testing.T, f fixture) string {
			chmod(t, filepath.Dir(f.bin), 0o777)
			return filepath.Dir(f.bin)
		}, want: []string{"--bin-dir", "chmod go-w "}},
		{name: "the binary writable by others, its content right", installed: true, setup: func(t *testing.T, f fixture) string {
			chmod(t, f.binPath(), 0o757)
			return f.binPath()
		}, want: []string{"mode 0757", "chmod go-w "}},
		{name: "the config writable by its group, its content right", installed: true, setup: func(t *testing.T, f fixture) string {
			chmod(t, f.cfg, 0o664)
			return f.cfg
		}, want: []string{"mode 0664"}},
		{name: "the binary another user's, its content right", installed: true, setup: func(t *testing.T, f fixture) string {
			chownTo(t, f.binPath())
			chmod(t, f.binPath(), 0o644)
			return f.binPath()
		}, want: []string{"owned by uid 4242", "mv -T "}},
		{name: "the config another user's, its content right", installed: true, setup: func(t *testing.T, f fixture) string {
			chownTo(t, f.cfg)
			return f.cfg
		}, want: []string{"owned by uid 4242", "mv -T "}},
		{name: "a link in place of the binary, another user's", setup: func(t *testing.T, f fixture) string {
			os.Symlink(f.src, f.binPath())
			chownTo(t, f.binPath())
			return f.binPath()
		}, want: []string{"owned by uid 4242"}},
		{name: "bin dir another user's", setup: func(t *testing.T, f fixture) string { chownTo(t, f.bin); return f.bin },
			want: []string{"--bin-dir", "owned by uid 4242", "mv -T "}},
		{name: "config dir another user's", setup: func(t *testing.T, f fixture) string { chownTo(t, f.cfgDir); return f.cfgDir },
			want: []string{"owned by uid 4242"}},
	}
	for _, tc := range tests {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, force %v", tc.name, force), func(t *testing.T) {
				f := newFixture(t)
				if tc.installed {
					if _, err := Install(context.Background(), f.opts()); err != nil {
						t.Fatal(err)
					}
				}
				refused := tc.setup(t, f)
				root := filepath.Dir(f.bin)
				before := tree(t, root)
				o := f.opts()
				o.Force = force
				_, err := Install(context.Background(), o)
				if err == nil {
					t.Fatal("no error")
				}
				msg := err.Error()
				for _, w := range append(tc.want, refused+" ", "is not safe to write as root", "--force does not override this") {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q does not say %q", msg, w)
					}
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("more than one line: %q", msg)
				}
				if err := Check(o); err == nil || err.Error() != msg {
					t.Errorf("Check: %v", err)
				}
				assertTree(t, root, before)
			})
		}
	}
}

// Uninstall removes as root: the same rule, --force or not. A config
// another user can change would name any file as install's key file.
func TestUninstallRefusesWhatOthersCanChange(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f fixture, o *RemoveOptions) string
		want  string
	}{
		{name: "another user's config naming a file of root's as the key file", setup: func(t *testing.T, f fixture, o *RemoveOptions) string {
			victim := filepath.Join(filepath.Dir(f.bin), "shadow")
			os.WriteFile(victim, []byte("root's\n"), 0o600)
			os.WriteFile(f.cfg, []byte(Marker+"\n"+apiKeyComment+victim+"\napiVersion: kubelet.config.k8s.io/v1\n"), 0o644)
			chownTo(t, f.cfg)
			return f.cfg
		}, want: "owned by uid 4242"},
		{name: "config dir writable by others", setup: func(t *testing.T, f fixture, o *RemoveOptions) string { chmod(t, f.cfgDir, 0o777); return f.cfgDir },
			want: "chmod go-w"},
		{name: "the key file's directory writable by others", setup: func(t *testing.T, f fixture, o *RemoveOptions) string {
			dir := filepath.Join(filepath.Dir(f.bin), "keys")
			os.Mkdir(dir, 0o777)
			chmod(t, dir, 0o777)
			os.WriteFile(filepath.Join(dir, "apikey"), []byte(testKey+"\n"), 0o600)
			p := Provider{APIKeyFileWritten: filepath.Join(dir, "apikey")}
			b, _ := Config(p)
			os.WriteFile(f.cfg, b, 0o644)
			return dir
		}, want: "chmod go-w"},
		{name: "bin dir writable by others", setup: func(t *testing.T, f fixture, o *RemoveOptions) string { chmod(t, f.bin, 0o777); return f.bin },
			want: "chmod go-w"},
		{name: "the binary another user's", setup: func(t *testing.T, f fixture, o *RemoveOptions) string { chownTo(t, f.binPath()); return f.binPath() },
			want: "owned by uid 4242"},
		{name: "the credential helper directory writable by others", setup: func(t *testing.T, f fixture, o *RemoveOptions) string {
			dir := filepath.Join(filepath.Dir(f.bin), "helper")
			os.Mkdir(dir, 0o777)
			chmod(t, dir, 0o777)
			os.Symlink(f.binPath(), filepath.Join(dir, "docker-credential-icr"))
			o.HelperDir, o.HelperTargets = dir, []string{f.binPath()}
			return dir
		}, want: "chmod go-w"},
	}
	for _, tc := range tests {
		for _, force := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, force %v", tc.name, force), func(t *testing.T) {
				f := newFixture(t)
				if _, err := Install(context.Background(), f.opts()); err != nil {
					t.Fatal(err)
				}
				o := RemoveOptions{BinDir: f.bin, ConfigPath: f.cfg, Executable: f.src, Host: Host{Root: "/"}, Force: force}
				refused := tc.setup(t, f, &o)
				root := filepath.Dir(f.bin)
				before := tree(t, root)
				_, err := PlanRemove(o)
				if err == nil || !strings.Contains(err.Error(), refused+" ") || !strings.Contains(err.Error(), tc.want) ||
					!strings.Contains(err.Error(), "--force does not override this") {
					t.Fatalf("err = %v, want the refusal of %s", err, refused)
				}
				assertTree(t, root, before)
			})
		}
	}
}

// The API key file's directory and an existing key file follow the rule.
func TestAPIKeyToMustBeTrusted(t *testing.T) {
	src := secretVolume(t, testKey+"\n")
	dir := filepath.Join(t.TempDir(), "keys")
	os.Mkdir(dir, 0o777)
	chmod(t, dir, 0o777)
	_, err := CheckAPIKey(src, filepath.Join(dir, "apikey"))
	if err == nil || !strings.Contains(err.Error(), "the directory of the API key file "+dir+" is not safe to write as root") {
		t.Fatalf("err = %v", err)
	}
	if _, err := WriteAPIKey(testKey, filepath.Join(dir, "apikey")); err == nil || !strings.Contains(err.Error(), "chmod go-w "+dir) {
		t.Fatalf("write: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("written: %v", ents)
	}
}

// The kubelet wiring's state file says what uninstall writes back where;
// it and the host file wired follow the rule, install and uninstall.
func TestWiringFilesMustBeTrusted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(h fakeHost) string
	}{
		{"state dir writable by others", func(h fakeHost) string {
			h.mkdir("/var/lib/icr-credential-provider")
			chmod(h.t, h.path("/var/lib/icr-credential-provider"), 0o777)
			return h.path("/var/lib/icr-credential-provider")
		}},
		{"state file writable by others", func(h fakeHost) string {
			h.write(StatePath, "{}\n")
			chmod(h.t, h.path(StatePath), 0o666)
			return h.path(StatePath)
		}},
		{"host file writable by others", func(h fakeHost) string {
			chmod(h.t, h.path("/etc/default/kubelet"), 0o646)
			return h.path("/etc/default/kubelet")
		}},
		{"host file's directory writable by its group", func(h fakeHost) string {
			chmod(h.t, h.path("/etc/default"), 0o775)
			return h.path("/etc/default")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := setupLayout(t, 0)
			k := newFakeKubelet(t, always(true))
			sd := &fakeSystemd{}
			w := h.wiring(LayoutAuto, sd, k)
			if tc.name == "host file's directory writable by its group" || tc.name == "host file writable by others" {
				// Uninstall too: wire first, then loosen.
				if _, err := install(t, w); err != nil {
					t.Fatal(err)
				}
			}
			refused := tc.setup(h)
			before := h.snapshot()
			for what, err := range map[string]error{"install": func() error { _, err := PlanInstall(w); return err }(),
				"uninstall": func() error { _, err := PlanUninstall(w); return err }()} {
				if tc.name == "state dir writable by others" && what == "uninstall" && err == nil {
					continue // no state yet: nothing to read or write
				}
				if err == nil || !strings.Contains(err.Error(), refused+" ") || !strings.Contains(err.Error(), "is not safe to write as root") {
					t.Errorf("%s: err = %v, want the refusal of %s", what, err, refused)
				}
			}
			h.assertSnapshot(before)
		})
	}
}

// A set-group-ID bin dir (trusted: its group cannot write it) does not
// give its group to the binary: the new file gets this process's owner
// through its descriptor.
func TestInstallOwnsWhatItWrites(t *testing.T) {
	needRoot(t)
	f := newFixture(t)
	if err := os.Chown(f.bin, 0, attackerUID); err != nil {
		t.Fatal(err)
	}
	chmod(t, f.bin, 0o755|os.ModeSetgid)
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f.binPath())
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != uint32(os.Getegid()) || fi.Mode().Perm() != 0o755 {
		t.Errorf("binary uid %d gid %d mode %v, want root's, 0755", st.Uid, st.Gid, fi.Mode().Perm())
	}
}
