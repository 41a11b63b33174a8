package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
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

func TestNodeSelection(t *testing.T) {
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
		wantErr  string // in the cause
		wantFix  string
		warn     string
	}{
		{name: "auto, nothing configured: metadata", wantKind: SourceVPCMetadata},
		{name: "auto, key file: api key", cfg: Config{APIKeyFile: keyFile}, wantKind: SourceAPIKey},
		{name: "auto, env key: api key", env: map[string]string{APIKeyEnv: "env-key-0123456789"}, wantKind: SourceAPIKey},
		{name: "auto, file wins over env", cfg: Config{APIKeyFile: keyFile}, env: map[string]string{APIKeyEnv: "env-key"}, wantKind: SourceAPIKey},
		{name: "explicit metadata ignores key", cfg: Config{TokenSource: SourceVPCMetadata, APIKeyFile: keyFile}, wantKind: SourceVPCMetadata},
		{name: "explicit api-key without key", cfg: Config{TokenSource: SourceAPIKey}, wantErr: "no API key is configured", wantFix: "--api-key-file"},
		{name: "profile with api key", cfg: Config{APIKeyFile: keyFile, ProfileID: "p"}, wantErr: "an API key is in use", wantFix: "--token-source vpc-metadata"},
		{name: "two profiles", cfg: Config{ProfileID: "a", ProfileCRN: "b"}, wantErr: "more than one", wantFix: "exactly one"},
		{name: "unknown source", cfg: Config{TokenSource: "magic"}, wantErr: "not one of"},
		{name: "world-readable key warns", cfg: Config{APIKeyFile: loose}, wantKind: SourceAPIKey, warn: "chmod 0600"},
		{name: "bad iam url", cfg: Config{IAMURL: "ICR_EMULATOR_URL=http://127.0.0.1:1"}, wantErr: "--iam-url"},
		{name: "bad metadata url", cfg: Config{MetadataURL: "169.254.169.254"}, wantErr: "--metadata-url"},
		{name: "metadata url with query", cfg: Config{MetadataURL: "http://127.0.0.1:1/?version=1"}, wantErr: "--metadata-url"},
		{name: "iam url with user info", cfg: Config{IAMURL: "https://user:pass@iam.example"}, wantErr: "--iam-url", wantFix: "without user info"},
		{name: "iam url with fragment", cfg: Config{IAMURL: "https://iam.example/#x"}, wantErr: "--iam-url"},
		{name: "iam url with empty query", cfg: Config{IAMURL: "https://iam.example/?"}, wantErr: "--iam-url"},
		{name: "ftp iam url", cfg: Config{IAMURL: "ftp://iam.example"}, wantErr: "--iam-url"},
		{name: "iam url host 999.1.1.1", cfg: Config{IAMURL: "https://999.1.1.1"}, wantErr: "--iam-url"},
		{name: "plain http to a remote IAM", cfg: Config{IAMURL: "http://iam.example"}, wantErr: "plain http", wantFix: "--allow-insecure-iam"},
		{name: "plain http to a remote IAM, allowed", cfg: Config{IAMURL: "http://iam.example", AllowInsecureIAM: true}, wantKind: SourceVPCMetadata, warn: "clear text"},
		{name: "plain http to loopback IAM", cfg: Config{IAMURL: "http://127.0.0.1:1"}, wantKind: SourceVPCMetadata},
		{name: "plain http to the metadata service", cfg: Config{MetadataURL: "http://169.254.169.254"}, wantKind: SourceVPCMetadata},
		{name: "unknown metadata version", cfg: Config{MetadataVersion: "2024-01-01"}, wantErr: "--metadata-version", wantFix: "2025-08-26"},
		{name: "known metadata version", cfg: Config{MetadataVersion: "2025-08-26"}, wantKind: SourceVPCMetadata},
		{name: "relative key file", cfg: Config{APIKeyFile: "key"}, wantErr: "is not a path to a file", wantFix: "absolute path"},
		{name: "relative cache dir", cfg: Config{CacheDir: "cache"}, wantErr: "relative", wantFix: "absolute"},
		{name: "cache dir none", cfg: Config{CacheDir: "none"}, wantKind: SourceVPCMetadata},
		{name: "bad registry", cfg: Config{Registries: []string{"https://r.example"}}, wantErr: "--registries", wantFix: "exact hosts"},
		{name: "missing key file", cfg: Config{APIKeyFile: filepath.Join(dir, "nope")}, wantErr: "does not exist", wantFix: "service-api-key-create"},
		{name: "empty env key", env: map[string]string{APIKeyEnv: " {} "}, wantErr: "$" + APIKeyEnv, wantFix: "API key alone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			id, err := tt.cfg.Node(getenv, iam.Options{})
			if tt.wantErr != "" {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v (%T), want a *config.Error", err, err)
				}
				if !strings.Contains(ce.Cause, tt.wantErr) || !strings.Contains(ce.Fix, tt.wantFix) || ce.Fix == "" {
					t.Fatalf("cause %q fix %q, want %q and %q", ce.Cause, ce.Fix, tt.wantErr, tt.wantFix)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Kind != tt.wantKind || id.Why == "" || id.Key == "" || id.Describe == "" {
				t.Errorf("kind %s (%s), want %s", id.Kind, id.Why, tt.wantKind)
			}
			if got := strings.Join(id.Warnings, "; "); (tt.warn == "") != (got == "") || !strings.Contains(got, tt.warn) {
				t.Errorf("warnings %q, want %q", got, tt.warn)
			}
			for _, s := range []string{"file-key-0123456789", "env-key-0123456789", "loose-key-0123456789"} {
				if strings.Contains(id.Why+id.Describe+id.Key, s) {
					t.Error("a secret appears in the identity's description or cache key")
				}
			}
		})
	}
}

// TestKeyWhereItsFileBelongs: an API key typed as --api-key-file is never
// repeated, and is redacted from whatever else prints it.
func TestKeyWhereItsFileBelongs(t *testing.T) {
	const key = "Zx9-Qw_8Ty7Ui6Op5As4Df3Gh2Jk1Lz0Xc9Vb8Nm7Qe"
	err := (&Config{APIKeyFile: key}).Validate()
	if err == nil || strings.Contains(err.Error(), key[:8]) {
		t.Fatalf("err %v", err)
	}
	var ce *Error
	if !errors.As(err, &ce) || strings.Contains(ce.Fix, key[:8]) {
		t.Fatalf("err %#v", err)
	}
	if got := secret.Redact("ICR_API_KEY_FILE=" + key); strings.Contains(got, key[:8]) {
		t.Errorf("not redacted: %s", got)
	}
}

// Every setting is one line: a line break once dropped the rest of
// --registries silently, and a control character would reach the kubelet
// config and the terminal as it is.
func TestValuesAreOneLine(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want      string
		notShown  string // never repeated in the error
		wantFixOf string
	}{
		{name: "registries flag", args: []string{"--registries", "a.example.com\nb.example.com"}, want: `--registries "a.example.com\nb.example.com" has a line break at byte 13`, wantFixOf: "comma-separated"},
		{name: "registries env", env: map[string]string{"ICR_REGISTRIES": "a.example.com,b.example.com\r\nc.example.com"}, want: "--registries", wantFixOf: "one line"},
		{name: "profile escape", args: []string{"--profile-id", "Profile-1\x1b[2J"}, want: `--profile-id "Profile-1\x1b[2J" has a control, invisible or non-UTF-8 character`},
		{name: "profile bidi", args: []string{"--profile-name", "abc\u202edef"}, want: "--profile-name"},
		{name: "profile bad byte", args: []string{"--profile-name", "abc\xffdef"}, want: `--profile-name "abc\xffdef" has a control, invisible or non-UTF-8 character at byte 3`},
		{name: "key file tab", args: []string{"--api-key-file", "/etc/icr/\tkey"}, want: "--api-key-file has a control, invisible or non-UTF-8 character"},
		{name: "a key typed as its file, with a line break", env: map[string]string{"ICR_API_KEY_FILE": "Zx9-Qw_8Ty7Ui6Op5As4Df3Gh2Jk1Lz0\n"}, want: "--api-key-file has a line break", notShown: "Zx9-Qw_8"},
		{name: "cache dir", env: map[string]string{"ICR_CACHE_DIR": "/run/x\n"}, want: "--cache-dir"},
		{name: "iam url not repeated", args: []string{"--iam-url", "https://u:pw-secret@iam.example\n"}, want: "--iam-url has a line break", notShown: "pw-secret"},
		{name: "metadata url", args: []string{"--metadata-url", "http://169.254.169.254\x00"}, want: "--metadata-url has a control, invisible or non-UTF-8 character"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			var ce *Error
			if !errors.As(err, &ce) || !strings.Contains(ce.Cause, tc.want) || !strings.Contains(ce.Fix, tc.wantFixOf) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < ' ' || r == 0x7f || r == '\u202e' }) {
				t.Errorf("raw control character in %q", err)
			}
			if tc.notShown != "" && strings.Contains(err.Error(), tc.notShown) {
				t.Errorf("the value was repeated: %s", err)
			}
		})
	}
	// Commas still separate, and a flag given twice appends, as before.
	c, _ := parse(t, []string{"--registries", "a.example.com,b.example.com:5000", "--registries", "c.example.com"}, nil)
	if err := c.Validate(); err != nil || strings.Join(c.Registries, " ") != "a.example.com b.example.com:5000 c.example.com" {
		t.Errorf("registries %q %v", c.Registries, err)
	}
	c, _ = parse(t, nil, map[string]string{"ICR_REGISTRIES": "x.example.com"})
	if strings.Join(c.Registries, " ") != "x.example.com" {
		t.Errorf("registries from env %q", c.Registries)
	}
}
