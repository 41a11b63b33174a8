package iam

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

func TestParseServiceAccountToken(t *testing.T) {
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := iamtest.ServiceAccountToken("team-a", "puller", "uid-1", "iam", exp)
	sa, err := ParseServiceAccountToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Namespace != "team-a" || sa.Name != "puller" || sa.UID != "uid-1" || !sa.Expiry.Equal(exp) || len(sa.Audience) != 1 || sa.Audience[0] != "iam" {
		t.Fatalf("claims: %+v", sa)
	}
	for _, bad := range []string{"", "abc", "a.b", "a.!!!.c", "a.e30.c" /* {} */} {
		if _, err := ParseServiceAccountToken(bad); err == nil {
			t.Errorf("ParseServiceAccountToken(%q) accepted it", bad)
		}
	}
}

func TestCRTokenSource(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	opts := Options{IAMURL: emu.IAMURL(), IAMTimeout: 2 * time.Second, MaxAttempts: 2}
	valid := time.Now().Add(30 * time.Minute)
	tests := []struct {
		name     string
		token    string
		profile  Profile
		wantCode string
		wantFix  string
	}{
		{"trusted SA", iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "puller", "u1", "iam", valid), Profile{ID: iamtest.DefaultProfileID}, "", ""},
		{"by name", iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "puller", "u1", "iam", valid), Profile{Name: iamtest.DefaultProfileName}, "", ""},
		{"SA not trusted", iamtest.ServiceAccountToken("other-ns", "puller", "u2", "iam", valid), Profile{ID: iamtest.DefaultProfileID}, "BXNIM0398E", "trusted-profile-rule-create"},
		{"unknown profile", iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "puller", "u1", "iam", valid), Profile{ID: "Profile-00000000-0000-0000-0000-000000000000"}, "BXNIM0436E", "annotation"},
		{"wrong audience", iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "puller", "u1", "kubernetes", valid), Profile{ID: iamtest.DefaultProfileID}, "BXNIM0437E", "serviceAccountTokenAudience: iam"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := NewCRTokenSource(tt.token, tt.profile, opts)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := src.Token(context.Background())
			if tt.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				c, err := iamtest.DecodeClaims(tok.AccessToken)
				if err != nil || c.SubType != "Profile" {
					t.Fatalf("claims %+v %v", c, err)
				}
				if tok.Expiry.After(valid) {
					t.Errorf("token outlives the service-account token: %v > %v", tok.Expiry, valid)
				}
				return
			}
			var ie *Error
			if !errors.As(err, &ie) || ie.Code != tt.wantCode || ie.Reason != ReasonRejected {
				t.Fatalf("err = %v, want code %s", err, tt.wantCode)
			}
			if !strings.Contains(err.Error(), tt.wantFix) || strings.Contains(err.Error(), tt.token) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want fix %q, one line, no token", err, tt.wantFix)
			}
		})
	}
}

func TestCRTokenSourceExpiredLocally(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	tok := iamtest.ServiceAccountToken(iamtest.DefaultSANamespace, "puller", "u1", "iam", time.Now().Add(-time.Minute))
	src, err := NewCRTokenSource(tok, Profile{ID: iamtest.DefaultProfileID}, Options{IAMURL: emu.IAMURL()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Token(context.Background()); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("err = %v", err)
	}
	if emu.Count(iamtest.EndpointIAMToken) != 0 {
		t.Error("an expired token was sent to IAM")
	}
}

func TestCRTokenCacheKeysDiffer(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	p := Profile{ID: "Profile-1"}
	key := func(ns, name, uid string) string {
		s, err := NewCRTokenSource(iamtest.ServiceAccountToken(ns, name, uid, "iam", exp), p, Options{IAMURL: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		return s.CacheKey()
	}
	keys := map[string]bool{key("a", "x", "1"): true, key("a", "y", "2"): true, key("b", "x", "3"): true}
	if len(keys) != 3 {
		t.Fatal("different service accounts share a cache key")
	}
	s, _ := NewCRTokenSource(iamtest.ServiceAccountToken("a", "x", "1", "iam", exp), p, Options{})
	if strings.Contains(s.CacheKey(), iamtest.ServiceAccountToken("a", "x", "1", "iam", exp)) {
		t.Fatal("the cache key contains the token")
	}
}
