package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// doctorFiles writes a kubelet config routing the emulator's registry host
// to the plugin and a bin dir holding the plugin.
func doctorFiles(t *testing.T, emu *iamtest.Server, matchImages ...string) (cfg, binDir string) {
	t.Helper()
	dir := t.TempDir()
	if matchImages == nil {
		matchImages = []string{"icr.io", "*.icr.io", "private.*.icr.io", "registry.bluemix.net", "registry.*.bluemix.net"}
	}
	var b strings.Builder
	b.WriteString("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: icr-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    defaultCacheDuration: \"10m\"\n    matchImages:\n")
	for _, m := range append(matchImages, emu.RegistryHost()) {
		b.WriteString("      - \"" + m + "\"\n")
	}
	cfg = filepath.Join(dir, "credential-provider-config.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	binDir = filepath.Join(dir, "bin")
	os.MkdirAll(binDir, 0o755)
	if err := os.WriteFile(filepath.Join(binDir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return cfg, binDir
}

// doctorArgs points doctor at the emulator: identity, registry, kubelet
// config. The default metadata URL is never dialed.
func doctorArgs(emu *iamtest.Server, cfg, binDir, image string) []string {
	return append(append([]string{"doctor"}, emulatorArgs(emu, "none")...),
		"--registries", emu.RegistryHost(), "--image", emu.RegistryHost()+"/"+image,
		"--kubelet-config", cfg, "--bin-dir", binDir)
}

type doctorJSON struct {
	Schema string `json:"schema"`
	OK     bool   `json:"ok"`
	Checks []struct {
		ID, Target, Status, Summary, Fix string
		Details                          map[string]string
	} `json:"checks"`
}

// assertNoSecretsAnywhere checks stdout too: doctor's report is on stdout.
func assertNoSecretsAnywhere(t *testing.T, r result, secrets ...string) {
	t.Helper()
	assertNoSecrets(t, r, append(secrets, "eyJ")...)
	for _, s := range append(secrets, "eyJ") {
		if s != "" && strings.Contains(r.Stdout, s) {
			t.Errorf("a secret appears on stdout: %q", redactFor(r.Stdout, s))
		}
	}
}

func TestDoctorBinary(t *testing.T) {
	emu := iamtest.NewServer(iamtest.AllowPull(iamtest.DefaultServiceIDIAMID, "team"))
	defer emu.Close()
	cfg, binDir := doctorFiles(t, emu)
	keyFile := filepath.Join(t.TempDir(), "apikey")
	os.WriteFile(keyFile, []byte(iamtest.DefaultAPIKey), 0o600)
	args := func(image string, extra ...string) []string {
		return append(doctorArgs(emu, cfg, binDir, image), extra...)
	}

	t.Run("healthy, json", func(t *testing.T) {
		r := runPlugin(t, invocation{Args: args("team/app:latest", "--output", "json"), Env: []string{"ICR_API_KEY_FILE=" + keyFile}, Timeout: 30 * time.Second})
		if r.Code != 0 {
			t.Fatalf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		var rep doctorJSON
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("stdout is not the JSON report: %v\n%s", err, r.Stdout)
		}
		if !rep.OK || rep.Schema != "icr-credential-provider/doctor/v1" {
			t.Errorf("ok %v schema %q", rep.OK, rep.Schema)
		}
		byID := map[string]string{}
		for _, c := range rep.Checks {
			byID[c.ID] = c.Status
			if c.ID == "config.settings" && c.Details["origin.api-key-file"] != "env ICR_API_KEY_FILE" {
				t.Errorf("config.settings does not say the key file came from the environment: %v", c.Details)
			}
		}
		for _, id := range []string{"config.api-key", "identity.api-key", "token.iam", "registry.manifest", "kubelet.binary", "clock.skew"} {
			if byID[id] != "ok" {
				t.Errorf("%s: %q, want ok", id, byID[id])
			}
		}
		if emu.Count(iamtest.EndpointMetadataToken) != 0 {
			t.Error("the metadata service was called although an API key is configured")
		}
		assertNoSecretsAnywhere(t, r, iamtest.DefaultAPIKey)
	})

	t.Run("denied pull, text", func(t *testing.T) {
		// The node identity (the default trusted profile) has no policy.
		r := runPlugin(t, invocation{Args: args("team/app:latest", "--profile-id", iamtest.DefaultProfileID), Timeout: 30 * time.Second})
		if r.Code != 1 {
			t.Fatalf("exit %d, want 1\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		for _, want := range []string{
			"[FAIL] registry.manifest",
			"fix: ibmcloud iam trusted-profile-policy-create " + iamtest.DefaultProfileID + " --roles Reader --service-name container-registry",
			"[ ok ] token.iam",
			"1 failed",
		} {
			if !strings.Contains(r.Stdout, want) {
				t.Errorf("stdout does not contain %q:\n%s", want, r.Stdout)
			}
		}
		if r.Stderr != "" {
			t.Errorf("stderr is not empty: %s", r.Stderr)
		}
		assertNoSecretsAnywhere(t, r, iamtest.DefaultAPIKey)
	})

	t.Run("unknown key from IBMCLOUD_API_KEY", func(t *testing.T) {
		bad := "iamtest-NotAKnownKey-111111111111111111111"
		r := runPlugin(t, invocation{Args: args("team/app:latest"), Env: []string{"IBMCLOUD_API_KEY=" + bad}, Timeout: 30 * time.Second})
		if r.Code != 1 || !strings.Contains(r.Stdout, "[FAIL] identity.api-key") || !strings.Contains(r.Stdout, "BXNIM0415E") {
			t.Fatalf("exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		assertNoSecretsAnywhere(t, r, bad, iamtest.DefaultAPIKey)
	})

	t.Run("usage error", func(t *testing.T) {
		r := runPlugin(t, invocation{Args: []string{"doctor", "--output", "yaml", "--metadata-url", emu.MetadataURL()}})
		assertFailure(t, r, "--output", "text or json")
	})
}
