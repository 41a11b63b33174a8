package installer

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
)

func TestPlanRemove(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, f fixture) // after an install
		force   bool
		wantErr string
		gone    []string // relative to the fixture: "bin", "cfg", "key"
		kept    []string
	}{
		{name: "ours", gone: []string{"bin", "cfg", "key"}},
		{name: "a foreign config", setup: func(t *testing.T, f fixture) {
			os.WriteFile(f.cfg, []byte("kind: CredentialProviderConfig\n"), 0o644)
		}, wantErr: "was not written by icr-credential-provider install", kept: []string{"bin", "cfg", "key"}},
		{name: "a foreign config, forced", force: true, setup: func(t *testing.T, f fixture) {
			os.WriteFile(f.cfg, []byte("kind: CredentialProviderConfig\n"), 0o644)
		}, gone: []string{"bin", "cfg"}, kept: []string{"key"}},
		{name: "another binary", setup: func(t *testing.T, f fixture) {
			os.WriteFile(f.binPath(), []byte("#!/bin/sh\necho other\n"), 0o755)
		}, wantErr: "is not a build of icr-credential-provider", kept: []string{"bin", "cfg", "key"}},
		{name: "a link in place of the binary", setup: func(t *testing.T, f fixture) {
			os.Remove(f.binPath())
			os.Symlink(f.src, f.binPath())
		}, wantErr: "is not a regular file", kept: []string{"bin", "cfg"}},
		{name: "a link in place of the binary, forced", force: true, setup: func(t *testing.T, f fixture) {
			os.Remove(f.binPath())
			os.Symlink(f.src, f.binPath())
		}, gone: []string{"bin", "cfg", "key"}},
		{name: "a directory in place of the config", force: true, setup: func(t *testing.T, f fixture) {
			os.Remove(f.cfg)
			os.Mkdir(f.cfg, 0o755)
		}, wantErr: "is a directory", kept: []string{"bin"}},
		{name: "nothing there", setup: func(t *testing.T, f fixture) {
			os.Remove(f.cfg)
			os.Remove(f.binPath())
			os.Remove(filepath.Join(f.cfgDir, "apikey"))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			key := filepath.Join(f.cfgDir, "apikey")
			o := f.opts()
			o.Provider.Env = nil
			o.Provider.APIKeyFileWritten = key // the host root is "/" here
			if _, err := Install(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(key, []byte(testKey+"\n"), 0o600)
			if tc.setup != nil {
				tc.setup(t, f)
			}
			paths := map[string]string{"bin": f.binPath(), "cfg": f.cfg, "key": key}
			r, err := PlanRemove(RemoveOptions{BinDir: f.bin, ConfigPath: f.cfg, Executable: f.src, Host: Host{Root: "/"}, Force: tc.force})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := r.Apply(); err != nil {
					t.Fatal(err)
				}
			}
			for _, g := range tc.gone {
				if _, err := os.Lstat(paths[g]); err == nil {
					t.Errorf("%s left", g)
				}
			}
			for _, k := range tc.kept {
				if _, err := os.Lstat(paths[k]); err != nil {
					t.Errorf("%s removed", k)
				}
			}
			if _, err := os.Stat(f.src); err != nil {
				t.Error("the link's target was removed")
			}
		})
	}
}

func TestStillWired(t *testing.T) {
	h := newFakeHost(t, map[string]string{"/etc/rancher/k3s/config.yaml": "image-credential-provider-config: " + testConfig + "\n"})
	w := h.wiring(LayoutAuto, &fakeSystemd{}, newFakeKubelet(t, always(true)))
	if got := StillWired(w, testConfig); len(got) != 1 || !strings.Contains(got[0], "/etc/rancher/k3s/config.yaml sets image-credential-provider-config") {
		t.Errorf("k3s: %v", got)
	}
	w.ProcDir = fakeProc(t, []string{"/usr/bin/kubelet", "--image-credential-provider-config=" + testConfig})
	if got := StillWired(w, testConfig); len(got) != 2 || !strings.Contains(got[0], "the running kubelet") {
		t.Errorf("proc: %v", got)
	}
	if got := StillWired(w, "/etc/other.yaml"); len(got) != 0 {
		t.Errorf("other config: %v", got)
	}
}

// TestPlanRemoveHelperLink: uninstall removes the credential helper link
// only when it points at the installed binary, unless --force; a directory
// in its place is never removed.
func TestPlanRemoveHelperLink(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, link, ours string) // dir/docker-credential-icr
		noDir   bool
		force   bool
		wantErr string
	}{
		{name: "ours", setup: func(t *testing.T, link, ours string) { mustDo(t, os.Symlink(ours, link)) }},
		{name: "a link elsewhere", setup: func(t *testing.T, link, _ string) { mustDo(t, os.Symlink("/usr/bin/other", link)) },
			wantErr: "points at /usr/bin/other, not at the installed binary"},
		{name: "a link elsewhere, forced", force: true,
			setup: func(t *testing.T, link, _ string) { mustDo(t, os.Symlink("/usr/bin/other", link)) }},
		{name: "a regular file", setup: func(t *testing.T, link, _ string) { mustDo(t, os.WriteFile(link, []byte("#!/bin/sh\n"), 0o755)) },
			wantErr: "is not a symbolic link, so install did not make it"},
		{name: "a regular file, forced", force: true,
			setup: func(t *testing.T, link, _ string) { mustDo(t, os.WriteFile(link, []byte("#!/bin/sh\n"), 0o755)) }},
		{name: "a directory, forced", force: true, setup: func(t *testing.T, link, _ string) { mustDo(t, os.Mkdir(link, 0o755)) },
			wantErr: "is a directory: remove it by hand"},
		{name: "no link"},
		{name: "no directory", noDir: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if _, err := Install(context.Background(), f.opts()); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "helpers")
			link := filepath.Join(dir, credhelper.LinkName)
			if !tc.noDir {
				mustDo(t, os.Mkdir(dir, 0o755))
			}
			if tc.setup != nil {
				tc.setup(t, link, f.binPath())
			}
			r, err := PlanRemove(RemoveOptions{BinDir: f.bin, ConfigPath: f.cfg, Executable: f.src, Host: Host{Root: "/"},
				HelperDir: dir, HelperTargets: []string{f.binPath()}, Force: tc.force})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Lstat(link); err != nil {
					t.Error("refused, yet the link's entry is gone:", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Apply(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(link); err == nil {
				t.Error("the link was left")
			}
			if _, err := os.Stat(f.binPath()); err == nil {
				t.Error("the binary was left")
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
