package iam

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// keyOrigin is where the tests' API key "comes from", for messages.
const keyOrigin = "/etc/icr-credential-provider/apikey"

// sleeps records the waits between attempts instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// keySource is an API key source against url whose waits are recorded.
func keySource(url, key string, opts Options) (*APIKeySource, *sleeps) {
	opts.IAMURL = url
	s := NewAPIKeySource(key, keyOrigin, opts)
	sl := &sleeps{}
	s.c.sleep = sl.sleep
	return s, sl
}

// vpcSource is a VPC source against url whose waits are recorded.
func vpcSource(url string, p Profile, opts Options) (*VPCSource, *sleeps) {
	opts.MetadataURL = url
	s := NewVPCSource(p, opts)
	sl := &sleeps{}
	s.c.sleep = sl.sleep
	return s, sl
}

// checkError asserts err is an *Error with reason, whose message is one line,
// ends with its fix (containing wantFix) and holds none of secrets.
func checkError(t *testing.T, err error, reason Reason, wantFix string, secrets ...string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *iam.Error", err, err)
	}
	msg := err.Error()
	if e.Reason != reason {
		t.Errorf("reason %s, want %s: %s", e.Reason, reason, msg)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	if e.Fix == "" || !strings.HasSuffix(msg, ": "+e.Fix) {
		t.Errorf("message does not end with a fix: %q", msg)
	}
	if !strings.Contains(e.Fix, wantFix) {
		t.Errorf("fix %q does not contain %q", e.Fix, wantFix)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("message contains a secret: %q", msg)
		}
	}
	return e
}

func TestCallerRetryPolicy(t *testing.T) {
	key := iamtest.DefaultAPIKey
	tests := []struct {
		name      string
		fault     iamtest.Fault
		wantErr   Reason // "" for success
		wantCalls int
		// wantWaits are the waits between attempts; a zero entry is a
		// backoff, checked against its range.
		wantWaits []time.Duration
		wantFix   string
		wantInMsg string
	}{{
		name:      "503 twice then success",
		fault:     iamtest.HTTPError(503).WithTimes(2),
		wantCalls: 3,
		wantWaits: []time.Duration{0, 0},
	}, {
		name:      "503 with Retry-After honoured",
		fault:     iamtest.Fault{Kind: iamtest.FaultStatus, Status: 503, RetryAfter: "2", Times: 1},
		wantCalls: 2,
		wantWaits: []time.Duration{2 * time.Second},
	}, {
		name:      "429 with Retry-After: 1 honoured",
		fault:     iamtest.TooManyRequests("1").WithTimes(1),
		wantCalls: 2,
		wantWaits: []time.Duration{time.Second},
	}, {
		name:      "429 without Retry-After: backoff",
		fault:     iamtest.TooManyRequests("").WithTimes(1),
		wantCalls: 2,
		wantWaits: []time.Duration{0},
	}, {
		name:      "429 asking for more than maxRetryAfter: give up at once",
		fault:     iamtest.TooManyRequests("30"),
		wantErr:   ReasonRateLimited,
		wantCalls: 1,
		wantFix:   "--cache-dir is writable",
		wantInMsg: "HTTP 429",
	}, {
		name:      "503 for good: DefaultMaxAttempts tries",
		fault:     iamtest.HTTPError(503),
		wantErr:   ReasonUnavailable,
		wantCalls: DefaultMaxAttempts,
		wantWaits: []time.Duration{0, 0, 0},
		wantFix:   "cloud.ibm.com/status",
		wantInMsg: "(4 attempts)",
	}, {
		name:      "500 is retried",
		fault:     iamtest.HTTPError(500).WithTimes(1),
		wantCalls: 2,
		wantWaits: []time.Duration{0},
	}, {
		name:      "400 not retried",
		fault:     iamtest.APIError(400, "BXNIM0415E", "Provided API key could not be found."),
		wantErr:   ReasonRejected,
		wantCalls: 1,
		wantFix:   "service-api-key-create",
		wantInMsg: "BXNIM0415E",
	}, {
		name:      "401 not retried",
		fault:     iamtest.APIError(401, "BXNIM0416E", "The API key is locked."),
		wantErr:   ReasonRejected,
		wantCalls: 1,
		wantFix:   "locked",
	}, {
		name:      "403 not retried",
		fault:     iamtest.HTTPError(403),
		wantErr:   ReasonRejected,
		wantCalls: 1,
		wantFix:   "check the API key in " + keyOrigin,
	}, {
		name:      "key echoed in a 400 message is redacted",
		fault:     iamtest.APIError(400, "BXNIM0415E", "key "+key+" not found"),
		wantErr:   ReasonRejected,
		wantCalls: 1,
		wantFix:   "service-api-key-create",
		wantInMsg: "key [redacted] not found",
	}, {
		name:      "key echoed in a 429 message is redacted",
		fault:     iamtest.Fault{Kind: iamtest.FaultAPIError, Status: 429, RetryAfter: "60", Code: "BXNIM0429E", Message: "too many requests for " + key},
		wantErr:   ReasonRateLimited,
		wantCalls: 1,
		wantFix:   "--cache-dir",
		wantInMsg: "[redacted]",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointIAMToken, tc.fault))
			defer srv.Close()
			src, sl := keySource(srv.IAMURL(), key, Options{})
			tok, err := src.Token(context.Background())
			if got := srv.Count(iamtest.EndpointIAMToken); got != tc.wantCalls {
				t.Errorf("%d calls to IAM, want %d", got, tc.wantCalls)
			}
			waits := sl.waits()
			if len(waits) != len(tc.wantWaits) {
				t.Errorf("waits %v, want %d of them", waits, len(tc.wantWaits))
			}
			for i := range min(len(waits), len(tc.wantWaits)) {
				if w := tc.wantWaits[i]; w != 0 {
					if waits[i] != w {
						t.Errorf("wait %d: %v, want %v", i, waits[i], w)
					}
				} else if lo, hi := (backoffBase<<i)/2, min(backoffBase<<i, backoffMax); waits[i] < lo || waits[i] > hi {
					t.Errorf("wait %d: %v, want a backoff in [%v, %v]", i, waits[i], lo, hi)
				}
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !tok.Fresh(time.Now()) || srv.Grants() != 1 {
					t.Errorf("token %v not fresh, or %d grants", tok, srv.Grants())
				}
				return
			}
			if tok.AccessToken != "" {
				t.Errorf("a token came with the error")
			}
			e := checkError(t, err, tc.wantErr, tc.wantFix, key)
			if e.Attempts != tc.wantCalls {
				t.Errorf("Attempts %d, want %d", e.Attempts, tc.wantCalls)
			}
			if !strings.Contains(err.Error(), tc.wantInMsg) {
				t.Errorf("message %q does not contain %q", err, tc.wantInMsg)
			}
			if tc.wantErr == ReasonRateLimited && e.RetryAfter < maxRetryAfter {
				t.Errorf("RetryAfter %v", e.RetryAfter)
			}
		})
	}
}

func TestMetadataHangNotRetried(t *testing.T) {
	for _, ep := range []iamtest.Endpoint{iamtest.EndpointMetadataToken, iamtest.EndpointMetadataIAMToken} {
		t.Run(ep.String(), func(t *testing.T) {
			srv := iamtest.NewServer(iamtest.WithFault(ep, iamtest.Hang()))
			defer srv.Close()
			const timeout = 300 * time.Millisecond
			src, sl := vpcSource(srv.MetadataURL(), Profile{}, Options{MetadataTimeout: timeout})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := src.Token(ctx)
			took := time.Since(start)
			e := checkError(t, err, ReasonTimeout, "--metadata-service true")
			if took < timeout || took > timeout+2*time.Second {
				t.Errorf("took %v, want about %v", took, timeout)
			}
			if n := srv.Count(ep); n != 1 || len(sl.waits()) != 0 || e.Attempts != 1 {
				t.Errorf("%d requests, waits %v, %d attempts: want a single try", n, sl.waits(), e.Attempts)
			}
			if !strings.Contains(err.Error(), "300ms") {
				t.Errorf("message does not say how long it waited: %s", err)
			}
		})
	}
}

func TestIAMHangRetriedUntilDeadline(t *testing.T) {
	srv := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointIAMToken, iamtest.Hang()))
	defer srv.Close()
	src := NewAPIKeySource(iamtest.DefaultAPIKey, keyOrigin, Options{IAMURL: srv.IAMURL(), IAMTimeout: 200 * time.Millisecond, MaxAttempts: 100})
	const budget = 1500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	_, err := src.Token(ctx)
	took := time.Since(start)
	var e *Error
	if !errors.As(err, &e) || (e.Reason != ReasonTimeout && e.Reason != ReasonDeadline) {
		t.Fatalf("err %v, want a timeout", err)
	}
	checkError(t, err, e.Reason, "", iamtest.DefaultAPIKey)
	if n := srv.Count(iamtest.EndpointIAMToken); n < 2 || e.Attempts != n {
		t.Errorf("%d requests, %d attempts: want retries", n, e.Attempts)
	}
	if took > budget+500*time.Millisecond {
		t.Errorf("took %v, past the context's deadline %v", took, budget)
	}
}

func TestCancelledContext(t *testing.T) {
	srv := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointIAMToken, iamtest.Hang()))
	defer srv.Close()
	t.Run("before the call", func(t *testing.T) {
		src, _ := keySource(srv.IAMURL(), iamtest.DefaultAPIKey, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := src.Token(ctx)
		checkError(t, err, ReasonDeadline, "", iamtest.DefaultAPIKey)
	})
	t.Run("during a hung request", func(t *testing.T) {
		src, sl := keySource(srv.IAMURL(), iamtest.DefaultAPIKey, Options{})
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := src.Token(ctx)
		checkError(t, err, ReasonDeadline, "", iamtest.DefaultAPIKey)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("took %v after cancellation", took)
		}
		if len(sl.waits()) != 0 {
			t.Errorf("retried after cancellation: %v", sl.waits())
		}
	})
}

// closedPort is a loopback URL nobody listens on: connections are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func TestConnectionRefused(t *testing.T) {
	url := closedPort(t)
	t.Run("IAM", func(t *testing.T) {
		src, sl := keySource(url, iamtest.DefaultAPIKey, Options{})
		_, err := src.Token(context.Background())
		e := checkError(t, err, ReasonUnreachable, "HTTPS_PROXY", iamtest.DefaultAPIKey)
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("message does not name the cause: %s", err)
		}
		if e.Attempts != DefaultMaxAttempts || len(sl.waits()) != DefaultMaxAttempts-1 {
			t.Errorf("%d attempts, waits %v", e.Attempts, sl.waits())
		}
	})
	t.Run("metadata", func(t *testing.T) {
		src, _ := vpcSource(url, Profile{}, Options{MaxAttempts: 1})
		_, err := src.Token(context.Background())
		checkError(t, err, ReasonUnreachable, "does not look like an IBM Cloud VPC instance")
		if !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("message does not name the cause: %s", err)
		}
	})
}

func TestMalformedAnswers(t *testing.T) {
	tests := []struct {
		name    string
		ep      iamtest.Endpoint
		fault   iamtest.Fault
		wantErr Reason // "" for success
	}{
		{"IAM malformed JSON", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultMalformedJSON}, ReasonMalformed},
		{"IAM truncated body", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultTruncatedBody}, ReasonMalformed},
		{"IAM no access_token", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultMissingAccessToken}, ReasonMalformed},
		{"IAM expires_in 0", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: 0}, ReasonMalformed},
		{"IAM expires_in -1", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: -1}, ReasonMalformed},
		{"IAM HTML instead of JSON", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultWrongContentType}, ReasonMalformed},
		{"IAM no expiration: expires_in is enough", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultMissingExpiration}, ""},
		{"metadata identity token malformed JSON", iamtest.EndpointMetadataToken, iamtest.Fault{Kind: iamtest.FaultMalformedJSON}, ReasonMalformed},
		{"metadata identity token without access_token (SDK nil dereference)", iamtest.EndpointMetadataToken, iamtest.Fault{Kind: iamtest.FaultMissingAccessToken}, ReasonMalformed},
		{"metadata identity token truncated", iamtest.EndpointMetadataToken, iamtest.Fault{Kind: iamtest.FaultTruncatedBody}, ReasonMalformed},
		{"metadata IAM token without access_token (SDK nil dereference)", iamtest.EndpointMetadataIAMToken, iamtest.Fault{Kind: iamtest.FaultMissingAccessToken}, ReasonMalformed},
		{"metadata IAM token without expires_at (SDK nil dereference)", iamtest.EndpointMetadataIAMToken, iamtest.Fault{Kind: iamtest.FaultMissingExpiration}, ReasonMalformed},
		{"metadata IAM token expires_in 0", iamtest.EndpointMetadataIAMToken, iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: 0}, ReasonMalformed},
		{"metadata IAM token expires_in -1", iamtest.EndpointMetadataIAMToken, iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: -1}, ReasonMalformed},
		{"metadata IAM token HTML", iamtest.EndpointMetadataIAMToken, iamtest.Fault{Kind: iamtest.FaultWrongContentType}, ReasonMalformed},
		{"IAM token lasting more than a day", iamtest.EndpointIAMToken, iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: 25 * 3600}, ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := iamtest.NewServer(iamtest.WithFault(tc.ep, tc.fault))
			defer srv.Close()
			var ts token.Source
			if tc.ep == iamtest.EndpointIAMToken {
				ts, _ = keySource(srv.IAMURL(), iamtest.DefaultAPIKey, Options{MaxAttempts: 2})
			} else {
				ts, _ = vpcSource(srv.MetadataURL(), Profile{}, Options{MaxAttempts: 2})
			}
			var tok token.Token
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic escaped: %v", r)
					}
				}()
				tok, err = ts.Token(context.Background())
			}()
			if tc.wantErr == "" {
				if err != nil || !tok.Fresh(time.Now()) {
					t.Fatalf("%v, %v", tok, err)
				}
				return
			}
			e := checkError(t, err, tc.wantErr, "", iamtest.DefaultAPIKey)
			if e.Attempts != 2 {
				t.Errorf("%d attempts: a malformed answer is retried", e.Attempts)
			}
			if tok.AccessToken != "" {
				t.Errorf("a token came with the error")
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	// A server that knows no such path: a plain 404 or 405, no JSON.
	plain := func(status int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, http.StatusText(status), status)
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	tests := []struct {
		name     string
		iam      bool
		url      string
		fault    iamtest.Fault
		ep       iamtest.Endpoint
		want     Reason
		wantFix  string
		wantCode string
	}{
		{name: "IAM path unknown (404, no code)", iam: true, url: plain(404), want: ReasonNotSupported, wantFix: "--iam-url"},
		{name: "IAM method not allowed", iam: true, url: plain(405), want: ReasonNotSupported, wantFix: "--iam-url"},
		{name: "IAM 404 naming a resource", iam: true, ep: iamtest.EndpointIAMToken, fault: iamtest.APIError(404, "BXNIM0436E", "Profile not found."), want: ReasonRejected, wantFix: "check the API key", wantCode: "BXNIM0436E"},
		{name: "metadata path unknown (404, no code)", url: plain(404), want: ReasonNotSupported, wantFix: "API version"},
		{name: "metadata 404 not_found", ep: iamtest.EndpointMetadataToken, fault: iamtest.APIError(404, "not_found", "Not found."), want: ReasonNotSupported, wantFix: "API version", wantCode: "not_found"},
		{name: "metadata 404 naming the profile", ep: iamtest.EndpointMetadataIAMToken, fault: iamtest.APIError(404, "iam_profile_not_found", "Trusted profile not found."), want: ReasonRejected, wantFix: "trusted-profile-link-create", wantCode: "iam_profile_not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				srv := iamtest.NewServer(iamtest.WithFault(tc.ep, tc.fault))
				defer srv.Close()
				url = srv.URL
			}
			var ts token.Source
			var sl *sleeps
			if tc.iam {
				ts, sl = keySource(url, iamtest.DefaultAPIKey, Options{})
			} else {
				ts, sl = vpcSource(url, Profile{ID: "Profile-1234"}, Options{})
			}
			_, err := ts.Token(context.Background())
			e := checkError(t, err, tc.want, tc.wantFix, iamtest.DefaultAPIKey)
			if e.Code != tc.wantCode || e.Status != http.StatusNotFound && e.Status != http.StatusMethodNotAllowed {
				t.Errorf("code %q status %d", e.Code, e.Status)
			}
			if len(sl.waits()) != 0 {
				t.Errorf("retried: %v", sl.waits())
			}
		})
	}
}

func TestExpiryCrossCheck(t *testing.T) {
	tests := []struct {
		name       string
		expiresIn  int64
		expiration time.Duration // after the server's Date; 0: none
		skew       time.Duration // server clock minus node clock
		noDate     bool
		want       time.Duration // 0: the answer is refused
	}{
		{name: "consistent", expiresIn: 3600, expiration: time.Hour, want: time.Hour},
		{name: "expiration sooner than expires_in", expiresIn: 3600, expiration: 10 * time.Minute, want: 10 * time.Minute},
		{name: "expires_in sooner than expiration", expiresIn: 600, expiration: time.Hour, want: 10 * time.Minute},
		{name: "not assumed to be an hour", expiresIn: 1200, expiration: 20 * time.Minute, want: 20 * time.Minute},
		{name: "server clock two hours ahead: lifetime by the server's clock", expiresIn: 3600, expiration: time.Hour, skew: 2 * time.Hour, want: time.Hour},
		{name: "server clock two hours behind", expiresIn: 3600, expiration: time.Hour, skew: -2 * time.Hour, want: time.Hour},
		{name: "no expiration", expiresIn: 900, want: 15 * time.Minute},
		{name: "no Date header: expires_in alone", expiresIn: 3600, expiration: 10 * time.Minute, noDate: true, want: time.Hour},
		{name: "expiration before Date: already expired, refused", expiresIn: 3600, expiration: -time.Minute},
		{name: "expiration a moment before Date: refused", expiresIn: 3600, expiration: -time.Nanosecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/identity/token" || r.Method != http.MethodPost {
					http.NotFound(w, r)
					return
				}
				date := time.Now().Add(tc.skew).Truncate(time.Second)
				if tc.noDate {
					w.Header()["Date"] = nil
				} else {
					w.Header().Set("Date", date.UTC().Format(http.TimeFormat))
				}
				exp := ""
				if tc.expiration != 0 {
					exp = `,"expiration":` + strconv.FormatInt(date.Add(tc.expiration).Unix(), 10)
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"access_token":"SECRET-at","refresh_token":"not_supported","token_type":"Bearer","expires_in":` + strconv.FormatInt(tc.expiresIn, 10) + exp + `}`))
			}))
			defer srv.Close()
			src, _ := keySource(srv.URL, "SECRET-key-0123456789", Options{})
			before := time.Now()
			tok, err := src.Token(context.Background())
			after := time.Now()
			if tc.want == 0 {
				e := checkError(t, err, ReasonMalformed, "not a valid token response")
				if !strings.Contains(e.Message, "already expired") {
					t.Errorf("message %q does not say the token is expired", e.Message)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Date has a one-second resolution: allow for it.
			slack := time.Second
			if tc.noDate || tc.expiration == 0 || tc.want == time.Duration(tc.expiresIn)*time.Second {
				slack = 0
			}
			if got := tok.Lifetime(); got < tc.want-slack || got > tc.want+slack {
				t.Errorf("lifetime %v, want %v", got, tc.want)
			}
			if tok.IssuedAt.Before(before) || tok.IssuedAt.After(after) {
				t.Errorf("IssuedAt %v not within the call [%v, %v]", tok.IssuedAt, before, after)
			}
			if tok.Expiry.After(after.Add(tc.want + slack)) {
				t.Errorf("expiry later than the truth")
			}
		})
	}
}

// TestLongServerMessages: however long a server's message, the error keeps
// its fix, and a secret echoed in it is redacted even where the message is
// cut short.
func TestLongServerMessages(t *testing.T) {
	key := iamtest.DefaultAPIKey
	tests := []struct {
		name string
		msg  string
	}{
		{"long message", strings.Repeat("word ", 300)},
		{"one long word", strings.Repeat("x", 5000)},
		{"key at the cut", strings.Repeat("x", 580) + key},
		{"key just before the cut", strings.Repeat("x", 600-len(key)-1) + " " + key + " and more"},
		{"key far out", strings.Repeat("x", 2000) + key},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointIAMToken, iamtest.APIError(400, "BXNIM0415E", tc.msg)))
			defer srv.Close()
			src, _ := keySource(srv.IAMURL(), key, Options{})
			_, err := src.Token(context.Background())
			e := checkError(t, err, ReasonRejected, "service-api-key-create", key, key[:12])
			if strings.Contains(e.Message, key[:12]) {
				t.Errorf("Message holds part of the key: …%s", e.Message[max(0, len(e.Message)-60):])
			}
			if len(err.Error()) > 2000 {
				t.Errorf("message of %d bytes", len(err.Error()))
			}
		})
	}
}

// TestExpiresInNotANumber: a string expires_in is said to be one, not
// reported as 0.
func TestExpiresInNotANumber(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"SECRET-at","token_type":"Bearer","expires_in":"3600","expiration":` + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `}`))
	}))
	defer srv.Close()
	src, _ := keySource(srv.URL, "SECRET-key-0123456789", Options{MaxAttempts: 1})
	_, err := src.Token(context.Background())
	e := checkError(t, err, ReasonMalformed, "not a valid token response")
	if e.Message != "expires_in is not a number" {
		t.Errorf("message %q", e.Message)
	}
}
