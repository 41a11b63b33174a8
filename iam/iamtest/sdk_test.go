package iamtest

// These tests prove that github.com/IBM/go-sdk-core/v5 — what the provider is
// built on — accepts the emulator's answers and parses its errors.

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"
)

var sdkClient = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}

func statusOf(err error) int {
	var ae *core.AuthenticationError
	if errors.As(err, &ae) && ae.HTTPProblem != nil && ae.Response != nil {
		return ae.Response.StatusCode
	}
	return 0
}

func TestSDKIamAuthenticator(t *testing.T) {
	s := NewServer(WithTokenLifetime(45 * time.Minute))
	defer s.Close()
	tests := []struct {
		name   string
		key    string
		fault  Fault
		status int
		msg    string
	}{
		{name: "ok", key: DefaultAPIKey},
		{name: "unknown key", key: "wrong-key", status: 400, msg: "Provided API key could not be found."},
		{name: "custom IAM error", key: DefaultAPIKey, fault: APIError(401, "BXNIM0408E", "Provided token is expired."), status: 401, msg: "Provided token is expired."},
		{name: "503", key: DefaultAPIKey, fault: HTTPError(503), status: 503, msg: "503 Service Unavailable"},
		{name: "429", key: DefaultAPIKey, fault: TooManyRequests("1"), status: 429},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.SetFault(EndpointIAMToken, tc.fault.WithTimes(1))
			defer s.SetFault(EndpointIAMToken, Fault{})
			s.Reset()
			a := &core.IamAuthenticator{ApiKey: tc.key, URL: s.IAMURL(), Client: sdkClient}
			if err := a.Validate(); err != nil {
				t.Fatal(err)
			}
			resp, err := a.RequestToken()
			if tc.status != 0 {
				if err == nil {
					t.Fatalf("no error, got %+v", resp)
				}
				if statusOf(err) != tc.status || !strings.Contains(err.Error(), tc.msg) {
					t.Errorf("error %q status %d; want %d containing %q", err, statusOf(err), tc.status, tc.msg)
				}
				if strings.Contains(err.Error(), tc.key) {
					t.Errorf("SDK error contains the key (the emulator echoed it?): %v", err)
				}
				if s.Grants() != 0 {
					t.Errorf("Grants = %d", s.Grants())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.AccessToken == "" || resp.TokenType != "Bearer" || resp.ExpiresIn != 2700 || resp.Expiration-time.Now().Unix() < 2690 || resp.RefreshToken != "not_supported" {
				t.Errorf("response %+v", resp)
			}
			if s.Grants() != 1 {
				t.Errorf("Grants = %d", s.Grants())
			}
			// GetToken (cached) works too.
			if tok, err := a.GetToken(); err != nil || tok == "" {
				t.Errorf("GetToken: %q %v", tok, err)
			}
		})
	}
}

func TestSDKVpcInstanceAuthenticator(t *testing.T) {
	s := NewServer(WithTrustedProfile(Profile{ID: unlinkedProfileID, Name: "not-linked"}))
	defer s.Close()
	for _, version := range []string{"", "2022-03-01", "2025-08-26"} {
		tests := []struct {
			name      string
			id, crn   string
			pname     string
			status    int
			msg       string
			wantPath  string
			wantIAMID string
		}{
			{name: "default profile", wantIAMID: "iam-" + DefaultProfileID},
			{name: "by id", id: DefaultProfileID, wantIAMID: "iam-" + DefaultProfileID},
			{name: "by crn", crn: DefaultProfileCRN, wantIAMID: "iam-" + DefaultProfileID},
			{name: "by name", pname: DefaultProfileName, wantIAMID: "iam-" + DefaultProfileID},
			{name: "not linked", id: unlinkedProfileID, status: 403, msg: "not linked"},
		}
		for _, tc := range tests {
			t.Run("version="+version+"/"+tc.name, func(t *testing.T) {
				s.Reset()
				a, err := core.NewVpcInstanceAuthenticatorBuilder().SetURL(s.MetadataURL()).SetClient(sdkClient).
					SetServiceVersion(version).SetIAMProfileID(tc.id).SetIAMProfileCRN(tc.crn).SetIAMProfileName(tc.pname).Build()
				if err != nil {
					t.Fatal(err)
				}
				resp, err := a.RequestToken()
				wantPath := "/instance_identity/v1/iam_token"
				if version == MetadataV2Version {
					wantPath = "/identity/v1/iam_tokens"
				}
				if r, ok := s.LastRequest(EndpointMetadataIAMToken); !ok || r.Path != wantPath {
					t.Errorf("SDK used path %q, want %q", r.Path, wantPath)
				}
				if tc.status != 0 {
					if err == nil {
						t.Fatalf("no error: %+v", resp)
					}
					if statusOf(err) != tc.status || !strings.Contains(err.Error(), tc.msg) {
						t.Errorf("error %q status %d", err, statusOf(err))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				c, err := DecodeClaims(resp.AccessToken)
				if err != nil || c.IAMID != tc.wantIAMID {
					t.Errorf("claims %+v %v", c, err)
				}
				if resp.ExpiresIn != 3600 || resp.Expiration-time.Now().Unix() < 3590 {
					t.Errorf("response %+v", resp)
				}
				if s.Grants() != 1 || s.Count(EndpointMetadataToken) != 1 {
					t.Errorf("Grants %d, metadata token requests %d", s.Grants(), s.Count(EndpointMetadataToken))
				}
			})
		}
	}

	// Faults as the SDK sees them.
	t.Run("metadata token 500", func(t *testing.T) {
		s.SetFault(EndpointMetadataToken, APIError(500, "internal_error", "boom").WithTimes(1))
		a, _ := core.NewVpcInstanceAuthenticatorBuilder().SetURL(s.MetadataURL()).SetClient(sdkClient).Build()
		_, err := a.RequestToken()
		if err == nil || statusOf(err) != 500 || !strings.Contains(err.Error(), "boom") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("metadata disabled (hang)", func(t *testing.T) {
		s.SetFault(EndpointMetadataToken, Hang().WithTimes(1))
		short := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 200 * time.Millisecond}
		a, _ := core.NewVpcInstanceAuthenticatorBuilder().SetURL(s.MetadataURL()).SetClient(short).Build()
		start := time.Now()
		if _, err := a.RequestToken(); err == nil || time.Since(start) > 2*time.Second {
			t.Errorf("error %v after %v", err, time.Since(start))
		}
	})
	t.Run("v1 path with 2025-08-26 is 404", func(t *testing.T) {
		// The SDK picks the new paths only for exactly 2025-08-26 (Build
		// accepts no other date than that and 2022-03-01); a later date
		// set without Build keeps the old path, which the service has
		// removed for it.
		a := &core.VpcInstanceAuthenticator{URL: s.MetadataURL(), Client: sdkClient, ServiceVersion: "2025-09-01"}
		_, err := a.RequestToken()
		if statusOf(err) != 404 {
			t.Errorf("error %v", err)
		}
	})
}

func TestSDKContainerAuthenticator(t *testing.T) {
	s := NewServer()
	defer s.Close()
	dir := t.TempDir()
	write := func(name, tok string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", ServiceAccountToken(DefaultSANamespace, "app", "uid", "iam", time.Now().Add(time.Hour)))
	expired := write("expired", ServiceAccountToken(DefaultSANamespace, "app", "uid", "iam", time.Now().Add(-time.Minute)))
	untrusted := write("untrusted", ServiceAccountToken("kube-system", "app", "uid", "iam", time.Now().Add(time.Hour)))
	for _, tc := range []struct {
		name, file string
		status     int
		code       string
	}{
		{"ok", good, 0, ""},
		{"expired", expired, 400, CodeTokenExpired},
		{"not eligible", untrusted, 400, CodeProfileNotEligible},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := core.NewContainerAuthenticatorBuilder().SetURL(s.IAMURL()).SetClient(sdkClient).
				SetCRTokenFilename(tc.file).SetIAMProfileID(DefaultProfileID).Build()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := a.RequestToken()
			if tc.status != 0 {
				if statusOf(err) != tc.status {
					t.Fatalf("error %v", err)
				}
				var ae *core.AuthenticationError
				errors.As(err, &ae)
				if m, _ := ae.Response.Result.(map[string]any); str(m, "errorCode") != tc.code {
					t.Errorf("result %v", ae.Response.Result)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c, _ := DecodeClaims(resp.AccessToken); c.SubType != "Profile" || c.Sub != DefaultProfileID {
				t.Errorf("claims %+v", c)
			}
			if r, _ := s.LastRequest(EndpointIAMToken); r.Form.Get("cr_token") != "REDACTED" || r.Form.Get("profile_id") != DefaultProfileID {
				t.Errorf("form %v", r.Form)
			}
		})
	}
}
