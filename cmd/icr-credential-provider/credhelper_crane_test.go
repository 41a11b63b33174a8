package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// craneVersion is the go-containerregistry release whose crane the test
// installs from the Go module proxy (never added to go.mod). crane reads
// credHelpers through github.com/docker/cli's config and runs helpers
// through github.com/docker/docker-credential-helpers/client, the same code
// as docker, nerdctl and buildkit; podman and skopeo use that client too.
const craneVersion = "v0.22.1"

// skipCraneEnv, set to 1, lets the test skip when crane cannot be installed
// (no module proxy). Without it an install failure fails the test: CI has
// the proxy.
const skipCraneEnv = "ICR_SKIP_CRANE"

// installCrane builds crane into a temporary GOBIN.
func installCrane(t *testing.T) string {
	t.Helper()
	gobin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/google/go-containerregistry/cmd/crane@"+craneVersion)
	// Outside this module, so that its go.mod is neither read nor changed.
	cmd.Dir = gobin
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := "go install crane@" + craneVersion + " failed (is the Go module proxy reachable?): " + err.Error() + "\n" + string(out)
		if os.Getenv(skipCraneEnv) == "1" {
			t.Skip(msg)
		}
		t.Fatal(msg + "\nset " + skipCraneEnv + "=1 to skip this test where the module proxy is unreachable")
	}
	return filepath.Join(gobin, "crane")
}

var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// scrub removes anything token-shaped from output before it is logged.
func scrub(s string) string { return jwtLike.ReplaceAllString(s, "<TOKEN>") }

// craneEnv is a user's shell with only the helper configured: HOME without
// a docker config, DOCKER_CONFIG with credHelpers, the helper on PATH.
type craneEnv struct {
	crane, home, dockerConfig, path string
}

func newCraneEnv(t *testing.T, crane string, credHelpers map[string]string) craneEnv {
	t.Helper()
	c := craneEnv{crane: crane, home: t.TempDir(), dockerConfig: t.TempDir(), path: t.TempDir()}
	if err := credhelper.InstallLink(pluginBin, c.path); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"credHelpers": credHelpers})
	if err := os.WriteFile(filepath.Join(c.dockerConfig, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// run runs crane with args; env is added to the user's environment.
func (c craneEnv) run(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.crane, args...)
	// PATH holds only the helper: nothing else from the developer's machine
	// (another docker-credential-*, IBMCLOUD_API_KEY, proxies) leaks in.
	cmd.Env = append([]string{"PATH=" + c.path, "HOME=" + c.home, "DOCKER_CONFIG=" + c.dockerConfig}, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("crane %v did not finish in time", args)
	}
	return out.String(), errb.String(), err
}

func TestCredentialHelperWithCrane(t *testing.T) {
	crane := installCrane(t)

	profileIAMID := "iam-" + iamtest.DefaultProfileID
	emu := iamtest.NewServer(iamtest.AllowPull(profileIAMID, "team"), iamtest.WithImage("team/app", "1.0"))
	defer emu.Close()
	host := emu.RegistryHost() // 127.0.0.1:PORT: crane speaks plain HTTP to loopback registries
	image := host + "/team/app:1.0"
	env := func(extra ...string) []string {
		return append([]string{
			"ICR_REGISTRIES=" + host,
			"ICR_IAM_URL=" + emu.IAMURL(),
			"ICR_METADATA_URL=" + emu.MetadataURL(),
			"ICR_CACHE_DIR=" + t.TempDir(),
		}, extra...)
	}
	c := newCraneEnv(t, crane, map[string]string{host: credhelper.HelperName})

	t.Run("pull with the node identity", func(t *testing.T) {
		emu.Reset()
		stdout, stderr, err := c.run(t, env("ICR_PROFILE_ID="+iamtest.DefaultProfileID), "manifest", image)
		if err != nil {
			t.Fatalf("crane manifest %s: %v\n%s", image, err, scrub(stderr))
		}
		var m struct {
			SchemaVersion int `json:"schemaVersion"`
			Config        struct {
				Digest string `json:"digest"`
			} `json:"config"`
		}
		if err := json.Unmarshal([]byte(stdout), &m); err != nil || m.SchemaVersion != 2 || m.Config.Digest == "" {
			t.Fatalf("crane printed no image manifest (%v): %s", err, scrub(stdout))
		}
		if strings.TrimSpace(stderr) != "" {
			t.Errorf("crane or the helper wrote to stderr: %s", scrub(stderr))
		}
		if emu.Grants() != 1 {
			t.Errorf("%d IAM token grants, want 1", emu.Grants())
		}
		if strings.Contains(stdout+stderr, "eyJ") {
			t.Error("a token appears in crane's output")
		}
	})

	t.Run("pull with an API key", func(t *testing.T) {
		emu2 := iamtest.NewServer(iamtest.AllowPull(iamtest.DefaultServiceIDIAMID, "team"))
		defer emu2.Close()
		c2 := newCraneEnv(t, crane, map[string]string{emu2.RegistryHost(): credhelper.HelperName})
		_, stderr, err := c2.run(t, []string{
			"ICR_REGISTRIES=" + emu2.RegistryHost(), "ICR_IAM_URL=" + emu2.IAMURL(), "ICR_METADATA_URL=" + emu2.MetadataURL(),
			"ICR_CACHE_DIR=none", "IBMCLOUD_API_KEY=" + iamtest.DefaultAPIKey,
		}, "manifest", emu2.RegistryHost()+"/"+iamtest.DefaultRepository+":"+iamtest.DefaultTag)
		if err != nil {
			t.Fatalf("crane manifest with IBMCLOUD_API_KEY: %v\n%s", err, scrub(stderr))
		}
		if strings.Contains(stderr, iamtest.DefaultAPIKey) {
			t.Error("the API key appears in crane's output")
		}
	})

	t.Run("IAM rejects the identity", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			env  []string
			want string
		}{
			{"profile not linked", []string{"ICR_PROFILE_ID=Profile-not-linked-0000"}, "trusted-profile-link-create"},
			{"unknown API key", []string{"IBMCLOUD_API_KEY=wrong-api-key-0123456789abcdefghijklmnopq"}, "BXNIM0415E"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				stdout, stderr, err := c.run(t, env(tt.env...), "manifest", image)
				if err == nil {
					t.Fatalf("crane succeeded although IAM rejects the identity: %s", scrub(stdout))
				}
				// The helper's one line reaches the user twice: its stderr
				// is passed through, and crane quotes its stdout in the
				// error ("error getting credentials - err: exit status 1,
				// out: `…`").
				if n := strings.Count(stderr, tt.want); n < 2 {
					t.Errorf("crane's output names the cause %d times, want 2 (helper stderr, crane's error):\n%s", n, scrub(stderr))
				}
				if !strings.Contains(stderr, "error getting credentials") || !strings.Contains(stderr, "out: `icr-credential-provider: ") {
					t.Errorf("crane's error does not quote the helper's message:\n%s", scrub(stderr))
				}
				if strings.Contains(stderr, "wrong-api-key-0123456789abcdefghijklmnopq") || strings.Contains(stderr, "eyJ") {
					t.Errorf("a secret appears in crane's output:\n%s", scrub(stderr))
				}
				t.Logf("crane's error:\n%s", scrub(stderr))
			})
		}
	})

	t.Run("host not served means anonymous", func(t *testing.T) {
		// credHelpers routes the registry to icr, but it is not among the
		// served hosts (no ICR_REGISTRIES): the helper answers "credentials
		// not found", which crane must take as "no credentials" (anonymous),
		// not as a helper failure; the registry then refuses the pull.
		emu.Reset()
		_, stderr, err := c.run(t, []string{"ICR_IAM_URL=" + emu.IAMURL(), "ICR_METADATA_URL=" + emu.MetadataURL(), "ICR_CACHE_DIR=none", "ICR_PROFILE_ID=" + iamtest.DefaultProfileID}, "manifest", image)
		if err == nil {
			t.Fatal("crane pulled anonymously from a registry that requires credentials")
		}
		if strings.Contains(stderr, "error getting credentials") || strings.Contains(stderr, "icr-credential-provider:") {
			t.Errorf("crane treated 'not found' as a helper failure:\n%s", scrub(stderr))
		}
		if !strings.Contains(strings.ToUpper(stderr), "UNAUTHORIZED") {
			t.Errorf("want the registry's UNAUTHORIZED (anonymous pull), got:\n%s", scrub(stderr))
		}
		if emu.Grants() != 0 {
			t.Errorf("%d IAM grants for a registry that is not served", emu.Grants())
		}
	})

	t.Run("without the helper", func(t *testing.T) {
		// Control: the same pull without credHelpers fails, so the success
		// above is the helper's doing.
		bare := newCraneEnv(t, crane, map[string]string{})
		if _, _, err := bare.run(t, env("ICR_PROFILE_ID="+iamtest.DefaultProfileID), "manifest", image); err == nil {
			t.Fatal("crane pulled without credentials: the emulator does not require them, so the test proves nothing")
		}
	})
}
