package iam

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// Retry policy for token calls; every wait respects the context, which
// carries the invocation's deadline (the kubelet waits a minute at most).
const (
	DefaultMaxAttempts = 4 // tries of one token call
	// The wait between tries starts at backoffBase and doubles, with
	// jitter, up to backoffMax.
	backoffBase = 250 * time.Millisecond
	backoffMax  = 4 * time.Second
	// maxRetryAfter is the longest Retry-After honoured; more fails now.
	maxRetryAfter = 20 * time.Second
	// MaxLifetime is the longest token lifetime believed: IAM and VPC
	// tokens last an hour at most, and a broken or hostile service's day
	// is not handed to the kubelet as its cacheDuration.
	MaxLifetime = 24 * time.Hour
)

type sdkCall func(client *http.Client) (*core.IamTokenServerResponse, error)

// caller runs sdkCalls with timeouts, retries, panic containment and error
// classification. Sources build one.
type caller struct {
	service        string // "IAM" or "VPC metadata service"
	endpoint       string
	transport      http.RoundTripper
	attemptTimeout time.Duration
	maxAttempts    int
	retryTimeouts  bool // a hung metadata service is not retried
	now            func() time.Time
	fix            func(e *Error)                                   // adds this source's remedy
	sleep          func(ctx context.Context, d time.Duration) error // sleepCtx; tests replace it
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// run performs op with retries and returns a validated token, whose secret
// it adds to the process's secret set.
func (c *caller) run(ctx context.Context, op string, call sdkCall) (token.Token, error) {
	var last *Error
	for attempt := 1; attempt <= c.maxAttempts; attempt++ {
		if ctx.Err() != nil {
			break
		}
		tok, err := c.once(ctx, op, call)
		if err == nil {
			secret.Add(tok.AccessToken)
			return tok, nil
		}
		err.Attempts = attempt
		last = err
		if attempt == c.maxAttempts || !err.Temporary() || err.Reason == ReasonDeadline || ctx.Err() != nil ||
			(err.Reason == ReasonTimeout && !c.retryTimeouts) || err.RetryAfter > maxRetryAfter {
			break
		}
		wait := cmp.Or(err.RetryAfter, backoff(attempt))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+100*time.Millisecond {
			break // no time left for another try
		}
		if c.sleep(ctx, wait) != nil {
			break
		}
	}
	if last == nil {
		last = &Error{Service: c.service, Endpoint: c.endpoint, Op: op, Reason: ReasonDeadline, Err: ctx.Err()}
	}
	c.fix(last)
	// What the service said is kept whole, but never with a secret in it.
	last.Message, last.Code = secret.Redact(last.Message), secret.Redact(last.Code)
	return token.Token{}, last
}

// backoff is the wait before try attempt+1: exponential with full jitter.
func backoff(attempt int) time.Duration {
	d := backoffBase << (attempt - 1)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

func (c *caller) once(ctx context.Context, op string, call sdkCall) (token.Token, *Error) {
	timeout := c.attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout || timeout <= 0 {
			timeout = left
		}
	}
	base := Error{Service: c.service, Endpoint: c.endpoint, Op: op}
	fail := func(r Reason, msg string, cause error) (token.Token, *Error) {
		e := base
		e.Reason, e.Message, e.Err = r, msg, cause
		return token.Token{}, &e
	}
	if timeout <= 0 {
		return fail(ReasonDeadline, "", context.DeadlineExceeded)
	}
	attemptCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client, x := clientFor(attemptCtx, c.transport)
	start := c.now()

	resp, err := func() (resp *core.IamTokenServerResponse, err error) {
		// go-sdk-core dereferences fields of some answers without checking
		// them; a malformed answer must become an error, not a crash.
		defer func() {
			if r := recover(); r != nil {
				resp, err = nil, errPanic{r}
			}
		}()
		return call(client)
	}()

	o := x.snapshot()
	registerTokens(o.body)
	base.Status, base.Path = o.status, o.path
	if d, perr := http.ParseTime(o.header.Get("Date")); perr == nil {
		base.ServerDate = d
	}

	if local, ok := errors.AsType[*Error](err); ok && o.status == 0 && o.netErr == nil {
		return fail(local.Reason, "", local.Err)
	}
	switch status := o.status; {
	case o.netErr != nil || (err != nil && status == 0):
		cause := cmp.Or(o.netErr, err)
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(ReasonDeadline, "", ctx.Err()) // cancelled (SIGTERM)
		}
		if isTimeout(cause) || attemptCtx.Err() != nil {
			return fail(ReasonTimeout, "", fmt.Errorf("no answer within %s", timeout.Round(time.Millisecond)))
		}
		if errors.As(cause, new(errPanic)) {
			return fail(ReasonInternal, "", cause)
		}
		return fail(ReasonUnreachable, "", cause)
	case status < 200 || status > 299:
		e := base
		e.Code, e.Message = serviceError(o.body)
		if e.Message == "" && e.Code == "" {
			e.Message = http.StatusText(status)
		}
		switch {
		case status == http.StatusTooManyRequests:
			e.Reason = ReasonRateLimited
			e.RetryAfter = retryAfter(o.header, time.Now())
		case status >= 500:
			e.Reason = ReasonUnavailable
			e.RetryAfter = retryAfter(o.header, time.Now())
		case (status == http.StatusNotFound && (e.Code == "" || e.Code == "not_found")) || status == http.StatusMethodNotAllowed:
			// The path itself is unknown: a wrong URL or API version. A
			// 404 naming a resource (a profile) is a rejection.
			e.Reason = ReasonNotSupported
		default:
			e.Reason = ReasonRejected
		}
		return token.Token{}, &e
	}

	// A 2xx. The SDK ignores JSON errors in success bodies and panics on
	// some missing fields, so check the body as well as what it produced.
	if o.bodyErr != nil {
		if isTimeout(o.bodyErr) {
			return fail(ReasonTimeout, "", fmt.Errorf("answer body did not arrive within %s", timeout.Round(time.Millisecond)))
		}
		return fail(ReasonMalformed, "the answer broke off", o.bodyErr)
	}
	if msg := numberField(o.body, "expires_in"); msg != "" {
		return fail(ReasonMalformed, msg, nil)
	}
	if err != nil {
		return fail(ReasonMalformed, "missing or invalid fields", err)
	}
	if resp == nil || resp.AccessToken == "" {
		return fail(ReasonMalformed, "no access_token in the answer", nil)
	}
	if resp.ExpiresIn <= 0 {
		return fail(ReasonMalformed, fmt.Sprintf("expires_in is %d, not a positive number of seconds", resp.ExpiresIn), nil)
	}
	if resp.ExpiresIn > int64(MaxLifetime/time.Second) { // (also keeps time.Duration from overflowing)
		msg := fmt.Sprintf("expires_in is %d s, more than the %s any IAM token lasts", resp.ExpiresIn, MaxLifetime)
		return fail(ReasonMalformed, msg, nil)
	}
	lifetime := time.Duration(resp.ExpiresIn) * time.Second
	// Cross-check with the absolute expiration, measured against the
	// server's own clock (its Date), which does not depend on the node's:
	// a token already expired by its own expiration is refused.
	if resp.Expiration > 0 && !base.ServerDate.IsZero() {
		abs := time.Unix(resp.Expiration, 0).Sub(base.ServerDate)
		if abs <= 0 {
			return fail(ReasonMalformed, fmt.Sprintf("the token's expiration %s is not after the answer's Date %s: it is already expired",
				time.Unix(resp.Expiration, 0).UTC().Format(time.RFC3339), base.ServerDate.UTC().Format(time.RFC3339)), nil)
		}
		lifetime = min(lifetime, abs)
	}
	// Measured from before the request: never later than the truth.
	return token.Token{AccessToken: resp.AccessToken, IssuedAt: start, Expiry: start.Add(lifetime)}, nil
}

// numberField says what is wrong with field of a JSON object body if it is
// present and not a number ("" if nothing is): go-sdk-core decodes such a
// field as 0, which would be misreported.
func numberField(body []byte, field string) string {
	var m map[string]json.RawMessage
	var n float64 // (a json.Number would take "3600", a string, too)
	if json.Unmarshal(body, &m) == nil {
		if raw, ok := m[field]; ok && json.Unmarshal(raw, &n) != nil {
			return field + " is not a number"
		}
	}
	return ""
}

// registerTokens adds the token in an answer body (an instance identity
// token, an IAM token) to the process's secret set, so that no later echo
// of it is shown. (IAM's refresh_token is "not_supported" for these grants.)
func registerTokens(body []byte) {
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(body, &v) == nil {
		secret.Add(v.AccessToken)
	}
}

// errPanic is a panic in go-sdk-core (nil dereferences on missing fields);
// its value carries no request data.
type errPanic struct{ v any }

func (p errPanic) Error() string { return fmt.Sprintf("go-sdk-core panicked: %v", p.v) }
