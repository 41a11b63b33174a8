package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

func parse(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	var c Config
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	return &c, err
}

func TestEnvName(t *testing.T) {
	for flag, want := range map[string]string{"iam-url": "ICR_IAM_URL", "private-endpoints": "ICR_PRIVATE_ENDPOINTS", "api-key-file": "ICR_API_KEY_FILE", "v": "ICR_V"} {
		if got := EnvName(flag); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", flag, got, want)
		}
	}
}

func TestApplyEnv(t *testing.T) {
	c, err := parse(t, []string{"--iam-url", "https://flag.example"}, map[string]string{
		"ICR_IAM_URL":           "https://env.example",
		"ICR_PROFILE_ID":        "Profile-env",
		"ICR_PRIVATE_ENDPOINTS": "1",
		"ICR_REGISTRIES":        "a.example.com,b.example.com:5000",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.IAMURL != "https://flag.example" {
		t.Errorf("flag did not win over env: %s", c.IAMURL)
	}
	if c.ProfileID != "Profile-env" || !c.PrivateEndpoints || len(c.Registries) != 2 {
		t.Errorf("env not applied: %+v", c)
	}
	if _, err := parse(t, nil, map[string]string{"ICR_PRIVATE_ENDPOINTS": "sometimes"}); err == nil || !strings.Contains(err.Error(), "ICR_PRIVATE_ENDPOINTS") {
		t.Errorf("bad bool: err = %v", err)
	}
}

func TestEffectiveIAMURLAndCacheDir(t *testing.T) {
	tests := []struct {
		c    Config
		want string
	}{
		{Config{}, iam.DefaultIAMURL},
		{Config{PrivateEndpoints: true}, iam.PrivateIAMURL},
		{Config{PrivateEndpoints: true, IAMURL: "https://x.example/"}, "https://x.example"},
	}
	for _, tt := range tests {
		if got := tt.c.EffectiveIAMURL(); got != tt.want {
			t.Errorf("%+v: got %s, want %s", tt.c, got, tt.want)
		}
	}
	for dir, want := range map[string]string{"none": "", "NONE": "", "": "", "/run/x": "/run/x"} {
		if got := (&Config{CacheDir: dir}).DiskCacheDir(); got != want {
			t.Errorf("DiskCacheDir(%q) = %q, want %q", dir, got, want)
		}
	}
}

func TestNodeSourceSelection(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	os.WriteFile(keyFile, []byte("file-key-0123456789"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("loose-key-0123456789"), 0o644)
	tests := []struct {
		name     string
		cfg      Config
		env      map[string]string
		wantKind string
		wantErr  string
		warn     bool
	}{
		{"auto, nothing configured: metadata", Config{}, nil, SourceVPCMetadata, "", false},
		{"auto, key file: api key", Config{APIKeyFile: keyFile}, nil, SourceAPIKey, "", false},
		{"auto, env key: api key", Config{}, map[string]string{APIKeyEnv: "env-key-0123456789"}, SourceAPIKey, "", false},
		{"auto, file wins over env", Config{APIKeyFile: keyFile}, map[string]string{APIKeyEnv: "env-key"}, SourceAPIKey, "", false},
		{"explicit metadata ignores key", Config{TokenSource: SourceVPCMetadata, APIKeyFile: keyFile}, nil, SourceVPCMetadata, "", false},
		{"explicit api-key without key", Config{TokenSource: SourceAPIKey}, nil, "", "no API key is configured", false},
		{"profile with api key", Config{APIKeyFile: keyFile, ProfileID: "p"}, nil, "", "--token-source vpc-metadata", false},
		{"two profiles", Config{ProfileID: "a", ProfileCRN: "b"}, nil, "", "more than one", false},
		{"unknown source", Config{TokenSource: "magic"}, nil, "", "not one of", false},
		{"world-readable key warns", Config{APIKeyFile: loose}, nil, SourceAPIKey, "", true},
		{"bad iam url", Config{IAMURL: "ICR_EMULATOR_URL=http://127.0.0.1:1"}, nil, "", "--iam-url", false},
		{"bad metadata url", Config{MetadataURL: "169.254.169.254"}, nil, "", "--metadata-url", false},
		{"metadata url with query", Config{MetadataURL: "http://127.0.0.1:1/?version=1"}, nil, "", "--metadata-url", false},
		{"missing key file", Config{APIKeyFile: filepath.Join(dir, "nope")}, nil, "", "does not exist", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			sel, err := tt.cfg.NodeSource(getenv, iam.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sel.Kind != tt.wantKind || sel.Why == "" {
				t.Errorf("kind %s (%s), want %s", sel.Kind, sel.Why, tt.wantKind)
			}
			if (len(sel.Warnings) > 0) != tt.warn {
				t.Errorf("warnings %v", sel.Warnings)
			}
			for _, s := range sel.Secrets {
				if strings.Contains(sel.Why, s) || strings.Contains(sel.Source.Describe(), s) || strings.Contains(sel.Source.CacheKey(), s) {
					t.Error("a secret appears in the selection's description or cache key")
				}
			}
		})
	}
}
