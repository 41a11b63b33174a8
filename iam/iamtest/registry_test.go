package iamtest

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func registryToken(t *testing.T, s *Server, user, pass, scope string) answer {
	t.Helper()
	req := newReq(t, http.MethodGet, s.URL+"/oauth/token?service=registry&scope="+url.QueryEscape(scope), "")
	req.SetBasicAuth(user, pass)
	return do(t, req)
}

func TestRegistry(t *testing.T) {
	now := time.Now()
	s := NewServer(
		WithClock(func() time.Time { return now }),
		WithImage("team/app", "v2"),
		WithImage("other/app", "latest"),
		AllowPull(DefaultServiceIDIAMID, "team"),
		AllowPull("iam-"+DefaultProfileID, "*"),
	)
	defer s.Close()

	// The challenge.
	a := do(t, newReq(t, http.MethodGet, s.URL+"/v2/", ""))
	wantChallenge := `Bearer realm="` + s.URL + `/oauth/token",service="registry"`
	if a.status != 401 || a.header.Get("WWW-Authenticate") != wantChallenge || errorCode(a) != "UNAUTHORIZED" {
		t.Fatalf("GET /v2/: %d %q %s", a.status, a.header.Get("WWW-Authenticate"), a.raw)
	}

	iamTok := iamToken(t, s)
	scope := "repository:team/app:pull"

	// Token by GET + basic auth.
	a = registryToken(t, s, "iambearer", iamTok, scope)
	if a.status != 200 || str(a.json, "token") == "" || str(a.json, "token") != str(a.json, "access_token") || num(a.json, "expires_in") <= 0 {
		t.Fatalf("token: %d %s", a.status, a.raw)
	}
	regTok := str(a.json, "token")

	// Token by POST form, as OAuth2 clients do.
	form := url.Values{"grant_type": {"password"}, "username": {"iambearer"}, "password": {iamTok}, "service": {"registry"}, "scope": {scope}, "client_id": {"crane"}}
	a = do(t, newReq(t, http.MethodPost, s.URL+"/oauth/token", form.Encode(), "Content-Type", "application/x-www-form-urlencoded"))
	if a.status != 200 || str(a.json, "access_token") == "" {
		t.Fatalf("POST token: %d %s", a.status, a.raw)
	}
	if r, _ := s.LastRequest(EndpointRegistry); r.Form.Get("password") != "REDACTED" {
		t.Errorf("password not redacted in snapshot")
	}

	// iamapikey works too.
	if a = registryToken(t, s, "iamapikey", DefaultAPIKey, scope); a.status != 200 {
		t.Errorf("iamapikey: %d %s", a.status, a.raw)
	}

	// Bad credentials.
	for _, c := range []struct{ user, pass string }{
		{"iambearer", "not-a-token"},
		{"iambearer", ServiceAccountToken("a", "b", "c", "iam", now.Add(time.Hour))},
		{"iamapikey", "unknown"},
		{"someone", iamTok},
	} {
		if a = registryToken(t, s, c.user, c.pass, scope); a.status != 401 || errorCode(a) != "UNAUTHORIZED" {
			t.Errorf("%s/bad: %d %s", c.user, a.status, a.raw)
		}
	}

	bearer := "Bearer " + regTok
	// /v2/ with a token.
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/", "", "Authorization", bearer)); a.status != 200 {
		t.Errorf("/v2/ with token: %d %s", a.status, a.raw)
	}

	// The manifest.
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		a = do(t, newReq(t, method, s.URL+"/v2/team/app/manifests/latest", "", "Authorization", bearer, "Accept", mediaTypeOCIManifest))
		if a.status != 200 || a.header.Get("Content-Type") != mediaTypeOCIManifest || !strings.HasPrefix(a.header.Get("Docker-Content-Digest"), "sha256:") {
			t.Fatalf("%s manifest: %d %v %s", method, a.status, a.header, a.raw)
		}
		if method == http.MethodGet {
			sum := sha256.Sum256(a.raw)
			if "sha256:"+hex.EncodeToString(sum[:]) != a.header.Get("Docker-Content-Digest") || num(a.json, "schemaVersion") != 2 {
				t.Errorf("manifest digest/body mismatch: %s", a.raw)
			}
		}
	}
	digest := a.header.Get("Docker-Content-Digest")
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/app/manifests/"+digest, "", "Authorization", bearer)); a.status != 200 {
		t.Errorf("manifest by digest: %d", a.status)
	}
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/app/manifests/v2", "", "Authorization", bearer)); a.status != 200 {
		t.Errorf("WithImage tag: %d", a.status)
	}
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/app/manifests/nope", "", "Authorization", bearer)); a.status != 404 || errorCode(a) != "MANIFEST_UNKNOWN" {
		t.Errorf("unknown manifest: %d %s", a.status, a.raw)
	}
	// Without a token: 401 with the scope in the challenge.
	a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/app/manifests/latest", ""))
	if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), `scope="repository:team/app:pull"`) {
		t.Errorf("manifest without token: %d %q", a.status, a.header.Get("WWW-Authenticate"))
	}

	// The service ID may not pull from namespace "other": the token server
	// leaves the access out and the registry answers DENIED.
	a = registryToken(t, s, "iambearer", iamTok, "repository:other/app:pull")
	if a.status != 200 {
		t.Fatalf("token for denied scope: %d %s", a.status, a.raw)
	}
	a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/other/app/manifests/latest", "", "Authorization", "Bearer "+str(a.json, "token")))
	if a.status != 403 || errorCode(a) != "DENIED" {
		t.Errorf("denied pull: %d %s", a.status, a.raw)
	}
	// A token for team/app does not open other repositories.
	a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/other/manifests/latest", "", "Authorization", bearer))
	if a.status != 401 || !strings.Contains(a.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Errorf("insufficient scope: %d %q", a.status, a.header.Get("WWW-Authenticate"))
	}

	// The registry token and the IAM token expire.
	now = now.Add(2 * time.Hour)
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/v2/team/app/manifests/latest", "", "Authorization", bearer)); a.status != 401 {
		t.Errorf("expired registry token: %d", a.status)
	}
	if a = registryToken(t, s, "iambearer", iamTok, scope); a.status != 401 {
		t.Errorf("expired IAM token: %d %s", a.status, a.raw)
	}
	if s.Grants() != 1 {
		t.Errorf("registry tokens counted as grants: %d", s.Grants())
	}
}
