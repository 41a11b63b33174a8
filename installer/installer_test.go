package installer

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// fakeExe writes a shell script that acts as the plugin's `version --short`.
func fakeExe(t *testing.T, dir, version string) string {
	t.Helper()
	p := filepath.Join(dir, "src-"+version)
	script := "#!/bin/sh\nif [ \"$1 $2\" = 'version --short' ]; then echo " + version + "; exit 0; fi\nexit 3\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type fixture struct {
	src, bin, cfgDir, cfg string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	root := t.TempDir()
	f := fixture{bin: filepath.Join(root, "bin"), cfgDir: filepath.Join(root, "etc")}
	f.cfg = filepath.Join(f.cfgDir, "credential-provider.yaml")
	for _, d := range []string{f.bin, f.cfgDir, filepath.Join(root, "src")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.src = fakeExe(t, filepath.Join(root, "src"), "v1.0.0")
	return f
}

func (f fixture) opts() Options {
	return Options{
		Executable: f.src, BinDir: f.bin, ConfigPath: f.cfg,
		Provider: Provider{Env: []kubeletv1.ExecEnvVar{{Name: "ICR_PROFILE_ID", Value: "Profile-1"}}},
	}
}

func (f fixture) binPath() string { return filepath.Join(f.bin, DefaultName) }

// assertNoTemp fails if a temporary file is left in any of dirs.
func assertNoTemp(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("temporary file left behind: %s", filepath.Join(d, e.Name()))
			}
		}
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInstallCreatesThenUnchangedThenUpdated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := Install(ctx, f.opts())
	if err != nil {
		t.Fatal(err)
	}
	if res.Binary != Created || res.Config != Created {
		t.Fatalf("first install: %+v", res)
	}
	fi, err := os.Stat(f.binPath())
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary: %v %v", fi, err)
	}
	if !bytes.Equal(mustRead(t, f.binPath()), mustRead(t, f.src)) {
		t.Fatal("installed binary differs from the source")
	}
	cfg := mustRead(t, f.cfg)
	if !WrittenByInstaller(cfg) {
		t.Fatalf("config lacks the marker:\n%s", cfg)
	}
	dec, err := DecodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := dec.Providers[0]
	if p.Name != DefaultName || p.APIVersion != ProviderAPIVersion || len(p.MatchImages) != 6 || p.Env[0].Value != "Profile-1" {
		t.Fatalf("provider %+v", p)
	}
	if fi, _ := os.Stat(f.cfg); fi.Mode().Perm() != 0o644 {
		t.Errorf("config mode %v, want 0644", fi.Mode().Perm())
	}

	binMtime := mtime(t, f.binPath())
	cfgMtime := mtime(t, f.cfg)
	time.Sleep(20 * time.Millisecond)
	res, err = Install(ctx, f.opts())
	if err != nil || res.Binary != Unchanged || res.Config != Unchanged {
		t.Fatalf("second install: %+v %v", res, err)
	}
	if !mtime(t, f.binPath()).Equal(binMtime) || !mtime(t, f.cfg).Equal(cfgMtime) {
		t.Error("an unchanged file was rewritten")
	}

	o := f.opts()
	o.Executable = fakeExe(t, filepath.Dir(f.src), "v1.1.0")
	o.Provider.Env = nil
	res, err = Install(ctx, o)
	if err != nil || res.Binary != Updated || res.Config != Updated {
		t.Fatalf("upgrade: %+v %v", res, err)
	}
	if !bytes.Equal(mustRead(t, f.binPath()), mustRead(t, o.Executable)) {
		t.Error("binary not upgraded")
	}
	assertNoTemp(t, f.bin, f.cfgDir)
}

func mtime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

func TestInstallRestoresExecutableMode(t *testing.T) {
	f := newFixture(t)
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.binPath(), 0o644)
	res, err := Install(context.Background(), f.opts())
	if err != nil || res.Binary != Updated {
		t.Fatalf("%+v %v", res, err)
	}
	if fi, _ := os.Stat(f.binPath()); fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
}

func TestInstallForeignConfig(t *testing.T) {
	f := newFixture(t)
	foreign := []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n")
	os.WriteFile(f.cfg, foreign, 0o600)
	_, err := Install(context.Background(), f.opts())
	if err == nil || !strings.Contains(err.Error(), "not written by icr-credential-provider install") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(mustRead(t, f.cfg), foreign) {
		t.Error("foreign config modified")
	}
	if _, err := os.Lstat(f.binPath()); !errors.Is(err, os.ErrNotExist) {
		t.Error("binary installed although the config check failed")
	}
	assertNoTemp(t, f.bin, f.cfgDir)

	o := f.opts()
	o.Force = true
	res, err := Install(context.Background(), o)
	if err != nil || res.Config != Updated {
		t.Fatalf("--force: %+v %v", res, err)
	}
	if !WrittenByInstaller(mustRead(t, f.cfg)) {
		t.Error("config not replaced with --force")
	}
}

func TestInstallOwnConfigIsReplaced(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(f.cfg, []byte(Marker+"; old\napiVersion: x\n"), 0o644)
	res, err := Install(context.Background(), f.opts())
	if err != nil || res.Config != Updated {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestInstallBadTargets(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture)
		want  []string
	}{
		{"missing bin dir", func(t *testing.T, f *fixture) { f.bin = filepath.Join(f.bin, "nope") }, []string{"does not exist", "hostPath"}},
		{"missing config dir", func(t *testing.T, f *fixture) { f.cfg = filepath.Join(f.cfgDir, "nope", "c.yaml") }, []string{"does not exist"}},
		{"bin dir is a file", func(t *testing.T, f *fixture) {
			p := filepath.Join(f.cfgDir, "file")
			os.WriteFile(p, nil, 0o644)
			f.bin = p
		}, []string{"is not a directory"}},
		{"binary is a directory", func(t *testing.T, f *fixture) { os.Mkdir(f.binPath(), 0o755) }, []string{"is a directory, not a regular file"}},
		{"config is a directory", func(t *testing.T, f *fixture) { os.Mkdir(f.cfg, 0o755) }, []string{"is a directory, not a regular file"}},
		{"binary is a symlink", func(t *testing.T, f *fixture) { os.Symlink(f.src, f.binPath()) }, []string{"symbolic link", "--force"}},
		{"config is a symlink", func(t *testing.T, f *fixture) { os.Symlink("/etc/hostname", f.cfg) }, []string{"symbolic link", "--force"}},
		{"config is a fifo", func(t *testing.T, f *fixture) {
			if err := mkfifo(f.cfg); err != nil {
				t.Skip(err)
			}
		}, []string{"not a regular file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.setup(t, &f)
			_, err := Install(context.Background(), f.opts())
			if err == nil {
				t.Fatal("no error")
			}
			var ie *Error
			if !errors.As(err, &ie) {
				t.Errorf("error %T, want *Error", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error: %q", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if fi, err := os.Lstat(f.binPath()); err == nil && fi.Mode().IsRegular() {
				t.Error("binary installed although a check failed")
			}
			assertNoTemp(t, f.bin, f.cfgDir)
		})
	}
}

func TestInstallSymlinkWithForceReplacesTheLinkOnly(t *testing.T) {
	f := newFixture(t)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("keep me"), 0o644)
	os.Symlink(victim, f.cfg)
	os.Symlink(victim, f.binPath())
	o := f.opts()
	o.Force = true
	if _, err := Install(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if string(mustRead(t, victim)) != "keep me" {
		t.Error("the symlink's target was written")
	}
	for _, p := range []string{f.cfg, f.binPath()} {
		if fi, _ := os.Lstat(p); !fi.Mode().IsRegular() {
			t.Errorf("%s is not a regular file", p)
		}
	}
}

func TestInstallVerifyFailureLeavesOldBinary(t *testing.T) {
	f := newFixture(t)
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	old := mustRead(t, f.binPath())
	oldCfg := mustRead(t, f.cfg)
	broken := filepath.Join(filepath.Dir(f.src), "broken")
	os.WriteFile(broken, []byte("#!/bin/sh\necho boom >&2\nexit 1\n"), 0o755)
	o := f.opts()
	o.Executable = broken
	o.Provider.Env = nil
	_, err := Install(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "does not run") || !strings.Contains(err.Error(), "noexec") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(mustRead(t, f.binPath()), old) || !bytes.Equal(mustRead(t, f.cfg), oldCfg) {
		t.Error("a failed install changed the installed files")
	}
	assertNoTemp(t, f.bin, f.cfgDir)
}

func TestVersionCheck(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	check := func(want, path string) error {
		t.Helper()
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return VersionCheck(want)(ctx, f)
	}
	exe := fakeExe(t, dir, "v2.0.0")
	if err := check("", exe); err != nil {
		t.Error(err)
	}
	if err := check("v2.0.0", exe); err != nil {
		t.Error(err)
	}
	if err := check("v3.0.0", exe); err == nil || !strings.Contains(err.Error(), "v3.0.0") {
		t.Errorf("version mismatch: %v", err)
	}
	silent := filepath.Join(dir, "silent")
	os.WriteFile(silent, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	if err := check("", silent); err == nil {
		t.Error("a binary that prints nothing passed")
	}
	notExe := filepath.Join(dir, "data")
	os.WriteFile(notExe, []byte("\x00\x01\x02garbage"), 0o755)
	if err := check("", notExe); err == nil {
		t.Error("garbage passed")
	}
}

func TestUnwritableDir(t *testing.T) {
	f := newFixture(t)
	dir := f.bin
	if os.Geteuid() == 0 {
		// Root ignores permission bits; sysfs refuses new files even to root.
		dir = "/sys"
	} else {
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	}
	o := f.opts()
	o.BinDir = dir
	_, err := Install(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "cannot write to "+dir) {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Lstat(f.cfg); !errors.Is(err, os.ErrNotExist) {
		t.Error("config written although the bin dir is not writable")
	}
	assertNoTemp(t, f.cfgDir)
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".icr-credential-provider.icr-install-123")
	fresh := filepath.Join(dir, ".icr-credential-provider.icr-install-456")
	other := filepath.Join(dir, ".other")
	for _, p := range []string{stale, fresh, other} {
		os.WriteFile(p, nil, 0o644)
	}
	old := time.Now().Add(-time.Hour)
	os.Chtimes(stale, old, old)
	os.Chtimes(other, old, old)
	d, err := hostfile.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	removeStale(d)
	if _, err := os.Stat(stale); err == nil {
		t.Error("stale temporary file kept")
	}
	for _, p := range []string{fresh, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed", p)
		}
	}
}

func TestConfig(t *testing.T) {
	b, err := Config(Provider{TokenAttributes: ServiceAccountTokenAttributes()})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := DecodeConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	ta := cfg.Providers[0].TokenAttributes
	if ta == nil || ta.ServiceAccountTokenAudience != "iam" || ta.CacheType != "ServiceAccount" || ta.RequireServiceAccount == nil || *ta.RequireServiceAccount ||
		len(ta.OptionalServiceAccountAnnotationKeys) != 2 {
		t.Fatalf("tokenAttributes %+v", ta)
	}
	if cfg.Providers[0].DefaultCacheDuration.Duration != DefaultCacheDuration {
		t.Error("defaultCacheDuration")
	}
	for _, env := range []string{"IBMCLOUD_API_KEY", "ICR_API_KEY"} {
		_, err := Config(Provider{Env: []kubeletv1.ExecEnvVar{{Name: env, Value: "secret-value"}}})
		if err == nil || strings.Contains(err.Error(), "secret-value") || !strings.Contains(err.Error(), "ICR_API_KEY_FILE") {
			t.Errorf("%s: %v", env, err)
		}
	}
	for _, n := range []string{"a/b", "..", ".hidden", "a b"} {
		if _, err := Config(Provider{Name: n}); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestDecodeConfigIsStrict(t *testing.T) {
	b, _ := Config(Provider{})
	bad := bytes.Replace(b, []byte("  matchImages:"), []byte("  matchImagez: [x]\n  matchImages:"), 1)
	if _, err := DecodeConfig(bad); err == nil || !strings.Contains(err.Error(), "a field the kubelet does not know") {
		t.Errorf("unknown field accepted: %v", err)
	}
	dup := bytes.Replace(b, []byte("kind: CredentialProviderConfig"), []byte("kind: CredentialProviderConfig\nkind: CredentialProviderConfig"), 1)
	if _, err := DecodeConfig(dup); err == nil {
		t.Error("duplicate field accepted")
	}
}

func TestWrittenByInstaller(t *testing.T) {
	for in, want := range map[string]bool{
		Marker + "\nx: 1\n":        true,
		Marker + "; more\n":        true,
		"x: 1\n" + Marker + "\n":   false,
		"# Written by someone\n":   false,
		"":                         false,
		"  " + Marker + "   \nx\n": true,
	} {
		if got := WrittenByInstaller([]byte(in)); got != want {
			t.Errorf("%q: %v", in, got)
		}
	}
}

func TestSettings(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     []string // NAME=VALUE pairs checked in the result
		wantErr string
	}{
		{name: "nothing", args: nil},
		{name: "profile id", args: []string{"--profile-id", "Profile-1"}, env: []string{"ICR_PROFILE_ID=Profile-1"}},
		{name: "api key file", args: []string{"--api-key-file", "/etc/icr/apikey", "--private-endpoints"}, env: []string{"ICR_PRIVATE_ENDPOINTS=true", "ICR_API_KEY_FILE=/etc/icr/apikey"}},
		{name: "registries", args: []string{"--registries", "a.example.com,b.example.com:5000"}, env: []string{"ICR_REGISTRIES=a.example.com,b.example.com:5000"}},
		{name: "two profiles", args: []string{"--profile-id", "a", "--profile-crn", "b"}, wantErr: "more than one of"},
		{name: "key and profile", args: []string{"--api-key-file", "/k", "--profile-name", "p"}, wantErr: "an API key is in use"},
		{name: "key and explicit vpc: the key is ignored, as the plugin does", args: []string{"--api-key-file", "/k", "--token-source", "vpc-metadata"}, env: []string{"ICR_API_KEY_FILE=/k", "ICR_TOKEN_SOURCE=vpc-metadata"}},
		{name: "api-key without file", args: []string{"--token-source", "api-key"}, wantErr: "no API key is configured"},
		{name: "bad source", args: []string{"--token-source", "magic"}, wantErr: "not one of"},
		{name: "relative key", args: []string{"--api-key-file", "apikey"}, wantErr: "is not a path to a file"},
		{name: "relative cache", args: []string{"--cache-dir", "cache"}, wantErr: "relative"},
		{name: "empty is unset", args: []string{"--profile-id", "", "--iam-url", ""}},
		{name: "cache none", args: []string{"--cache-dir", "none"}, env: []string{"ICR_CACHE_DIR=none"}},
		{name: "bad url", args: []string{"--iam-url", "iam.example.com"}, wantErr: "not a base URL"},
		{name: "url with user info", args: []string{"--iam-url", "https://u:p@iam.example.com"}, wantErr: "not a base URL"},
		{name: "url with query", args: []string{"--metadata-url", "http://169.254.169.254/?x=1"}, wantErr: "not a base URL"},
		{name: "plain http to a remote IAM", args: []string{"--iam-url", "http://iam.example.com"}, wantErr: "plain http"},
		{name: "plain http to a remote IAM, allowed", args: []string{"--iam-url", "http://iam.example.com", "--allow-insecure-iam"}, env: []string{"ICR_IAM_URL=http://iam.example.com", "ICR_ALLOW_INSECURE_IAM=true"}},
		{name: "metadata version", args: []string{"--metadata-version", "2025-08-26"}, env: []string{"ICR_METADATA_VERSION=2025-08-26"}},
		{name: "unknown metadata version", args: []string{"--metadata-version", "2020-01-01"}, wantErr: "--metadata-version"},
		{name: "bad registry", args: []string{"--registries", "*.example.com"}, wantErr: "--registries"},
		{name: "registries over two lines", args: []string{"--registries", "a.example.com\nb.example.com"}, wantErr: "--registries \"a.example.com\\nb.example.com\" has a line break"},
		{name: "a control character", args: []string{"--profile-id", "Profile-1\x1b]0;x\a"}, wantErr: "has a control, invisible or non-UTF-8 character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var cfg config.Config
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			cfg.AddFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			env, extra, err := Settings(fs, &cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, e := range env {
				got[e.Name] = e.Value
			}
			if len(got) != len(tc.env) {
				t.Errorf("env %v, want %v", got, tc.env)
			}
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if tc.name == "registries" && strings.Join(extra, ",") != "a.example.com,b.example.com:5000" {
				t.Errorf("extra matchImages %v", extra)
			}
		})
	}
}

func TestSettingsFromEnvironment(t *testing.T) {
	var cfg config.Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	cfg.AddFlags(fs)
	fs.Parse(nil)
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"ICR_PROFILE_NAME": "node-pull", "IBMCLOUD_API_KEY": "must-not-appear"}[k]
		return v, ok
	}
	if err := config.ApplyEnv(fs, lookup); err != nil {
		t.Fatal(err)
	}
	env, _, err := Settings(fs, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != 1 || env[0].Name != "ICR_PROFILE_NAME" || env[0].Value != "node-pull" {
		t.Fatalf("env %+v", env)
	}
}

func TestRelativePathsRefused(t *testing.T) {
	for _, tc := range []struct{ name, bin, cfg, want string }{
		{"bin dir", "bin", "/etc/icr/config.yaml", "--bin-dir bin is a relative path"},
		{"config", "/opt/bin", "etc/config.yaml", "--config etc/config.yaml is a relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.opts()
			o.BinDir, o.ConfigPath = tc.bin, tc.cfg
			_, err := Install(context.Background(), o)
			var ie *Error
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "absolute") {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

// Root is not told to run as root: it is told what can deny root.
func TestWriteErrorAsRoot(t *testing.T) {
	denied := &fs.PathError{Op: "open", Path: "/opt/bin/x", Err: syscall.EACCES}
	old := geteuid
	t.Cleanup(func() { geteuid = old })

	geteuid = func() int { return 0 }
	msg := writeError("/opt/bin", denied).Error()
	if strings.Contains(msg, "run the installer as root") || !strings.Contains(msg, "although running as root") || !strings.Contains(msg, "CAP_DAC_OVERRIDE") {
		t.Errorf("as root: %s", msg)
	}
	geteuid = func() int { return 1000 }
	if msg := writeError("/opt/bin", denied).Error(); !strings.Contains(msg, "run the installer as root") {
		t.Errorf("as a user: %s", msg)
	}
	if msg := writeError("/opt/bin", &fs.PathError{Err: syscall.EROFS}).Error(); !strings.Contains(msg, "read-only file system") {
		t.Errorf("EROFS: %s", msg)
	}
}

// writeScript writes an executable shell script readable by everyone.
func writeScript(t *testing.T, path, script string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// Uninstall removes a file only if it is still the one it checked: one
// swapped in between (another config, another binary) stays.
func TestUninstallRemovesOnlyWhatItChecked(t *testing.T) {
	f := newFixture(t)
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	r, err := PlanRemove(RemoveOptions{BinDir: f.bin, ConfigPath: f.cfg, Executable: f.src, Host: Host{Root: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	foreign := []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n")
	tmp := f.cfg + ".new"
	os.WriteFile(tmp, foreign, 0o644)
	os.Rename(tmp, f.cfg)
	_, err = r.Apply()
	if err == nil || !strings.Contains(err.Error(), "replaced since uninstall checked it") {
		t.Fatalf("err = %v", err)
	}
	if !bytes.Equal(mustRead(t, f.cfg), foreign) {
		t.Error("a config swapped in after the check was removed")
	}
	if _, err := os.Lstat(f.binPath()); err != nil {
		t.Error("the binary was removed although uninstall stopped at the config")
	}
}

// SIGTERM during the version check: reported as an interruption, not as
// a binary that does not run; nothing changed, no temporary file left.
func TestInstallInterruptedDuringVersionCheck(t *testing.T) {
	f := newFixture(t)
	if _, err := Install(context.Background(), f.opts()); err != nil {
		t.Fatal(err)
	}
	oldBin, oldCfg := mustRead(t, f.binPath()), mustRead(t, f.cfg)
	slow := writeScript(t, filepath.Join(filepath.Dir(f.src), "slow"), "#!/bin/sh\nexec sleep 30\n")
	o := f.opts()
	o.Executable = slow
	o.Provider.Env = nil
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(300*time.Millisecond, func() { cancel(errors.New("SIGTERM")) })
	start := time.Now()
	res, err := Install(ctx, o)
	if err == nil || strings.Contains(err.Error(), "noexec") || strings.Contains(err.Error(), "does not run") ||
		!strings.Contains(err.Error(), "interrupted") || !strings.Contains(err.Error(), "SIGTERM") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("install took %v to stop", time.Since(start))
	}
	if res.Binary != "" || res.Config != "" {
		t.Errorf("result %+v, want nothing done", res)
	}
	if !bytes.Equal(mustRead(t, f.binPath()), oldBin) || !bytes.Equal(mustRead(t, f.cfg), oldCfg) {
		t.Error("an interrupted install changed the files")
	}
	assertNoTemp(t, f.bin, f.cfgDir)
}
