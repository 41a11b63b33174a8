package test

// Real registry clients through the credential helper: go-containerregistry
// (crane) reads credHelpers from the docker config and runs the helper
// through github.com/docker/docker-credential-helpers' client — the same
// code as docker, nerdctl and buildkit; podman and skopeo use that client
// too. It runs here, in the test/ module, so that the root module's unit
// tests install nothing.

import (
	"encoding/json"

	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`)

// scrub removes anything token-shaped from output before it is logged.
func scrub(s string) string { return jwtLike.ReplaceAllString(s, "<TOKEN>") }

// craneEnv is a user's shell with only the helper configured: HOME without
// a docker config, DOCKER_CONFIG with credHelpers, the helper (and nothing
// else: no other docker-credential-*) on PATH, the plugin's settings in the
// environment. The helper's stderr, which clients pass through to the user,
// goes to a file.
func craneEnv(t *testing.T, credHelpers map[string]string, env ...string) {
	t.Helper()
	path, dockerConfig := t.TempDir(), t.TempDir()
	if err := credhelper.PlaceLink(filepath.Join(pluginBinDir, ProviderName), path, false); err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"credHelpers": credHelpers})
	if err := os.WriteFile(filepath.Join(dockerConfig, "config.json"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"IBMCLOUD_API_KEY", "ICR_PROFILE_ID", "ICR_REGISTRIES", "ICR_CACHE_DIR", "HTTPS_PROXY", "HTTP_PROXY"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("PATH", path)
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", dockerConfig)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// manifest fetches image's manifest as crane does, with the default
// keychain (docker config, credential helpers).
func manifest(image string) ([]byte, error) {
	return crane.Manifest(image, crane.Insecure, crane.WithAuthFromKeychain(authn.DefaultKeychain))
}

func TestCredentialHelperWithCrane(t *testing.T) {
	profileIAMID := "iam-" + iamtest.DefaultProfileID
	emu := iamtest.NewServer(iamtest.AllowPull(profileIAMID, "team"), iamtest.WithImage("team/app", "1.0"))
	defer emu.Close()
	host := emu.RegistryHost() // 127.0.0.1:PORT, plain HTTP
	image := host + "/team/app:1.0"
	env := func(extra ...string) []string {
		return append([]string{
			"ICR_REGISTRIES=" + host,
			"ICR_IAM_URL=" + emu.IAMURL(),
			"ICR_METADATA_URL=" + emu.MetadataURL(),
			"ICR_CACHE_DIR=" + t.TempDir(),
		}, extra...)
	}
	helpers := map[string]string{host: credhelper.HelperName}

	t.Run("pull with the node identity", func(t *testing.T) {
		emu.Reset()
		craneEnv(t, helpers, env("ICR_PROFILE_ID="+iamtest.DefaultProfileID)...)
		b, err := manifest(image)
		if err != nil {
			t.Fatalf("crane manifest %s: %v", image, scrub(err.Error()))
		}
		var m struct {
			SchemaVersion int `json:"schemaVersion"`
			Config        struct {
				Digest string `json:"digest"`
			} `json:"config"`
		}
		if err := json.Unmarshal(b, &m); err != nil || m.SchemaVersion != 2 || m.Config.Digest == "" {
			t.Fatalf("no image manifest (%v): %s", err, scrub(string(b)))
		}
		if emu.Grants() != 1 {
			t.Errorf("%d IAM token grants, want 1", emu.Grants())
		}
	})

	t.Run("pull with an API key", func(t *testing.T) {
		emu2 := iamtest.NewServer(iamtest.AllowPull(iamtest.DefaultServiceIDIAMID, "team"))
		defer emu2.Close()
		craneEnv(t, map[string]string{emu2.RegistryHost(): credhelper.HelperName},
			"ICR_REGISTRIES="+emu2.RegistryHost(), "ICR_IAM_URL="+emu2.IAMURL(), "ICR_METADATA_URL="+emu2.MetadataURL(),
			"ICR_CACHE_DIR=none", "IBMCLOUD_API_KEY="+iamtest.DefaultAPIKey)
		if _, err := manifest(emu2.RegistryHost() + "/" + iamtest.DefaultRepository + ":" + iamtest.DefaultTag); err != nil {
			t.Fatalf("crane manifest with IBMCLOUD_API_KEY: %v", scrub(err.Error()))
		}
	})

	t.Run("IAM rejects the identity", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			env  []string
			want string
		}{
			{"profile not linked", []string{"ICR_PROFILE_ID=Profile-not-linked-0000"}, "trusted-profile-link-create"},
			{"unknown API key", []string{"IBMCLOUD_API_KEY=wrongKey-Zq8vR3xT1mN0pL7sW2yB5cD9fG4hJ6kQ"}, "BXNIM0415E"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				craneEnv(t, helpers, env(tt.env...)...)
				_, err := manifest(image)
				if err == nil {
					t.Fatal("crane succeeded although IAM rejects the identity")
				}
				// The client quotes the helper's stdout in its error
				// ("error getting credentials - err: exit status 1, out:
				// `…`"): the helper's one line, with the cause and fix.
				msg := err.Error()
				if !strings.Contains(msg, "error getting credentials") || !strings.Contains(msg, "out: `icr-credential-provider: ") || !strings.Contains(msg, tt.want) {
					t.Errorf("crane's error does not quote the helper's message with %q:\n%s", tt.want, scrub(msg))
				}
				if strings.Contains(msg, "wrongKey-Zq8vR3xT1mN0pL7sW2yB5cD9fG4hJ6kQ") || strings.Contains(msg, "eyJ") {
					t.Errorf("a secret appears in crane's error:\n%s", scrub(msg))
				}
				t.Logf("crane's error: %s", scrub(msg))
			})
		}
	})

	t.Run("host not served means anonymous", func(t *testing.T) {
		// credHelpers routes the registry to icr, but it is not among the
		// served hosts (no ICR_REGISTRIES): the helper answers "credentials
		// not found", which the client must take as "no credentials"
		// (anonymous), not as a helper failure; the registry then refuses
		// the pull.
		emu.Reset()
		craneEnv(t, helpers, "ICR_IAM_URL="+emu.IAMURL(), "ICR_METADATA_URL="+emu.MetadataURL(), "ICR_CACHE_DIR=none", "ICR_PROFILE_ID="+iamtest.DefaultProfileID)
		_, err := manifest(image)
		if err == nil {
			t.Fatal("crane pulled anonymously from a registry that requires credentials")
		}
		if strings.Contains(err.Error(), "error getting credentials") || strings.Contains(err.Error(), "icr-credential-provider:") {
			t.Errorf("crane treated 'not found' as a helper failure:\n%s", scrub(err.Error()))
		}
		if !strings.Contains(strings.ToUpper(err.Error()), "UNAUTHORIZED") {
			t.Errorf("want the registry's UNAUTHORIZED (anonymous pull), got:\n%s", scrub(err.Error()))
		}
		if emu.Grants() != 0 {
			t.Errorf("%d IAM grants for a registry that is not served", emu.Grants())
		}
	})

	t.Run("helper not on the PATH", func(t *testing.T) {
		// The message docs/credential-helper.md quotes for a helper the
		// client cannot find: docker-credential-helpers' client, which crane,
		// docker and containers/image share, around Go's exec error.
		craneEnv(t, helpers, env("ICR_PROFILE_ID="+iamtest.DefaultProfileID)...)
		t.Setenv("PATH", t.TempDir())
		_, err := manifest(image)
		want := "error getting credentials - err: exec: \"docker-credential-icr\": executable file not found in $PATH, out: ``"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("crane's error without the helper on the PATH does not contain\n%s\ngot: %v", want, err)
		}
		doc, rerr := os.ReadFile("../docs/credential-helper.md")
		if rerr != nil {
			t.Fatal(rerr)
		}
		if !strings.Contains(string(doc), "\n  "+want+"\n") {
			t.Errorf("docs/credential-helper.md does not quote the message as clients print it:\n%s", want)
		}
	})

	t.Run("without the helper", func(t *testing.T) {
		// Control: the same pull without credHelpers fails, so the success
		// above is the helper's doing.
		craneEnv(t, map[string]string{}, env("ICR_PROFILE_ID="+iamtest.DefaultProfileID)...)
		if _, err := manifest(image); err == nil {
			t.Fatal("crane pulled without credentials: the emulator does not require them, so the test proves nothing")
		}
	})
}
