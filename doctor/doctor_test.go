package doctor

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// goodKubeletConfig routes every served host and the emulator's registry
// host (%s) to the plugin.
const goodKubeletConfig = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: icr-credential-provider
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages:
      - "icr.io"
      - "*.icr.io"
      - "private.*.icr.io"
      - "registry.bluemix.net"
      - "registry.*.bluemix.net"
      - "%s"
    defaultCacheDuration: "10m"
`

// missesICRIO is the classic mistake: *.icr.io does not match icr.io.
const missesICRIO = `apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: icr-credential-provider
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImages:
      - "*.icr.io"
      - "private.*.icr.io"
      - "registry.bluemix.net"
      - "registry.*.bluemix.net"
      - "%s"
    defaultCacheDuration: "10m"
`

// fixture is an emulator plus the files doctor looks at.
type fixture struct {
	emu        *iamtest.Server
	dir        string
	kubeletCfg string
	binDir     string
}

func newFixture(t *testing.T, kubeletTemplate string, opts ...iamtest.Option) *fixture {
	t.Helper()
	emu := iamtest.NewServer(opts...)
	t.Cleanup(emu.Close)
	f := &fixture{emu: emu, dir: t.TempDir()}
	f.kubeletCfg = filepath.Join(f.dir, "credential-provider-config.yaml")
	if err := os.WriteFile(f.kubeletCfg, []byte(strings.ReplaceAll(kubeletTemplate, "%s", emu.RegistryHost())), 0o644); err != nil {
		t.Fatal(err)
	}
	f.binDir = filepath.Join(f.dir, "bin")
	if err := os.MkdirAll(f.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.binDir, ProviderName), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// env is a doctor.Env for the fixture: node identity with the default
// profile, the emulator's image, short timeouts.
func (f *fixture) env() Env {
	return Env{
		Config: config.Config{
			IAMURL: f.emu.IAMURL(), MetadataURL: f.emu.MetadataURL(), ProfileID: iamtest.DefaultProfileID,
			TokenSource: config.SourceAuto, CacheDir: config.CacheDisabled, Registries: []string{f.emu.RegistryHost()},
		},
		Image:          f.emu.RegistryHost() + "/" + iamtest.DefaultRepository + ":" + iamtest.DefaultTag,
		KubeletConfig:  f.kubeletCfg,
		BinDir:         f.binDir,
		ProcDir:        "-",
		IAM:            iam.Options{MetadataTimeout: 500 * time.Millisecond, IAMTimeout: 2 * time.Second},
		RequestTimeout: 2 * time.Second,
	}
}

func (f *fixture) keyFile(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(f.dir, "apikey")
	if err := os.WriteFile(p, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// render returns the report in both formats.
func render(t *testing.T, rep *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// assertNoSecret fails if the API key or anything JWT-shaped is in out.
func assertNoSecret(t *testing.T, out string, secrets ...string) {
	t.Helper()
	for _, s := range append(secrets, iamtest.DefaultAPIKey, "eyJ") {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("a secret (%.6s…) appears in doctor's output", s)
		}
	}
}

func TestDiagnoses(t *testing.T) {
	otherProfile := iamtest.Profile{ID: "Profile-00000000-1111-2222-3333-444444444444", Name: "not-linked"}
	tests := []struct {
		name     string
		kubelet  string
		opts     []iamtest.Option
		setup    func(t *testing.T, f *fixture, e *Env)
		id       string
		status   Status
		phrases  []string // in summary + fix
		okReport bool
	}{
		{name: "healthy node identity", id: CheckRegistryManifest, status: StatusOK, phrases: []string{"may pull"}, okReport: true},
		{name: "healthy api key", setup: func(t *testing.T, f *fixture, e *Env) {
			e.Config.ProfileID = ""
			e.Config.APIKeyFile = f.keyFile(t, iamtest.DefaultAPIKey)
		}, id: CheckIdentityAPIKey, status: StatusOK, phrases: []string{"accepted", "fingerprint"}, okReport: true},
		{name: "api key unknown", setup: func(t *testing.T, f *fixture, e *Env) {
			e.Config.ProfileID = ""
			e.Config.APIKeyFile = f.keyFile(t, "iamtest-NotAKnownKey-000000000000000000000")
		}, id: CheckIdentityAPIKey, status: StatusFail, phrases: []string{"does not exist", "BXNIM0415E", "service-api-key-create"}},
		{name: "api key file missing", setup: func(t *testing.T, f *fixture, e *Env) {
			e.Config.ProfileID = ""
			e.Config.APIKeyFile = filepath.Join(f.dir, "nope")
		}, id: CheckAPIKey, status: StatusFail, phrases: []string{"does not exist", "create it"}},
		{name: "api key file world-readable", setup: func(t *testing.T, f *fixture, e *Env) {
			e.Config.ProfileID = ""
			e.Config.APIKeyFile = f.keyFile(t, iamtest.DefaultAPIKey)
			os.Chmod(e.Config.APIKeyFile, 0o644)
		}, id: CheckAPIKey, status: StatusWarn, phrases: []string{"readable by other users", "chmod 0600"}, okReport: true},
		{name: "IAM 5xx", opts: []iamtest.Option{iamtest.WithFault(iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultStatus, Status: 500})},
			setup: func(t *testing.T, f *fixture, e *Env) {
				e.Config.ProfileID = ""
				e.Config.APIKeyFile = f.keyFile(t, iamtest.DefaultAPIKey)
			}, id: CheckIdentityAPIKey, status: StatusFail, phrases: []string{"IAM is failing", "HTTP 500", "cloud.ibm.com/status"}},
		{name: "profile not linked", opts: []iamtest.Option{iamtest.WithTrustedProfile(otherProfile)},
			setup: func(t *testing.T, f *fixture, e *Env) { e.Config.ProfileID = otherProfile.ID },
			id:    CheckTrustedProfile, status: StatusFail, phrases: []string{"not linked to this instance", "trusted_profile_not_linked", "trusted-profile-link-create " + otherProfile.ID}},
		{name: "profile not found",
			setup: func(t *testing.T, f *fixture, e *Env) { e.Config.ProfileID = "Profile-does-not-exist" },
			id:    CheckTrustedProfile, status: StatusFail, phrases: []string{"does not exist", "trusted_profile_not_found", "ibmcloud iam trusted-profiles"}},
		{name: "metadata hang", opts: []iamtest.Option{iamtest.WithFault(iamtest.EndpointMetadataToken, iamtest.Fault{Kind: iamtest.FaultHang})},
			id: CheckMetadata, status: StatusFail, phrases: []string{"did not answer in time", "--metadata-service true"}},
		{name: "metadata refused", setup: func(t *testing.T, f *fixture, e *Env) { e.Config.MetadataURL = "http://" + closedPort(t) },
			id: CheckMetadata, status: StatusFail, phrases: []string{"connection refused", "metadata-service true"}},
		{name: "registry 403 for a trusted profile", opts: []iamtest.Option{iamtest.AllowPull("iam-ServiceId-someone-else", "team")},
			id: CheckRegistryManifest, status: StatusFail,
			phrases: []string{"HTTP 403", "no IAM policy", "ibmcloud iam trusted-profile-policy-create " + iamtest.DefaultProfileID + " --roles Reader --service-name container-registry", "--resource-type namespace --resource team"}},
		{name: "registry 403 for a service ID", opts: []iamtest.Option{iamtest.AllowPull("iam-ServiceId-someone-else", "team")},
			setup: func(t *testing.T, f *fixture, e *Env) {
				e.Config.ProfileID = ""
				e.Config.APIKeyFile = f.keyFile(t, iamtest.DefaultAPIKey)
			}, id: CheckRegistryManifest, status: StatusFail,
			phrases: []string{"ibmcloud iam service-policy-create ServiceId-", "--service-name container-registry", "--resource team"}},
		{name: "manifest 404", setup: func(t *testing.T, f *fixture, e *Env) { e.Image = f.emu.RegistryHost() + "/team/app:no-such-tag" },
			id: CheckRegistryManifest, status: StatusFail, phrases: []string{"no-such-tag not found", "MANIFEST_UNKNOWN", "ibmcloud cr images"}},
		{name: "repository 404", setup: func(t *testing.T, f *fixture, e *Env) { e.Image = f.emu.RegistryHost() + "/team/nothing" },
			id: CheckRegistryManifest, status: StatusFail, phrases: []string{"repository team/nothing not found", "NAME_UNKNOWN"}},
		{name: "image host not served", setup: func(t *testing.T, f *fixture, e *Env) { e.Image = "cp.icr.io/cp/app:1" },
			id: CheckRegistryHost, status: StatusFail, phrases: []string{"not a registry this plugin serves", "entitlement key"}},
		{name: "clock 10m skew", opts: []iamtest.Option{iamtest.WithClockSkew(10 * time.Minute)},
			id: CheckClock, status: StatusFail, phrases: []string{"behind IAM's", "NTP"}},
		{name: "clock 2m skew", opts: []iamtest.Option{iamtest.WithClockSkew(-2 * time.Minute)},
			id: CheckClock, status: StatusWarn, phrases: []string{"ahead of IAM's", "NTP"}, okReport: true},
		{name: "clock from a failing IAM's Date", opts: []iamtest.Option{iamtest.WithClockSkew(7 * time.Minute)},
			setup: func(t *testing.T, f *fixture, e *Env) {
				e.Config.ProfileID = ""
				e.Config.APIKeyFile = f.keyFile(t, "iamtest-NotAKnownKey-000000000000000000000")
			}, id: CheckClock, status: StatusFail, phrases: []string{"Date of the IAM answer"}},
		{name: "matchImages misses icr.io", kubelet: missesICRIO,
			id: CheckMatchImages, status: StatusFail, phrases: []string{"never runs the plugin for icr.io", `"icr.io", "*.icr.io"`, "label by label"}},
		{name: "kubelet config not found", setup: func(t *testing.T, f *fixture, e *Env) {
			e.KubeletConfig, e.KubeletConfigPaths = "", []string{filepath.Join(f.dir, "none.yaml")}
		}, id: CheckKubeletConfig, status: StatusWarn, phrases: []string{"no kubelet credential provider config found", "--kubelet-config"}, okReport: true},
		{name: "binary missing", setup: func(t *testing.T, f *fixture, e *Env) { e.BinDir = f.dir },
			id: CheckBinary, status: StatusFail, phrases: []string{"no executable icr-credential-provider", "install -m 0755"}},
		{name: "two profiles", setup: func(t *testing.T, f *fixture, e *Env) { e.Config.ProfileName = "x" },
			id: CheckSettings, status: StatusFail, phrases: []string{"more than one of --profile-id", "give exactly one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := tt.kubelet
			if kc == "" {
				kc = goodKubeletConfig
			}
			f := newFixture(t, kc, tt.opts...)
			e := f.env()
			if tt.setup != nil {
				tt.setup(t, f, &e)
			}
			start := time.Now()
			rep := Run(context.Background(), e)
			out := render(t, rep)
			if el := time.Since(start); el > 10*time.Second {
				t.Errorf("doctor took %v", el)
			}
			c, ok := rep.Find(tt.id)
			if !ok {
				t.Fatalf("no check %s in:\n%s", tt.id, out)
			}
			if c.Status != tt.status {
				t.Errorf("%s: status %s, want %s: %s / %s", tt.id, c.Status, tt.status, c.Summary, c.Fix)
			}
			for _, p := range tt.phrases {
				if !strings.Contains(c.Summary+" "+c.Fix, p) {
					t.Errorf("%s does not say %q:\n  summary: %s\n  fix:     %s", tt.id, p, c.Summary, c.Fix)
				}
			}
			if rep.OK != tt.okReport {
				t.Errorf("report ok %v, want %v:\n%s", rep.OK, tt.okReport, out)
			}
			// Exactly one failure explains the broken chain: later links are
			// skipped, not failed again.
			if tt.status == StatusFail {
				for _, o := range rep.Checks {
					if o.Status == StatusFail && o.ID != tt.id && !strings.HasPrefix(tt.name, "clock from") {
						t.Errorf("another check failed too: %s: %s", o.ID, o.Summary)
					}
				}
			}
			for _, o := range rep.Checks {
				if strings.Contains(o.Summary, "\n") || strings.Contains(o.Fix, "\n") {
					t.Errorf("%s: summary or fix is not one line", o.ID)
				}
				if (o.Status == StatusFail || o.Status == StatusWarn) && o.Fix == "" {
					t.Errorf("%s is %s without a fix: %s", o.ID, o.Status, o.Summary)
				}
			}
			assertNoSecret(t, out)
		})
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHealthyReportIsComplete(t *testing.T) {
	f := newFixture(t, goodKubeletConfig)
	e := f.env()
	e.Config.CacheDir = filepath.Join(f.dir, "cache")
	rep := Run(context.Background(), e)
	want := []string{CheckAPIKey, CheckSettings, CheckCacheDir, CheckMetadata, CheckTrustedProfile, CheckToken,
		CheckRegistryAuth, CheckRegistryToken, CheckRegistryManifest, CheckKubeletConfig, CheckKubeletProvider,
		CheckMatchImages, CheckBinary, CheckTokenAttributes, CheckClock}
	var got []string
	for _, c := range rep.Checks {
		got = append(got, c.ID)
		// Nothing else may warn or fail.
		if c.Status == StatusFail || c.Status == StatusWarn {
			t.Errorf("%s: %s: %s", c.ID, c.Status, c.Summary)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("checks\n got %v\nwant %v", got, want)
	}
	tok, _ := rep.Find(CheckToken)
	if tok.Details["sub_type"] != "Profile" || tok.Details["account"] != iamtest.DefaultAccountID || !strings.Contains(tok.Details["iam_id"], iamtest.DefaultProfileID) {
		t.Errorf("token details: %v", tok.Details)
	}
	if !rep.OK || rep.Schema != Schema {
		t.Errorf("ok %v schema %q", rep.OK, rep.Schema)
	}
	assertNoSecret(t, render(t, rep))
}

func TestRedactJWTs(t *testing.T) {
	s := redactJWTs("token eyJhbGciOi.eyJzdWIi.c2ln-_ here")
	if s != "token [redacted] here" {
		t.Errorf("got %q", s)
	}
}
