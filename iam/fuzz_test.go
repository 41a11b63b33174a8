package iam_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// FuzzTokenResponse serves arbitrary answers (status, headers, body, and
// hangs before the headers or in the middle of the body) to the API key
// source and to either step of the VPC metadata source, through a real HTTP
// server on loopback. Whatever the answer: no panic, the call ends within
// its time bound, and the result is either an *iam.Error whose text never
// contains the API key, or a token with a positive lifetime that is valid
// now.

const fuzzAPIKey = "FUZZ-ApiKey-0123456789abcdefghijklmnop"

// attemptTimeout bounds one attempt; short so that hangs are cheap.
const attemptTimeout = 150 * time.Millisecond

type fuzzAnswer struct {
	target uint8 // 0: the API key source's IAM call; 1, 2: VPC step 1, 2
	status int
	header string
	body   []byte
	mode   uint8
}

// Answer modes (mode % 8): 0–5 answer; 6 hang before the headers; 7 send
// the headers and half the body, then hang.
const (
	modeHangHeaders = 6
	modeHangBody    = 7
)

var (
	fuzzMu      sync.Mutex
	fuzzCurrent fuzzAnswer
)

const goodIdentityToken = "FUZZ-instance-identity-token-eyJ0eXAi"

func goodVPCAnswer(token string, expiresIn int) string {
	now := time.Now().UTC()
	return `{"access_token":"` + token + `","created_at":"` + now.Format(time.RFC3339) +
		`","expires_at":"` + now.Add(time.Duration(expiresIn)*time.Second).Format(time.RFC3339) +
		`","expires_in":` + strconv.Itoa(expiresIn) + `}`
}

func fuzzHandler(w http.ResponseWriter, r *http.Request) {
	// Read the request first: the server notices that a client went away
	// only once it has read the request body.
	io.Copy(io.Discard, r.Body)
	fuzzMu.Lock()
	a := fuzzCurrent
	fuzzMu.Unlock()
	step := uint8(0)
	switch {
	case strings.HasSuffix(r.URL.Path, "/identity/token"):
		step = 0
	case strings.HasSuffix(r.URL.Path, "/token"):
		step = 1
	default: // /iam_token, /iam_tokens
		step = 2
	}
	if step != a.target {
		// The VPC step that is not under test answers correctly.
		w.Header().Set("Content-Type", "application/json")
		if step == 1 {
			w.Write([]byte(goodVPCAnswer(goodIdentityToken, 300)))
		} else {
			w.Write([]byte(goodVPCAnswer("FUZZ-iam-token", 3600)))
		}
		return
	}
	if a.mode%8 == modeHangHeaders {
		hang(r, a)
		return
	}
	for _, line := range strings.Split(a.header, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && validHeaderName(k) && validHeaderValue(v) {
			w.Header().Add(k, strings.TrimSpace(v))
		}
	}
	w.WriteHeader(a.status)
	if a.mode%8 == modeHangBody {
		w.Write(a.body[:len(a.body)/2])
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		hang(r, a)
		return
	}
	w.Write(a.body)
}

// hang waits until the client goes away, which it must do when its attempt
// times out; a bounded wait, so that a client that does not (a leaked
// connection) shows up as a stray answer, not as a test that never ends.
func hang(r *http.Request, a fuzzAnswer) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
		println("iam fuzz: the client left a hung request open: target", a.target, "status", a.status, "mode", a.mode)
	}
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func FuzzTokenResponse(f *testing.F) {
	iamOK := `{"access_token":"FUZZ-iam-token","refresh_token":"not_supported","token_type":"Bearer","expires_in":3600,"expiration":` +
		strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + `,"scope":"ibm openid"}`
	json := "Content-Type: application/json"
	for _, target := range []uint8{0, 1, 2} {
		ok := iamOK
		if target != 0 {
			ok = goodVPCAnswer("FUZZ-token", 3600)
		}
		f.Add(target, 200, json, []byte(ok), uint8(0))
		f.Add(target, 200, json, []byte(ok), uint8(modeHangHeaders))
		f.Add(target, 200, json, []byte(ok), uint8(modeHangBody))
		f.Add(target, 200, json, []byte(`{"access_token":"x"`), uint8(0))
		f.Add(target, 200, json, []byte(`{}`), uint8(0))
		f.Add(target, 200, json, []byte(`null`), uint8(0))
		f.Add(target, 200, json, []byte(`{"access_token":"x","expires_in":0}`), uint8(0))
		f.Add(target, 200, json, []byte(`{"access_token":"x","expires_in":-5,"expiration":1}`), uint8(0))
		f.Add(target, 200, json, []byte(`{"access_token":"x","expires_in":9223372036854775807}`), uint8(0))
		f.Add(target, 200, json, []byte(`{"access_token":"x","expires_in":9300000000}`), uint8(0))
		f.Add(target, 200, json, []byte(`{"access_token":"x","expires_in":1e99}`), uint8(0))
		f.Add(target, 200, json+"\nDate: Mon, 02 Jan 2006 15:04:05 GMT", []byte(`{"access_token":"x","expires_in":3600,"expiration":1136214246}`), uint8(0))
		f.Add(target, 200, "Content-Type: text/html", []byte(`<html>proxy login</html>`), uint8(0))
		f.Add(target, 200, json+"\nContent-Length: 999", []byte(ok), uint8(0))
		f.Add(target, 500, json, []byte(`{"errorCode":"BXNIM0500E","errorMessage":"An internal error occurred."}`), uint8(0))
		f.Add(target, 503, "Content-Type: text/html\nRetry-After: 3", []byte(`<html>503</html>`), uint8(0))
		f.Add(target, 429, json+"\nRetry-After: 99999999999999999999", []byte(`{}`), uint8(0))
		f.Add(target, 429, json+"\nRetry-After: Wed, 21 Oct 2099 07:28:00 GMT", []byte(`{}`), uint8(0))
		f.Add(target, 400, json, []byte(`{"errorCode":"BXNIM0415E","errorMessage":"Provided API key could not be found."}`), uint8(0))
		f.Add(target, 401, json, []byte(`{"errors":[{"code":"not_authorized","message":"nope"}]}`), uint8(0))
		f.Add(target, 403, json, []byte(`{"errors":[{"code":"trusted_profile_not_linked","message":"Trusted profile is not linked."}]}`), uint8(0))
		f.Add(target, 404, json, []byte(`{"errors":[]}`), uint8(0))
		f.Add(target, 302, "Location: http://127.0.0.1:1/steal", []byte(``), uint8(0))
		f.Add(target, 100, "", []byte(ok), uint8(0))
		// Servers echoing the API key in every field an error is built from.
		for _, b := range []string{
			`{"errorCode":"` + fuzzAPIKey + `","errorMessage":"` + fuzzAPIKey + `"}`,
			`{"errors":[{"code":"` + fuzzAPIKey + `","message":"` + fuzzAPIKey + `"}]}`,
			`{"error":"` + fuzzAPIKey + `","error_description":"key ` + fuzzAPIKey + `"}`,
			`{"errorCode":"BXNIM0415E","errorMessage":"API key ` + fuzzAPIKey + ` not found"}`,
		} {
			f.Add(target, 400, json, []byte(b), uint8(0))
			f.Add(target, 500, json, []byte(b), uint8(0))
		}
		f.Add(target, 200, json, []byte(`{"access_token":"`+fuzzAPIKey), uint8(0))
	}

	srv := httptest.NewServer(http.HandlerFunc(fuzzHandler))
	defer srv.Close()
	// One transport for every iteration: connections are reused, so that
	// a long run does not exhaust loopback ports.
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	defer tr.CloseIdleConnections()
	opts := iam.Options{
		IAMURL: srv.URL, MetadataURL: srv.URL,
		Transport: tr, MetadataTransport: tr,
		IAMTimeout: attemptTimeout, MetadataTimeout: attemptTimeout,
		MaxAttempts: 1,
	}
	apiKey := iam.NewAPIKeySource(fuzzAPIKey, "the fuzz key file", opts)
	vpc := iam.NewVPCSource(iam.Profile{ID: "Profile-fuzz"}, opts)

	f.Fuzz(func(t *testing.T, target uint8, status int, header string, body []byte, mode uint8) {
		target %= 3
		if status < 100 || status > 999 {
			status = 100 + (status%500+500)%500
		}
		fuzzMu.Lock()
		fuzzCurrent = fuzzAnswer{target: target, status: status, header: header, body: body, mode: mode}
		fuzzMu.Unlock()

		var src token.Source = apiKey
		if target != 0 {
			src = vpc
		}
		const deadline = 2 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		tok, err := src.Token(ctx)
		elapsed := time.Since(start)
		// One attempt per step, bounded by attemptTimeout each; the context
		// deadline is the hard bound. What this catches is a call that
		// ignores the deadline (a hang), so the slack is generous: a busy
		// CI machine running two fuzz workers must not turn it into a
		// timing test.
		if elapsed > deadline+5*time.Second {
			t.Fatalf("Token took %v, deadline %v", elapsed, deadline)
		}
		if err != nil {
			var ie *iam.Error
			if !errors.As(err, &ie) {
				t.Fatalf("error is %T, not *iam.Error: %v", err, err)
			}
			msg := err.Error()
			// Only the API key source holds the key (the VPC source has
			// no way of knowing what a server echoes).
			if target == 0 && strings.Contains(msg, fuzzAPIKey) {
				t.Fatalf("error text contains the API key: %s", msg)
			}
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error text is not one line: %q", msg)
			}
			if tok.AccessToken != "" {
				t.Fatal("an error and a token")
			}
			return
		}
		now := time.Now()
		if tok.AccessToken == "" {
			t.Fatal("success without an access token")
		}
		if tok.Lifetime() <= 0 || !tok.Expiry.After(tok.IssuedAt) {
			t.Fatalf("token lifetime %v (issued %v, expiry %v)", tok.Lifetime(), tok.IssuedAt, tok.Expiry)
		}
		if !tok.Valid(now) {
			t.Fatalf("token already expired at %v", tok.Expiry)
		}
		if tok.IssuedAt.After(now) {
			t.Fatalf("token issued in the future: %v", tok.IssuedAt)
		}
	})
}
