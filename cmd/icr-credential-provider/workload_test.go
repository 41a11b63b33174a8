package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

func saRequest(t *testing.T, image, saToken string, ann map[string]string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"apiVersion":                "credentialprovider.kubelet.k8s.io/v1",
		"kind":                      "CredentialProviderRequest",
		"image":                     image,
		"serviceAccountToken":       saToken,
		"serviceAccountAnnotations": ann,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKubeletModeServiceAccount(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	cache := t.TempDir()
	exp := time.Now().Add(time.Hour)
	ns := iamtest.DefaultSANamespace
	saA := iamtest.ServiceAccountToken(ns, "team-a", "uid-a", "iam", exp)
	saB := iamtest.ServiceAccountToken(ns, "team-b", "uid-b", "iam", exp)
	saOther := iamtest.ServiceAccountToken("untrusted-ns", "x", "uid-x", "iam", exp)
	byID := map[string]string{provider.AnnotationProfileID: iamtest.DefaultProfileID}
	args := append(emulatorArgs(emu, cache), "--profile-id", iamtest.DefaultProfileID)

	run := func(t *testing.T, sa string, ann map[string]string) result {
		t.Helper()
		r := runPlugin(t, invocation{Args: args, Stdin: saRequest(t, "us.icr.io/team/app", sa, ann)})
		assertNoSecrets(t, r, saA, saB, saOther)
		return r
	}
	token := func(t *testing.T, r result) (string, iamtest.Claims) {
		t.Helper()
		if r.Code != 0 {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		pw := decodeStrict(t, r.Stdout, "v1").Auth["us.icr.io"].Password
		c, err := iamtest.DecodeClaims(pw)
		if err != nil {
			t.Fatal(err)
		}
		return pw, c
	}

	t.Run("annotated SA gets the profile token via cr-token", func(t *testing.T) {
		_, c := token(t, run(t, saA, byID))
		if c.Authn == nil || c.Authn.Sub != "system:serviceaccount:"+ns+":team-a" {
			t.Errorf("token authenticated %+v, want service account team-a", c.Authn)
		}
	})
	t.Run("un-annotated SA gets the node identity", func(t *testing.T) {
		before := emu.Count(iamtest.EndpointMetadataIAMToken)
		_, c := token(t, run(t, saA, nil))
		if c.Authn != nil && strings.HasPrefix(c.Authn.Sub, "system:serviceaccount:") {
			t.Errorf("node identity expected, token authenticated %+v", c.Authn)
		}
		if emu.Count(iamtest.EndpointMetadataIAMToken) != before+1 {
			t.Error("the metadata service was not asked for the node identity")
		}
	})
	t.Run("two service accounts never share a token", func(t *testing.T) {
		a, ca := token(t, run(t, saA, byID))
		b, cb := token(t, run(t, saB, byID))
		if a == b || ca.JTI == cb.JTI {
			t.Fatal("service accounts team-a and team-b were served the same token")
		}
		again, _ := token(t, run(t, saA, byID))
		if again != a {
			t.Error("the same service-account token was not served from the cache")
		}
	})
	t.Run("untrusted SA fails, no fallback to the node", func(t *testing.T) {
		r := run(t, saOther, byID)
		assertFailure(t, r, "BXNIM0398E", "untrusted-ns/x", "trusted-profile-rule-create")
	})
	t.Run("unknown profile fails clearly", func(t *testing.T) {
		r := run(t, saA, map[string]string{provider.AnnotationProfileName: "no-such-profile"})
		assertFailure(t, r, "BXNIM0436E", "no-such-profile")
	})
	t.Run("both annotations are ambiguous", func(t *testing.T) {
		r := run(t, saA, map[string]string{provider.AnnotationProfileID: "a", provider.AnnotationProfileName: "b"})
		assertFailure(t, r, "keep exactly one")
	})
	t.Run("cacheDuration never outlives the SA token", func(t *testing.T) {
		short := iamtest.ServiceAccountToken(ns, "team-c", "uid-c", "iam", time.Now().Add(5*time.Minute))
		r := runPlugin(t, invocation{Args: args, Stdin: saRequest(t, "us.icr.io/team/app", short, byID)})
		if r.Code != 0 {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		if d := decodeStrict(t, r.Stdout, "v1").CacheDuration.Duration; d > 5*time.Minute {
			t.Errorf("cacheDuration %v outlives the 5m service-account token", d)
		}
		assertNoSecrets(t, r, short)
	})
}

// TestWorkloadEndpointRule: the workload identity obeys the same URL rule
// as the node's: no user info (it would go out as Basic auth), no other
// scheme, no plain http to a remote IAM; nothing is sent, nothing secret
// is printed.
func TestWorkloadEndpointRule(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	sa := iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "team-a", "uid-a", "iam", time.Now().Add(time.Hour))
	byID := map[string]string{provider.AnnotationProfileID: iamtest.DefaultProfileID}
	host := strings.TrimPrefix(emu.IAMURL(), "http://")
	for _, tc := range []struct{ url, want string }{
		{"http://admin:Pa55w0rd-secret@" + host, "not a base URL"},
		{"ftp://" + host, "not a base URL"},
		{"http://iam.example.com", "plain http"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			emu.Reset()
			r := runPlugin(t, invocation{Args: []string{"--iam-url", tc.url, "--metadata-url", emu.MetadataURL(), "--cache-dir", "none"},
				Stdin: saRequest(t, "us.icr.io/team/app", sa, byID)})
			assertFailure(t, r, tc.want)
			assertNoSecrets(t, r, sa, "Pa55w0rd-secret")
			for _, ep := range iamtest.Endpoints() {
				if emu.Count(ep) != 0 {
					t.Errorf("%d requests to %s", emu.Count(ep), ep)
				}
			}
		})
	}
}
