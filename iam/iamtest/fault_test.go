package iamtest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requestFor builds a request that succeeds without faults on ep.
func requestFor(t *testing.T, s *Server, ep Endpoint) *http.Request {
	t.Helper()
	switch ep {
	case EndpointIAMToken:
		return newReq(t, http.MethodPost, s.URL+"/identity/token", apikeyForm(DefaultAPIKey).Encode(), "Content-Type", "application/x-www-form-urlencoded")
	case EndpointMetadataToken:
		return newReq(t, http.MethodPut, s.URL+"/identity/v1/token?version=2025-08-26", `{"expires_in":300}`, "Metadata-Flavor", "ibm", "Content-Type", "application/json")
	case EndpointMetadataIAMToken:
		tok := mdToken(t, s)
		return newReq(t, http.MethodPost, s.URL+"/identity/v1/iam_tokens?version=2025-08-26", "", "Metadata-Flavor", "ibm", "Authorization", "Bearer "+tok)
	default:
		iamTok := iamToken(t, s)
		req := newReq(t, http.MethodGet, s.URL+"/oauth/token?service=registry&scope=repository:team/app:pull", "")
		req.SetBasicAuth("iambearer", iamTok)
		return req
	}
}

func accessTokenField(ep Endpoint) string {
	if ep == EndpointRegistry {
		return "token"
	}
	return "access_token"
}

func expiryField(ep Endpoint) string {
	switch ep {
	case EndpointIAMToken:
		return "expiration"
	case EndpointRegistry:
		return "expires_in"
	}
	return "expires_at"
}

func TestFaultsObservedByClient(t *testing.T) {
	s := NewServer()
	defer s.Close()
	short := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 300 * time.Millisecond}
	for _, ep := range Endpoints() {
		t.Run(ep.String(), func(t *testing.T) {
			type check func(t *testing.T, resp *http.Response, body []byte, err error)
			wantStatus := func(code int, ct string) check {
				return func(t *testing.T, resp *http.Response, body []byte, err error) {
					if err != nil {
						t.Fatal(err)
					}
					if resp.StatusCode != code || !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) {
						t.Errorf("got %d %q, want %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), code, ct, body)
					}
				}
			}
			json200 := func(f func(t *testing.T, m map[string]any)) check {
				return func(t *testing.T, resp *http.Response, body []byte, err error) {
					if err != nil || resp.StatusCode != 200 {
						t.Fatalf("want 200: %v %v %s", err, resp, body)
					}
					var m map[string]any
					if err := json.Unmarshal(body, &m); err != nil {
						t.Fatalf("not JSON: %v: %s", err, body)
					}
					f(t, m)
				}
			}
			tests := []struct {
				name  string
				fault Fault
				check check
			}{
				{"500", HTTPError(500), wantStatus(500, "application/json")},
				{"502", HTTPError(502), wantStatus(502, "text/html")},
				{"503", HTTPError(503), wantStatus(503, "text/html")},
				{"429 Retry-After", TooManyRequests("7"), func(t *testing.T, resp *http.Response, body []byte, err error) {
					wantStatus(429, "application/json")(t, resp, body, err)
					if resp.Header.Get("Retry-After") != "7" {
						t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
					}
				}},
				{"api error", APIError(401, "BXNIM0999E", "custom message"), func(t *testing.T, resp *http.Response, body []byte, err error) {
					wantStatus(401, "application/json")(t, resp, body, err)
					if !strings.Contains(string(body), "BXNIM0999E") || !strings.Contains(string(body), "custom message") {
						t.Errorf("body %s", body)
					}
				}},
				{"hang", Hang(), func(t *testing.T, resp *http.Response, body []byte, err error) {
					if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "Timeout") {
						t.Errorf("want a client timeout, got %v", err)
					}
				}},
				{"reset", Fault{Kind: FaultReset}, func(t *testing.T, resp *http.Response, body []byte, err error) {
					if err == nil {
						t.Fatalf("want an error, got %d", resp.StatusCode)
					}
					if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
						t.Logf("reset seen as: %v", err)
					}
				}},
				{"malformed JSON", Fault{Kind: FaultMalformedJSON}, func(t *testing.T, resp *http.Response, body []byte, err error) {
					wantStatus(200, "application/json")(t, resp, body, err)
					if json.Valid(body) {
						t.Errorf("body is valid JSON: %s", body)
					}
				}},
				{"truncated body", Fault{Kind: FaultTruncatedBody}, func(t *testing.T, resp *http.Response, body []byte, err error) {
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Errorf("want unexpected EOF, got %v", err)
					}
				}},
				{"missing access token", Fault{Kind: FaultMissingAccessToken}, json200(func(t *testing.T, m map[string]any) {
					if _, ok := m[accessTokenField(ep)]; ok {
						t.Errorf("has %s: %v", accessTokenField(ep), m)
					}
				})},
				{"missing expiration", Fault{Kind: FaultMissingExpiration}, json200(func(t *testing.T, m map[string]any) {
					if _, ok := m[expiryField(ep)]; ok || str(m, accessTokenField(ep)) == "" {
						t.Errorf("has %s or no token: %v", expiryField(ep), m)
					}
				})},
				{"expires_in 0", Fault{Kind: FaultExpiresIn}, json200(func(t *testing.T, m map[string]any) {
					if v, ok := m["expires_in"]; !ok || v.(float64) != 0 {
						t.Errorf("expires_in: %v", m)
					}
				})},
				{"expires_in negative", Fault{Kind: FaultExpiresIn, ExpiresIn: -30}, json200(func(t *testing.T, m map[string]any) {
					if num(m, "expires_in") != -30 {
						t.Errorf("expires_in: %v", m)
					}
				})},
				{"wrong content type", Fault{Kind: FaultWrongContentType}, wantStatus(200, "text/html")},
				{"slow", Slow(100 * time.Millisecond), json200(func(t *testing.T, m map[string]any) {
					if str(m, accessTokenField(ep)) == "" {
						t.Errorf("no token after slow answer: %v", m)
					}
				})},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					req := requestFor(t, s, ep) // may use other endpoints
					s.SetFault(ep, tc.fault.WithTimes(1))
					start := time.Now()
					resp, err := short.Do(req)
					var body []byte
					if err == nil {
						body, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					tc.check(t, resp, body, err)
					if tc.fault.Kind == FaultSlow && time.Since(start) < 100*time.Millisecond {
						t.Errorf("slow answer came after %v", time.Since(start))
					}
					if f := s.Fault(ep); f.Kind != FaultNone {
						t.Errorf("Times=1 fault still installed: %v", f)
					}
					// The next request succeeds.
					a := do(t, requestFor(t, s, ep))
					if a.status != 200 {
						t.Errorf("after the fault: %d %s", a.status, a.raw)
					}
				})
			}
		})
	}
}

func TestFaultTimesFailTwiceThenSucceed(t *testing.T) {
	s := NewServer(WithFault(EndpointIAMToken, HTTPError(503).WithTimes(2)))
	defer s.Close()
	var statuses []int
	for range 4 {
		statuses = append(statuses, postForm(t, s, apikeyForm(DefaultAPIKey)).status)
	}
	if want := []int{503, 503, 200, 200}; !equalInts(statuses, want) {
		t.Errorf("statuses %v, want %v", statuses, want)
	}
	if s.Count(EndpointIAMToken) != 4 || s.Grants() != 2 {
		t.Errorf("Count %d Grants %d", s.Count(EndpointIAMToken), s.Grants())
	}
	// Times=0: until cleared.
	s.SetFault(EndpointIAMToken, HTTPError(500))
	for range 3 {
		if a := postForm(t, s, apikeyForm(DefaultAPIKey)); a.status != 500 {
			t.Fatalf("persistent fault: %d", a.status)
		}
	}
	s.SetFault(EndpointIAMToken, Fault{})
	if a := postForm(t, s, apikeyForm(DefaultAPIKey)); a.status != 200 {
		t.Fatalf("cleared: %d", a.status)
	}
	// Token-shaped faults are consumed only by requests that would succeed.
	s.SetFault(EndpointIAMToken, Fault{Kind: FaultMissingAccessToken, Times: 1})
	if a := postForm(t, s, apikeyForm("unknown")); a.status != 400 {
		t.Fatalf("bad key: %d", a.status)
	}
	if a := postForm(t, s, apikeyForm(DefaultAPIKey)); a.status != 200 || str(a.json, "access_token") != "" {
		t.Fatalf("missing access token: %s", a.raw)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultsConcurrent(t *testing.T) {
	s := NewServer()
	defer s.Close()
	var wg sync.WaitGroup
	const n = 40
	s.SetFault(EndpointIAMToken, HTTPError(503).WithTimes(n/2))
	var mu sync.Mutex
	codes := map[int]int{}
	for range n {
		wg.Go(func() {
			a := postForm(t, s, apikeyForm(DefaultAPIKey))
			mu.Lock()
			codes[a.status]++
			mu.Unlock()
		})
		wg.Go(func() {
			_ = s.Fault(EndpointRegistry)
			s.SetFault(EndpointRegistry, Hang())
			s.SetFault(EndpointRegistry, Fault{})
		})
	}
	wg.Wait()
	if codes[503] != n/2 || codes[200] != n/2 {
		t.Errorf("codes %v, want %d of each", codes, n/2)
	}
	if s.Grants() != n/2 || s.Count(EndpointIAMToken) != n {
		t.Errorf("Grants %d Count %d", s.Grants(), s.Count(EndpointIAMToken))
	}
}

func TestCloseReleasesHungRequests(t *testing.T) {
	s := NewServer(WithFault(EndpointMetadataToken, Hang()), WithFault(EndpointIAMToken, Slow(time.Hour)))
	noTimeout := &http.Client{Transport: &http.Transport{Proxy: nil}}
	errs := make(chan error, 2)
	for _, req := range []*http.Request{requestFor(t, s, EndpointMetadataToken), requestFor(t, s, EndpointIAMToken)} {
		go func() {
			resp, err := noTimeout.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Count(EndpointMetadataToken) == 0 || s.Count(EndpointIAMToken) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("requests did not arrive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("hung request got an answer")
			}
		case <-time.After(2 * time.Second):
			t.Fatal("client still blocked after Close")
		}
	}
	s.Close() // idempotent
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		spec string
		want Fault
	}{
		{"hang", Fault{Kind: FaultHang}},
		{"disabled", Fault{Kind: FaultHang}},
		{"none", Fault{}},
		{"503", Fault{Kind: FaultStatus, Status: 503}},
		{"503,times=2", Fault{Kind: FaultStatus, Status: 503, Times: 2}},
		{"429,retry-after=5", Fault{Kind: FaultStatus, Status: 429, RetryAfter: "5"}},
		{"slow,delay=3s", Fault{Kind: FaultSlow, Delay: 3 * time.Second}},
		{"expires-in,value=-1", Fault{Kind: FaultExpiresIn, ExpiresIn: -1}},
		{"reset", Fault{Kind: FaultReset}},
		{"api-error,status=400,code=BXNIM0415E,message=Provided API key could not be found, really.", Fault{Kind: FaultAPIError, Status: 400, Code: "BXNIM0415E", Message: "Provided API key could not be found, really."}},
		{"iam-error,code=X,times=1", Fault{Kind: FaultAPIError, Code: "X", Times: 1}},
	}
	for _, tc := range tests {
		got, err := ParseFault(tc.spec)
		if err != nil || got != tc.want {
			t.Errorf("ParseFault(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			continue
		}
		if back, err := ParseFault(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.spec, got.String(), back, err)
		}
	}
	for _, bad := range []string{"", "explode", "503,times=-1", "slow,delay=soon", "999", "hang,foo=1", "hang,bar"} {
		if _, err := ParseFault(bad); err == nil {
			t.Errorf("ParseFault(%q) succeeded", bad)
		}
	}
	for _, ep := range Endpoints() {
		if got, err := ParseEndpoint(ep.String()); err != nil || got != ep {
			t.Errorf("ParseEndpoint(%q) = %v, %v", ep.String(), got, err)
		}
	}
}

func TestControlEndpoints(t *testing.T) {
	s := NewServer()
	defer s.Close()
	ctl := func(method, path string, q url.Values) answer {
		return do(t, newReq(t, method, s.URL+path+"?"+q.Encode(), ""))
	}
	a := ctl(http.MethodPost, "/_emulator/fault", url.Values{"endpoint": {"iam-token"}, "kind": {"503"}, "times": {"1"}})
	if a.status != 200 {
		t.Fatalf("set fault: %d %s", a.status, a.raw)
	}
	if f := s.Fault(EndpointIAMToken); f.Kind != FaultStatus || f.Status != 503 || f.Times != 1 {
		t.Errorf("fault %+v", f)
	}
	if a = postForm(t, s, apikeyForm(DefaultAPIKey)); a.status != 503 {
		t.Errorf("fault not applied: %d", a.status)
	}
	postForm(t, s, apikeyForm(DefaultAPIKey))
	a = ctl(http.MethodGet, "/_emulator/stats", nil)
	var st Stats
	if err := json.Unmarshal(a.raw, &st); err != nil || st.Counts["iam-token"] != 2 || st.Grants != 1 || st.Faults["iam-token"] != "none" {
		t.Errorf("stats %s (%v)", a.raw, err)
	}
	if strings.Contains(string(a.raw), DefaultAPIKey) {
		t.Error("stats leak the API key")
	}
	a = ctl(http.MethodPost, "/_emulator/fault", url.Values{"endpoint": {"all"}, "kind": {"api-error"}, "status": {"400"}, "code": {"BXNIM0415E"}, "message": {"gone, sorry"}})
	if a.status != 200 || s.Fault(EndpointRegistry).Message != "gone, sorry" {
		t.Errorf("all: %d %s", a.status, a.raw)
	}
	if a = ctl(http.MethodPost, "/_emulator/fault", url.Values{"endpoint": {"nowhere"}, "kind": {"hang"}}); a.status != 400 {
		t.Errorf("bad endpoint: %d", a.status)
	}
	if a = ctl(http.MethodPost, "/_emulator/fault", url.Values{"endpoint": {"registry"}, "kind": {"bogus"}}); a.status != 400 {
		t.Errorf("bad kind: %d", a.status)
	}
	if a = ctl(http.MethodPost, "/_emulator/clock", url.Values{"skew": {"-1h"}}); a.status != 200 || time.Until(s.Now()) > -59*time.Minute {
		t.Errorf("clock: %d %s", a.status, a.raw)
	}
	if a = ctl(http.MethodPost, "/_emulator/reset", url.Values{"faults": {"true"}}); a.status != 200 || s.Count(EndpointIAMToken) != 0 || s.Fault(EndpointRegistry).Kind != FaultNone {
		t.Errorf("reset: %d %s", a.status, a.raw)
	}
	if a = ctl(http.MethodGet, "/_emulator/reset", nil); a.status != 405 {
		t.Errorf("GET reset: %d", a.status)
	}
	if a = do(t, newReq(t, http.MethodGet, s.URL+"/nothing/here", "")); a.status != 404 {
		t.Errorf("unknown path: %d", a.status)
	}
}

func TestListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0", "example.com:80"} {
		if s, err := Start(WithAddr(addr)); err == nil {
			s.Close()
			t.Errorf("Start(WithAddr(%q)) succeeded", addr)
		}
	}
	s, err := Start(WithAddr("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestRequestLogHasNoSecrets(t *testing.T) {
	var buf syncBuffer
	s := NewServer(WithRequestLog(&buf))
	tok := iamToken(t, s)
	req := newReq(t, http.MethodGet, s.URL+"/oauth/token?scope=repository:team/app:pull", "")
	req.SetBasicAuth("iambearer", tok)
	do(t, req)
	s.Close()
	out := buf.String()
	if !strings.Contains(out, "iam-token POST /identity/token 200") || !strings.Contains(out, "registry GET /oauth/token 200") {
		t.Errorf("log:\n%s", out)
	}
	if strings.Contains(out, DefaultAPIKey) || strings.Contains(out, tok) || strings.Contains(out, "scope=") {
		t.Errorf("log leaks:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
