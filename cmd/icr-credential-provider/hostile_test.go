package main

// Hostile and broken services: IAM and the metadata service echo the
// request's secret back in every place an answer has (a malformed status
// line or header, the error body, a redirect, split across fields, padded
// across the length cut, URL-encoded, base64-encoded, upper-cased), with a
// cold cache and while a stale cached token is served, at every log format
// and verbosity; doctor too, in text and JSON. No secret, nor any piece of
// 8 or more characters of one, may reach stdout (beyond the served token),
// stderr, the disk cache or doctor's report.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// leaks returns the first piece (MinPiece or more characters) of any form
// of any secret found in text, or "".
func leaks(text string, secrets ...string) string {
	lower := strings.ToLower(text)
	for _, sec := range secrets {
		if len(sec) < 8 {
			continue
		}
		forms := []string{sec, url.QueryEscape(sec), base64.StdEncoding.EncodeToString([]byte(sec))}
		for _, f := range forms {
			f = strings.ToLower(f)
			if len(f) > 12 && strings.HasSuffix(forms[2], f[len(f)-4:]) {
				f = f[:len(f)-4] // a base64 tail depends on what follows
			}
			for i := 0; i+8 <= len(f); i++ {
				if strings.Contains(lower, f[i:i+8]) {
					return f[i : i+8]
				}
			}
		}
	}
	return ""
}

// randomKey is an API key no text contains by chance.
func randomKey(t *testing.T) string {
	b := make([]byte, 33)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// staleCache makes every token entry in dir valid for five more minutes
// but past its refresh point, as a cache is when IAM fails at refresh.
func staleCache(t *testing.T, dir string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(names) == 0 {
		t.Fatal("no cache entry to make stale")
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var e map[string]any
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		e["issued_at"], e["expiry"] = now.Add(-55*time.Minute), now.Add(5*time.Minute)
		b, _ = json.Marshal(e)
		if err := os.WriteFile(n, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// cacheText is what the cache directory holds, but for the token each
// entry legitimately keeps.
func cacheText(t *testing.T, dir string) string {
	t.Helper()
	var all strings.Builder
	ents, _ := os.ReadDir(dir)
	for _, de := range ents {
		all.WriteString(de.Name() + "\n")
		b, _ := os.ReadFile(filepath.Join(dir, de.Name()))
		var e map[string]any
		if json.Unmarshal(b, &e) == nil {
			delete(e, "access_token")
			b, _ = json.Marshal(e)
		}
		all.Write(b)
	}
	return all.String()
}

func TestHostileServices(t *testing.T) {
	key := randomKey(t)
	saToken := iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "team-a", "uid-a", "iam", time.Now().Add(time.Hour))
	identities := []struct {
		name  string
		ep    iamtest.Endpoint
		args  []string
		env   []string
		stdin string
	}{
		{"api key", iamtest.EndpointIAMToken, nil, []string{"IBMCLOUD_API_KEY=" + key}, requestJSON("v1", "us.icr.io/team/app")},
		{"node identity", iamtest.EndpointMetadataIAMToken, []string{"--profile-id", iamtest.DefaultProfileID}, nil, requestJSON("v1", "us.icr.io/team/app")},
		{"service account", iamtest.EndpointIAMToken, []string{"--profile-id", iamtest.DefaultProfileID}, nil,
			saRequest(t, "us.icr.io/team/app", saToken, map[string]string{provider.AnnotationProfileID: iamtest.DefaultProfileID})},
	}
	runs := []struct {
		name  string
		stale bool
		flags []string
	}{
		{"cold, text, -v=0", false, nil},
		{"stale, text, -v=6", true, []string{"-v=6"}},
		{"stale, json, -v=6", true, []string{"-v=6", "--logging-format=json"}},
	}
	for _, id := range identities {
		for _, mode := range iamtest.EchoModes {
			for _, rn := range runs {
				t.Run(id.name+"/"+mode+"/"+rn.name, func(t *testing.T) {
					emu := iamtest.NewServer(iamtest.WithAPIKey(key, iamtest.DefaultIdentity()))
					defer emu.Close()
					cache := t.TempDir()
					args := append(append(emulatorArgs(emu, cache), id.args...), rn.flags...)
					var served string
					if rn.stale {
						r := runPlugin(t, invocation{Args: args, Env: id.env, Stdin: id.stdin})
						if r.Code != 0 {
							t.Fatalf("warming the cache: %s", r.Stderr)
						}
						served = decodeStrict(t, r.Stdout, "v1").Auth["us.icr.io"].Password
						staleCache(t, cache)
					}
					emu.SetFault(id.ep, iamtest.Echo(mode))
					r := runPlugin(t, invocation{Args: args, Env: id.env, Stdin: id.stdin})
					out := r.Stdout
					if r.Code == 0 {
						if !rn.stale {
							t.Fatalf("a cold cache and a hostile service, yet a response: %s", r.Stderr)
						}
						// The one secret stdout may hold: the token it serves.
						out = strings.ReplaceAll(out, served, "")
					} else if rn.flags == nil {
						assertFailure(t, r)
					} else if r.Stdout != "" {
						t.Errorf("stdout on failure: %q", r.Stdout)
					}
					secrets := append([]string{key, saToken}, emu.Minted()...)
					for where, text := range map[string]string{"stdout": out, "stderr": r.Stderr, "the cache directory": cacheText(t, cache)} {
						if p := leaks(text, secrets...); p != "" {
							t.Errorf("a piece of a secret (%q) reaches %s:\n%s", p, where, strings.ReplaceAll(text, p, "<PIECE>"))
						}
					}
					// The next run reads the failure record: no secret there either.
					r2 := runPlugin(t, invocation{Args: args, Env: id.env, Stdin: id.stdin})
					if p := leaks(strings.ReplaceAll(r2.Stdout, served, "")+r2.Stderr, secrets...); p != "" {
						t.Errorf("a piece of a secret (%q) reaches the next run's output", p)
					}
				})
			}
			t.Run(id.name+"/"+mode+"/doctor", func(t *testing.T) {
				if id.name == "service account" {
					t.Skip("doctor checks the node identity")
				}
				emu := iamtest.NewServer(iamtest.WithAPIKey(key, iamtest.DefaultIdentity()), iamtest.WithFault(id.ep, iamtest.Echo(mode)))
				defer emu.Close()
				for _, format := range []string{"text", "json"} {
					args := append([]string{"doctor", "--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(), "--cache-dir", "none", "--kubelet-config", "/nonexistent", "-o", format}, id.args...)
					r := runPlugin(t, invocation{Args: args, Env: id.env})
					if p := leaks(r.Stdout+r.Stderr, append([]string{key}, emu.Minted()...)...); p != "" {
						t.Errorf("doctor -o %s: a piece of a secret (%q) in its report:\n%s", format, p, strings.ReplaceAll(r.Stdout, p, "<PIECE>"))
					}
				}
			})
		}
	}
}

// TestHostileRegistry: a registry that echoes the Basic authorization
// header (base64 of iambearer:TOKEN) in every way does not make doctor show
// any piece of it.
func TestHostileRegistry(t *testing.T) {
	for _, mode := range iamtest.EchoModes {
		t.Run(mode, func(t *testing.T) {
			emu := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointRegistry, iamtest.Echo(mode)))
			defer emu.Close()
			r := runPlugin(t, invocation{Args: []string{"doctor", "--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(), "--cache-dir", "none",
				"--profile-id", iamtest.DefaultProfileID, "--registries", emu.RegistryHost(), "--image", emu.RegistryHost() + "/team/app:latest", "-o", "json"}})
			secrets := emu.Minted()
			for _, tok := range emu.Minted() {
				secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte("iambearer:"+tok)))
			}
			if p := leaks(r.Stdout+r.Stderr, secrets...); p != "" {
				t.Errorf("a piece of a secret (%q) in doctor's report:\n%s", p, strings.ReplaceAll(r.Stdout, p, "<PIECE>"))
			}
		})
	}
}
