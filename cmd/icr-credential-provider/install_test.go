package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

type installDirs struct{ bin, etc, cfg string }

func newInstallDirs(t *testing.T) installDirs {
	t.Helper()
	root := t.TempDir()
	d := installDirs{bin: filepath.Join(root, "bin"), etc: filepath.Join(root, "etc")}
	d.cfg = filepath.Join(d.etc, "credential-provider.yaml")
	for _, p := range []string{d.bin, d.etc} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func (d installDirs) args(extra ...string) []string {
	return append([]string{"install", "--bin-dir", d.bin, "--config", d.cfg}, extra...)
}

// assertClean fails if any hidden (temporary) file is left in the dirs.
func (d installDirs) assertClean(t *testing.T) {
	t.Helper()
	for _, dir := range []string{d.bin, d.etc} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left behind: %s", filepath.Join(dir, e.Name()))
			}
		}
	}
}

func TestInstallCommand(t *testing.T) {
	d := newInstallDirs(t)
	const secret = "not-to-be-written-0123456789"
	r := runPlugin(t, invocation{Process: true,
		Args: d.args("--service-account-tokens"),
		Env:  []string{"ICR_PROFILE_ID=Profile-42", "IBMCLOUD_API_KEY=" + secret},
	})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "binary "+filepath.Join(d.bin, "icr-credential-provider")+": created") || !strings.Contains(r.Stdout, ": created\n") {
		t.Errorf("stdout:\n%s", r.Stdout)
	}
	out, err := exec.Command(filepath.Join(d.bin, "icr-credential-provider"), "version", "--short").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("installed binary: %v %q", err, out)
	}
	content, err := os.ReadFile(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(content), secret) {
		t.Fatal("the API key from the environment was written into the config")
	}
	cfg, err := installer.DecodeConfig(content)
	if err != nil {
		t.Fatalf("%v\n%s", err, content)
	}
	p := cfg.Providers[0]
	if len(p.Env) != 1 || p.Env[0].Name != "ICR_PROFILE_ID" || p.Env[0].Value != "Profile-42" {
		t.Errorf("env %+v", p.Env)
	}
	if p.TokenAttributes == nil || p.TokenAttributes.ServiceAccountTokenAudience != "iam" {
		t.Errorf("tokenAttributes %+v", p.TokenAttributes)
	}

	// Again: nothing changes.
	r = runPlugin(t, invocation{Process: true, Args: d.args("--service-account-tokens"), Env: []string{"ICR_PROFILE_ID=Profile-42"}})
	if r.Code != 0 || strings.Count(r.Stdout, ": unchanged") != 2 {
		t.Fatalf("second install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// A flag wins over the environment and changes the config.
	r = runPlugin(t, invocation{Process: true, Args: d.args("--profile-id", "Profile-7"), Env: []string{"ICR_PROFILE_ID=Profile-42"}})
	if r.Code != 0 || !strings.Contains(r.Stdout, "binary "+filepath.Join(d.bin, "icr-credential-provider")+": unchanged") || !strings.Contains(r.Stdout, ": updated") {
		t.Fatalf("third install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if b, _ := os.ReadFile(d.cfg); !strings.Contains(string(b), "Profile-7") {
		t.Errorf("config not updated:\n%s", b)
	}
	d.assertClean(t)
}

func TestInstallCommandFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(d *installDirs) []string
		want  []string
	}{
		{"no bin dir flag", func(d *installDirs) []string { return []string{"install", "--config", d.cfg} }, []string{"--bin-dir is required"}},
		{"missing bin dir", func(d *installDirs) []string {
			return []string{"install", "--bin-dir", filepath.Join(d.bin, "missing"), "--config", d.cfg}
		}, []string{"does not exist"}},
		{"conflicting profiles", func(d *installDirs) []string { return d.args("--profile-id", "a", "--profile-name", "b") }, []string{"more than one of"}},
		{"key file and profile", func(d *installDirs) []string { return d.args("--api-key-file", "/etc/key", "--profile-id", "a") }, []string{"an API key is in use"}},
		{"foreign config", func(d *installDirs) []string {
			os.WriteFile(d.cfg, []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n"), 0o644)
			return d.args()
		}, []string{"not written by icr-credential-provider install", "--force"}},
		{"config is a directory", func(d *installDirs) []string { os.Mkdir(d.cfg, 0o755); return d.args() }, []string{"is a directory"}},
		{"unknown flag", func(d *installDirs) []string { return d.args("--bogus") }, []string{"bogus"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newInstallDirs(t)
			r := runPlugin(t, invocation{Process: true, Args: tc.setup(&d)})
			assertFailure(t, r, tc.want...)
			if _, err := os.Lstat(filepath.Join(d.bin, "icr-credential-provider")); err == nil {
				t.Error("binary installed although install failed")
			}
			d.assertClean(t)
		})
	}
}

func TestInstallCredentialHelperLink(t *testing.T) {
	d := newInstallDirs(t)
	helperDir := t.TempDir()
	r := runPlugin(t, invocation{Process: true, Args: d.args("--credential-helper", helperDir)})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	link := filepath.Join(helperDir, "docker-credential-icr")
	target, err := os.Readlink(link)
	if err != nil || target != filepath.Join(d.bin, "icr-credential-provider") {
		t.Fatalf("link %s -> %q, %v", link, target, err)
	}
	// The link works: argv[0] makes it the credential helper.
	out, err := exec.Command(link, "list").Output()
	if err != nil || !strings.Contains(string(out), `"us.icr.io":"iambearer"`) {
		t.Fatalf("docker-credential-icr list: %v %s", err, out)
	}
	// As seen from the host when the installer runs in a container.
	r = runPlugin(t, invocation{Process: true, Args: d.args("--credential-helper", helperDir, "--credential-helper-target", "/opt/icr-credential-provider/bin/icr-credential-provider")})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	if target, _ := os.Readlink(link); target != "/opt/icr-credential-provider/bin/icr-credential-provider" {
		t.Errorf("link -> %q", target)
	}
}

// Problems a new operator ran into: each once reported success.
func TestInstallOperatorMistakes(t *testing.T) {
	t.Run("relative bin dir", func(t *testing.T) {
		d := newInstallDirs(t)
		helperDir := t.TempDir()
		r := runPlugin(t, invocation{Process: true, Args: []string{"install", "--bin-dir", "bin", "--config", d.cfg, "--credential-helper", helperDir}})
		assertFailure(t, r, "--bin-dir bin is a relative path")
		if _, err := os.Lstat(filepath.Join(helperDir, "docker-credential-icr")); err == nil {
			t.Error("a link was made although the bin dir is relative")
		}
	})
	t.Run("relative config", func(t *testing.T) {
		d := newInstallDirs(t)
		r := runPlugin(t, invocation{Process: true, Args: []string{"install", "--bin-dir", d.bin, "--config", "config.yaml"}})
		assertFailure(t, r, "--config config.yaml is a relative path")
	})
	t.Run("relative link target", func(t *testing.T) {
		d := newInstallDirs(t)
		r := runPlugin(t, invocation{Process: true, Args: d.args("--credential-helper", t.TempDir(), "--credential-helper-target", "bin/icr-credential-provider")})
		assertFailure(t, r, "--credential-helper-target bin/icr-credential-provider is a relative path")
	})
	t.Run("regular file in place of the link", func(t *testing.T) {
		d := newInstallDirs(t)
		helperDir := t.TempDir()
		link := filepath.Join(helperDir, "docker-credential-icr")
		os.WriteFile(link, []byte("#!/bin/sh\necho someone else's helper\n"), 0o755)
		r := runPlugin(t, invocation{Process: true, Args: d.args("--credential-helper", helperDir)})
		assertFailure(t, r, "is a regular file", "--force")
		if fi, err := os.Lstat(link); err != nil || !fi.Mode().IsRegular() {
			t.Fatal("the regular file was replaced without --force")
		}
		r = runPlugin(t, invocation{Process: true, Args: d.args("--credential-helper", helperDir, "--force")})
		if r.Code != 0 {
			t.Fatalf("with --force: %s", r.Stderr)
		}
		if target, _ := os.Readlink(link); target != filepath.Join(d.bin, "icr-credential-provider") {
			t.Errorf("link -> %q", target)
		}
	})
}

// The logging flags given to install reach the plugin through the config's
// args, from flags or ICR_* variables, and the plugin accepts them.
func TestInstallLoggingFlags(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		env      []string
		wantArgs []string
	}{
		{name: "none", wantArgs: nil},
		{name: "flags", args: []string{"--v=4", "--logging-format", "json"}, wantArgs: []string{"--v=4", "--logging-format=json"}},
		{name: "environment", env: []string{"ICR_V=2", "ICR_LOGGING_FORMAT=json"}, wantArgs: []string{"--v=2", "--logging-format=json"}},
		{name: "vmodule", args: []string{"--vmodule=provider=5"}, wantArgs: []string{"--vmodule=provider=5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newInstallDirs(t)
			r := runPlugin(t, invocation{Process: true, Args: d.args(tc.args...), Env: tc.env})
			if r.Code != 0 {
				t.Fatalf("exit %d: %s", r.Code, r.Stderr)
			}
			cfg, err := installer.DecodeConfig(mustReadFile(t, d.cfg))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Providers[0].Args
			if strings.Join(got, " ") != strings.Join(tc.wantArgs, " ") {
				t.Fatalf("args %q, want %q", got, tc.wantArgs)
			}
			// The plugin runs with them as the kubelet would.
			pr := runPlugin(t, invocation{Process: true, Args: got, Stdin: requestJSON("v1", "example.com/app")})
			if pr.Code != 0 {
				t.Fatalf("the plugin refuses args %q: %s", got, pr.Stderr)
			}
		})
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
