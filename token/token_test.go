package token

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTokenWindow(t *testing.T) {
	issued := time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		lifetime   time.Duration
		wantMargin time.Duration
	}{
		{name: "one hour: RefreshMargin", lifetime: time.Hour, wantMargin: RefreshMargin},
		{name: "maximum IAM lifetime is not assumed: two hours", lifetime: 2 * time.Hour, wantMargin: RefreshMargin},
		{name: "50 minutes: 20 % equals RefreshMargin", lifetime: 50 * time.Minute, wantMargin: 10 * time.Minute},
		{name: "20 minutes: 20 %", lifetime: 20 * time.Minute, wantMargin: 4 * time.Minute},
		{name: "5 minutes (VPC identity token): 20 %", lifetime: 5 * time.Minute, wantMargin: time.Minute},
		{name: "5 seconds (shortest VPC token): 20 %", lifetime: 5 * time.Second, wantMargin: time.Second},
		{name: "zero lifetime: RefreshMargin, never fresh", lifetime: 0, wantMargin: RefreshMargin},
		{name: "negative lifetime: RefreshMargin, never fresh", lifetime: -time.Minute, wantMargin: RefreshMargin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := Token{AccessToken: "SECRET-access-token", IssuedAt: issued, Expiry: issued.Add(tc.lifetime)}
			if got := tok.Lifetime(); got != tc.lifetime {
				t.Errorf("Lifetime %v, want %v", got, tc.lifetime)
			}
			if got := tok.Margin(); got != tc.wantMargin {
				t.Errorf("Margin %v, want %v", got, tc.wantMargin)
			}
			refreshAt := tok.Expiry.Add(-tc.wantMargin)
			if got := tok.RefreshAt(); !got.Equal(refreshAt) {
				t.Errorf("RefreshAt %v, want %v", got, refreshAt)
			}
			for _, c := range []struct {
				at          time.Time
				fresh, vald bool
			}{
				{at: issued, fresh: issued.Before(refreshAt), vald: tc.lifetime > 0},
				{at: refreshAt.Add(-time.Nanosecond), fresh: tc.lifetime > 0, vald: tc.lifetime > 0},
				{at: refreshAt, fresh: false, vald: tc.lifetime > 0},
				{at: tok.Expiry.Add(-time.Nanosecond), fresh: false, vald: tc.lifetime > 0},
				{at: tok.Expiry, fresh: false, vald: false},
				{at: tok.Expiry.Add(time.Hour), fresh: false, vald: false},
			} {
				if c.at.Before(issued) {
					continue // before issue: not a case worth pinning down
				}
				if got := tok.Fresh(c.at); got != c.fresh {
					t.Errorf("Fresh at %v after issue = %v, want %v", c.at.Sub(issued), got, c.fresh)
				}
				if got := tok.Valid(c.at); got != c.vald {
					t.Errorf("Valid at %v after issue = %v, want %v", c.at.Sub(issued), got, c.vald)
				}
			}
			// A fresh token is always valid; stale-if-error lives between.
			if tc.lifetime > 0 && !tok.Valid(tok.RefreshAt()) {
				t.Errorf("not valid at RefreshAt")
			}
		})
	}
}

func TestTokenWithoutAccessToken(t *testing.T) {
	now := time.Now()
	tok := Token{IssuedAt: now, Expiry: now.Add(time.Hour)}
	if tok.Fresh(now) || tok.Valid(now) {
		t.Errorf("an empty token is fresh or valid")
	}
}

func TestTokenStringHidesSecret(t *testing.T) {
	tok := Token{AccessToken: "SECRET-access-token", IssuedAt: time.Unix(0, 0), Expiry: time.Unix(3600, 0)}
	for _, s := range []string{tok.String(), tok.GoString(), fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("secret printed: %s", s)
		}
		if !strings.Contains(s, "1970-01-01T01:00:00Z") {
			t.Errorf("expiry missing: %s", s)
		}
	}
}
