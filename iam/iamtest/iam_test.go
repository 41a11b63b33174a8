package iamtest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const otherSAProfileID = "Profile-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

func TestIAMTokenEndpoint(t *testing.T) {
	fixed := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	svc := Identity{IAMID: "iam-ServiceId-11111111-2222-4333-8444-555555555555", Name: "puller", IMSUserID: 4242}
	s := NewServer(
		WithClock(func() time.Time { return fixed }),
		WithTokenLifetime(20*time.Minute),
		WithAPIKey("second-key", svc),
		WithTrustedProfile(Profile{ID: otherSAProfileID, Name: "workload",
			TrustedServiceAccounts: []ServiceAccount{{Issuer: DefaultSAIssuer, Namespace: "apps", Name: "puller"}}}),
	)
	defer s.Close()
	valid := fixed.Add(time.Hour)
	crForm := func(tok string, kv ...string) url.Values {
		f := url.Values{"grant_type": {GrantTypeCRToken}, "cr_token": {tok}}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	saTok := ServiceAccountToken("apps", "puller", "uid-1", "iam", valid)
	tests := []struct {
		name      string
		form      url.Values
		status    int
		code      string
		iamID     string
		subType   string
		grantType string
	}{
		{"apikey default", apikeyForm(DefaultAPIKey), 200, "", DefaultServiceIDIAMID, "ServiceId", GrantTypeAPIKey},
		{"apikey configured", apikeyForm("second-key"), 200, "", svc.IAMID, "ServiceId", GrantTypeAPIKey},
		{"apikey unknown", apikeyForm("nope"), 400, CodeAPIKeyNotFound, "", "", ""},
		{"apikey missing", url.Values{"grant_type": {GrantTypeAPIKey}}, 400, CodePropertyMissing, "", "", ""},
		{"grant missing", url.Values{"apikey": {DefaultAPIKey}}, 400, CodePropertyMissing, "", "", ""},
		{"grant unsupported", url.Values{"grant_type": {"password"}}, 400, CodeUnsupportedGrantType, "", "", ""},
		{"cr-token by id", crForm(saTok, "profile_id", otherSAProfileID), 200, "", "iam-" + otherSAProfileID, "Profile", GrantTypeCRToken},
		{"cr-token by name", crForm(saTok, "profile_name", "workload"), 200, "", "iam-" + otherSAProfileID, "Profile", GrantTypeCRToken},
		{"cr-token by crn", crForm(saTok, "profile_crn", "crn:v1:bluemix:public:iam-identity::a/"+DefaultAccountID+"::profile:"+otherSAProfileID), 200, "", "iam-" + otherSAProfileID, "Profile", GrantTypeCRToken},
		{"cr-token id and name agree", crForm(saTok, "profile_id", otherSAProfileID, "profile_name", "workload"), 200, "", "iam-" + otherSAProfileID, "Profile", GrantTypeCRToken},
		{"cr-token id and name disagree", crForm(saTok, "profile_id", otherSAProfileID, "profile_name", DefaultProfileName), 400, CodeProfileNotFound, "", "", ""},
		{"cr-token default profile, default namespace", crForm(ServiceAccountToken(DefaultSANamespace, "any", "u", "iam", valid), "profile_id", DefaultProfileID), 200, "", "iam-" + DefaultProfileID, "Profile", GrantTypeCRToken},
		{"cr-token expired", crForm(ServiceAccountToken("apps", "puller", "u", "iam", fixed.Add(-time.Second)), "profile_id", otherSAProfileID), 400, CodeTokenExpired, "", "", ""},
		{"cr-token wrong audience", crForm(ServiceAccountToken("apps", "puller", "u", "kubernetes", valid), "profile_id", otherSAProfileID), 400, CodeAudienceMismatch, "", "", ""},
		{"cr-token profile unknown", crForm(saTok, "profile_id", "Profile-does-not-exist"), 400, CodeProfileNotFound, "", "", ""},
		{"cr-token profile does not trust SA", crForm(ServiceAccountToken("apps", "other", "u", "iam", valid), "profile_id", otherSAProfileID), 400, CodeProfileNotEligible, "", "", ""},
		{"cr-token other issuer", crForm(ServiceAccountClaims{Issuer: "https://evil.example", Namespace: "apps", Name: "puller", Audience: []string{"iam"}, Expiry: valid}.Token(), "profile_id", otherSAProfileID), 400, CodeProfileNotEligible, "", "", ""},
		{"cr-token not a JWT", crForm("garbage", "profile_id", otherSAProfileID), 400, CodeTokenInvalid, "", "", ""},
		{"cr-token missing", url.Values{"grant_type": {GrantTypeCRToken}, "profile_id": {otherSAProfileID}}, 400, CodePropertyMissing, "", "", ""},
		{"cr-token profile missing", crForm(saTok), 400, CodePropertyMissing, "", "", ""},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := postForm(t, s, tc.form)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.raw)
			}
			if got := a.header.Get("Date"); got != fixed.Format(http.TimeFormat) {
				t.Errorf("Date %q, want the emulator clock %q", got, fixed.Format(http.TimeFormat))
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.status != 200 {
				if got := errorCode(a); got != tc.code {
					t.Errorf("errorCode %q, want %q: %s", got, tc.code, a.raw)
				}
				ctx, _ := a.json["context"].(map[string]any)
				for _, k := range []string{"requestId", "requestType", "userAgent", "url", "instanceId", "threadId", "host", "startTime", "endTime", "elapsedTime", "locale", "clusterName"} {
					if _, ok := ctx[k].(string); !ok {
						t.Errorf("context.%s missing or not a string: %s", k, a.raw)
					}
				}
				if str(a.json, "errorMessage") == "" {
					t.Errorf("no errorMessage: %s", a.raw)
				}
				if strings.Contains(string(a.raw), DefaultAPIKey) || strings.Contains(string(a.raw), "nope") && tc.code == CodeAPIKeyNotFound {
					t.Errorf("error echoes a secret: %s", a.raw)
				}
				return
			}
			if str(a.json, "token_type") != "Bearer" || str(a.json, "refresh_token") != "not_supported" || str(a.json, "scope") != "ibm openid" {
				t.Errorf("unexpected token fields: %s", a.raw)
			}
			if num(a.json, "expires_in") != 1200 || num(a.json, "expiration") != fixed.Add(20*time.Minute).Unix() {
				t.Errorf("expires_in/expiration: %s", a.raw)
			}
			c, err := DecodeClaims(str(a.json, "access_token"))
			if err != nil {
				t.Fatal(err)
			}
			if c.IAMID != tc.iamID || c.SubType != tc.subType || c.GrantType != tc.grantType || c.Account.BSS != DefaultAccountID {
				t.Errorf("claims %+v", c)
			}
			if c.IssuedAt != fixed.Unix() || c.Expiry != fixed.Add(20*time.Minute).Unix() {
				t.Errorf("iat/exp %d/%d", c.IssuedAt, c.Expiry)
			}
			if seen[c.JTI] {
				t.Errorf("jti %q reused", c.JTI)
			}
			seen[c.JTI] = true
		})
	}
	if got, want := s.Grants(), 7; got != want {
		t.Errorf("Grants() = %d, want %d", got, want)
	}
	if got := s.Count(EndpointIAMToken); got != len(tests) {
		t.Errorf("Count = %d, want %d", got, len(tests))
	}
	s.Reset()
	if s.Grants() != 0 || s.Count(EndpointIAMToken) != 0 {
		t.Error("Reset did not reset")
	}
}

func TestIAMMethodAndIMSUserID(t *testing.T) {
	s := NewServer(WithAPIKey("user-key", Identity{IAMID: "IBMid-1234", ID: "IBMid-1234", SubType: "User", IMSUserID: 13176852}))
	defer s.Close()
	a := do(t, newReq(t, http.MethodGet, s.IAMURL()+"/identity/token", ""))
	if a.status != http.StatusMethodNotAllowed || errorCode(a) == "" {
		t.Errorf("GET: %d %s", a.status, a.raw)
	}
	a = postForm(t, s, apikeyForm("user-key"))
	if num(a.json, "ims_user_id") != 13176852 {
		t.Errorf("ims_user_id: %s", a.raw)
	}
	a = postForm(t, s, apikeyForm(DefaultAPIKey))
	if _, ok := a.json["ims_user_id"]; ok {
		t.Errorf("service ID answer has ims_user_id: %s", a.raw)
	}
}

func TestClockSkew(t *testing.T) {
	s := NewServer(WithClockSkew(-2 * time.Hour))
	defer s.Close()
	a := postForm(t, s, apikeyForm(DefaultAPIKey))
	d, err := http.ParseTime(a.header.Get("Date"))
	if err != nil {
		t.Fatal(err)
	}
	if skew := time.Until(d); skew > -119*time.Minute || skew < -121*time.Minute {
		t.Errorf("Date is %v from now, want about -2h", skew)
	}
	if exp := time.Unix(num(a.json, "expiration"), 0); time.Until(exp) > -59*time.Minute {
		t.Errorf("expiration %v not skewed", exp)
	}
	s.SetClockSkew(0)
	a = postForm(t, s, apikeyForm(DefaultAPIKey))
	if exp := time.Unix(num(a.json, "expiration"), 0); time.Until(exp) < 59*time.Minute {
		t.Errorf("expiration %v after SetClockSkew(0)", exp)
	}
}

func TestLastRequestRedactsSecrets(t *testing.T) {
	s := NewServer()
	defer s.Close()
	postForm(t, s, apikeyForm(DefaultAPIKey))
	r, ok := s.LastRequest(EndpointIAMToken)
	if !ok {
		t.Fatal("no last request")
	}
	if r.Method != "POST" || r.Path != "/identity/token" || r.Form.Get("grant_type") != GrantTypeAPIKey || r.Form.Get("response_type") != "cloud_iam" {
		t.Errorf("snapshot %+v", r)
	}
	if r.Form.Get("apikey") != "REDACTED" {
		t.Errorf("apikey not redacted: %q", r.Form.Get("apikey"))
	}
	tok := mdToken(t, s)
	do(t, newReq(t, http.MethodPost, s.URL+"/instance_identity/v1/iam_token?version=2022-03-01", `{"trusted_profile":{"id":"`+DefaultProfileID+`"}}`,
		"Authorization", "Bearer "+tok, "Metadata-Flavor", "ibm", "Content-Type", "application/json"))
	r, _ = s.LastRequest(EndpointMetadataIAMToken)
	if got := r.Header.Get("Authorization"); got != "Bearer REDACTED" {
		t.Errorf("Authorization not redacted: %q", got)
	}
	if !strings.Contains(string(r.Body), DefaultProfileID) || r.Query.Get("version") != "2022-03-01" {
		t.Errorf("snapshot %+v", r)
	}
}

func TestServiceAccountToken(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := ServiceAccountToken("ns1", "sa1", "uid-9", "iam", exp)
	if strings.Count(tok, ".") != 2 {
		t.Fatalf("not a JWT: %q", tok)
	}
	p, err := parseSAToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Sub != "system:serviceaccount:ns1:sa1" || p.Kubernetes.Namespace != "ns1" || p.Kubernetes.ServiceAccount.Name != "sa1" ||
		p.Kubernetes.ServiceAccount.UID != "uid-9" || len(p.Aud) != 1 || p.Aud[0] != "iam" || p.Exp != exp.Unix() || p.Iss != DefaultSAIssuer {
		t.Errorf("payload %+v", p)
	}
}

func BenchmarkIAMTokenGrant(b *testing.B) {
	s := NewServer()
	defer s.Close()
	c := &http.Client{Transport: &http.Transport{Proxy: nil}}
	body := apikeyForm(DefaultAPIKey).Encode()
	for b.Loop() {
		resp, err := c.Post(s.IAMURL()+"/identity/token", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(err, resp)
		}
		resp.Body.Close()
	}
}
