package iamtest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

const unlinkedProfileID = "Profile-99999999-8888-4777-8666-555555555555"

func TestMetadataTokenEndpoint(t *testing.T) {
	s := NewServer()
	defer s.Close()
	flavor := []string{"Metadata-Flavor", "ibm", "Content-Type", "application/json", "Accept", "application/json"}
	tests := []struct {
		name    string
		path    string
		body    string
		hdr     []string
		status  int
		code    string
		expires int64
	}{
		{"v1 sdk default version", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 300}`, flavor, 200, "", 300},
		{"v1 empty body defaults to 300", "/instance_identity/v1/token?version=2024-11-12", "", flavor, 200, "", 300},
		{"v1 {} body", "/instance_identity/v1/token?version=2025-08-25", "{}", flavor, 200, "", 300},
		{"v1 max", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 3600}`, flavor, 200, "", 3600},
		{"v1 min", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 5}`, flavor, 200, "", 5},
		{"v2 path new version", "/identity/v1/token?version=2025-08-26", `{"expires_in": 300}`, flavor, 200, "", 300},
		{"v2 path old version (documented: all version dates)", "/identity/v1/token?version=2022-03-01", `{"expires_in": 60}`, flavor, 200, "", 60},
		{"v1 path removed from 2025-08-26", "/instance_identity/v1/token?version=2025-08-26", `{}`, flavor, 404, "not_found", 0},
		{"missing version", "/instance_identity/v1/token", `{}`, flavor, 400, "missing_version", 0},
		{"malformed version", "/instance_identity/v1/token?version=2022-3-1", `{}`, flavor, 400, "invalid_version", 0},
		{"version too old", "/instance_identity/v1/token?version=2021-12-31", `{}`, flavor, 400, "invalid_version", 0},
		{"version in the future", "/identity/v1/token?version=2999-01-01", `{}`, flavor, 400, "invalid_version", 0},
		{"missing Metadata-Flavor", "/instance_identity/v1/token?version=2022-03-01", `{}`, []string{"Content-Type", "application/json"}, 400, "missing_required_header", 0},
		{"expires_in too long", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 7200}`, flavor, 400, "invalid_value", 0},
		{"expires_in too short", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in": 4}`, flavor, 400, "invalid_value", 0},
		{"bad JSON", "/instance_identity/v1/token?version=2022-03-01", `{"expires_in":`, flavor, 400, "invalid_body", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := do(t, newReq(t, http.MethodPut, s.MetadataURL()+tc.path, tc.body, tc.hdr...))
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if tc.status != 200 {
				if got := errorCode(a); got != tc.code {
					t.Errorf("code %q, want %q: %s", got, tc.code, a.raw)
				}
				if str(a.json, "trace") == "" || num(a.json, "status_code") != int64(tc.status) {
					t.Errorf("VPC error shape: %s", a.raw)
				}
				return
			}
			if num(a.json, "expires_in") != tc.expires || str(a.json, "access_token") == "" {
				t.Errorf("answer %s", a.raw)
			}
			created, err1 := time.Parse(time.RFC3339, str(a.json, "created_at"))
			expires, err2 := time.Parse(time.RFC3339, str(a.json, "expires_at"))
			if err1 != nil || err2 != nil || expires.Sub(created) != time.Duration(tc.expires)*time.Second {
				t.Errorf("created_at/expires_at: %s", a.raw)
			}
		})
	}
	if a := do(t, newReq(t, http.MethodPost, s.MetadataURL()+"/instance_identity/v1/token?version=2022-03-01", "{}", flavor...)); a.status != http.StatusMethodNotAllowed {
		t.Errorf("POST token: %d", a.status)
	}
	if s.Grants() != 0 {
		t.Errorf("instance identity tokens counted as grants: %d", s.Grants())
	}
}

func TestMetadataStrictVersions(t *testing.T) {
	s := NewServer(WithStrictMetadataVersions())
	defer s.Close()
	a := do(t, newReq(t, http.MethodPut, s.MetadataURL()+"/identity/v1/token?version=2025-08-25", "{}", "Metadata-Flavor", "ibm"))
	if a.status != 404 {
		t.Errorf("strict: /identity/v1 with old version: %d %s", a.status, a.raw)
	}
	a = do(t, newReq(t, http.MethodPut, s.MetadataURL()+"/identity/v1/token?version=2025-08-26", "{}", "Metadata-Flavor", "ibm"))
	if a.status != 200 {
		t.Errorf("strict: /identity/v1 with new version: %d %s", a.status, a.raw)
	}
}

func TestMetadataIAMTokenEndpoint(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s := NewServer(
		WithClock(clock),
		WithTokenLifetime(30*time.Minute),
		WithTrustedProfile(Profile{ID: unlinkedProfileID, Name: "not-linked"}),
		WithTrustedProfile(Profile{ID: "Profile-linked-2", Name: "linked-2", LinkedToInstance: true}),
	)
	defer s.Close()
	tok := mdToken(t, s)
	hdr := func(auth string) []string {
		return []string{"Metadata-Flavor", "ibm", "Content-Type", "application/json", "Authorization", auth}
	}
	v1 := "/instance_identity/v1/iam_token?version=2022-03-01"
	v2 := "/identity/v1/iam_tokens?version=2025-08-26"
	tests := []struct {
		name    string
		path    string
		body    string
		hdr     []string
		status  int
		code    string
		profile string
	}{
		{"default profile v1", v1, "", hdr("Bearer " + tok), 200, "", DefaultProfileID},
		{"default profile v2", v2, "", hdr("Bearer " + tok), 200, "", DefaultProfileID},
		{"by id", v1, `{"trusted_profile": {"id": "` + DefaultProfileID + `"}}`, hdr("Bearer " + tok), 200, "", DefaultProfileID},
		{"by crn", v2, `{"trusted_profile": {"crn": "` + DefaultProfileCRN + `"}}`, hdr("Bearer " + tok), 200, "", DefaultProfileID},
		{"by name", v1, `{"trusted_profile": {"name": "linked-2"}}`, hdr("Bearer " + tok), 200, "", "Profile-linked-2"},
		{"empty object: default", v1, `{}`, hdr("Bearer " + tok), 200, "", DefaultProfileID},
		{"not linked", v1, `{"trusted_profile": {"id": "` + unlinkedProfileID + `"}}`, hdr("Bearer " + tok), 403, "trusted_profile_not_linked", ""},
		{"unknown profile", v1, `{"trusted_profile": {"id": "Profile-nope"}}`, hdr("Bearer " + tok), 404, "trusted_profile_not_found", ""},
		{"two identifiers", v1, `{"trusted_profile": {"id": "` + DefaultProfileID + `", "name": "x"}}`, hdr("Bearer " + tok), 400, "invalid_value", ""},
		{"no Authorization", v1, "", []string{"Metadata-Flavor", "ibm"}, 401, "not_authorized", ""},
		{"forged token", v1, "", hdr("Bearer " + ServiceAccountToken("a", "b", "c", "iam", now.Add(time.Hour))), 401, "not_authorized", ""},
		{"IAM token is not an identity token", v1, "", hdr("Bearer " + iamToken(t, s)), 401, "not_authorized", ""},
		{"v1 path new version", "/instance_identity/v1/iam_token?version=2025-08-26", "", hdr("Bearer " + tok), 404, "not_found", ""},
		{"wrong method", v1, "", hdr("Bearer " + tok), 405, "method_not_allowed", ""},
	}
	s.Reset()
	grants := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodPost
			if tc.status == 405 {
				method = http.MethodGet
			}
			a := do(t, newReq(t, method, s.MetadataURL()+tc.path, tc.body, tc.hdr...))
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if tc.status != 200 {
				if got := errorCode(a); got != tc.code {
					t.Errorf("code %q, want %q: %s", got, tc.code, a.raw)
				}
				return
			}
			grants++
			if num(a.json, "expires_in") != 1800 {
				t.Errorf("expires_in: %s", a.raw)
			}
			c, err := DecodeClaims(str(a.json, "access_token"))
			if err != nil {
				t.Fatal(err)
			}
			if c.Sub != tc.profile || c.IAMID != "iam-"+tc.profile || c.SubType != "Profile" || c.GrantType != GrantTypeCRToken || c.Authn == nil || !strings.Contains(c.Authn.Sub, DefaultInstanceID) {
				t.Errorf("claims %+v", c)
			}
		})
	}
	if s.Grants() != grants {
		t.Errorf("Grants() = %d, want %d", s.Grants(), grants)
	}

	// An expired instance identity token is refused.
	short := do(t, newReq(t, http.MethodPut, s.MetadataURL()+"/identity/v1/token?version=2025-08-26", `{"expires_in": 5}`, "Metadata-Flavor", "ibm"))
	now = now.Add(6 * time.Second)
	a := do(t, newReq(t, http.MethodPost, s.MetadataURL()+v2, "", hdr("Bearer "+str(short.json, "access_token"))...))
	if a.status != 401 || !strings.Contains(string(a.raw), "expired") {
		t.Errorf("expired identity token: %d %s", a.status, a.raw)
	}
}

func TestMetadataNoDefaultProfile(t *testing.T) {
	s := NewServer(WithTrustedProfile(Profile{ID: DefaultProfileID, Name: DefaultProfileName, LinkedToInstance: true}))
	defer s.Close()
	tok := mdToken(t, s)
	a := do(t, newReq(t, http.MethodPost, s.MetadataURL()+"/instance_identity/v1/iam_token?version=2022-03-01", "",
		"Metadata-Flavor", "ibm", "Authorization", "Bearer "+tok))
	if a.status != 400 || errorCode(a) != "trusted_profile_required" {
		t.Errorf("no default profile: %d %s", a.status, a.raw)
	}
	a = do(t, newReq(t, http.MethodPost, s.MetadataURL()+"/instance_identity/v1/iam_token?version=2022-03-01", `{"trusted_profile":{"id":"`+DefaultProfileID+`"}}`,
		"Metadata-Flavor", "ibm", "Authorization", "Bearer "+tok))
	if a.status != 200 {
		t.Errorf("explicit linked profile: %d %s", a.status, a.raw)
	}
}
