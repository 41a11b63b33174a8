package iam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"
)

// Retry policy for token calls. A kubelet waits at most a minute for the
// plugin; the caller's context carries the invocation's deadline and every
// wait here respects it.
const (
	// DefaultMaxAttempts bounds the tries of one token call.
	DefaultMaxAttempts = 4
	// backoffBase is the first wait between tries; it doubles each time
	// with full jitter, up to backoffMax.
	backoffBase = 250 * time.Millisecond
	backoffMax  = 4 * time.Second
	// maxRetryAfter is the longest Retry-After the plugin honours; IAM asking
	// for more than this is treated as a failure now, not a wait.
	maxRetryAfter = 20 * time.Second
	// maxExpiresIn is the longest token lifetime, in seconds, that is
	// believed; IAM and VPC tokens last an hour at most.
	maxExpiresIn = 366 * 24 * 60 * 60
)

// sdkCall is one operation performed through go-sdk-core with a client that
// the call provides: it returns the SDK's token answer.
type sdkCall func(client *http.Client) (*core.IamTokenServerResponse, error)

// caller runs sdkCalls with timeouts, retries, panic containment and error
// classification. The zero value is not usable; sources build one.
type caller struct {
	service        string // "IAM" or "VPC metadata service"
	endpoint       string
	transport      http.RoundTripper
	attemptTimeout time.Duration
	maxAttempts    int
	retryTimeouts  bool // a hung metadata service is not retried
	now            func() time.Time
	secrets        func() []string
	// fix completes an error with the remedy for this source.
	fix func(e *Error)
	// sleep waits for d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// run performs op with retries and returns a validated token.
func (c *caller) run(ctx context.Context, op string, call sdkCall) (Token, error) {
	maxAttempts := c.maxAttempts
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	sleep := c.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	var last *Error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if ctx.Err() != nil {
			break
		}
		tok, err := c.once(ctx, op, call)
		if err == nil {
			return tok, nil
		}
		err.Attempts = attempt
		last = err
		if !err.Temporary() || err.Reason == ReasonDeadline || ctx.Err() != nil ||
			(err.Reason == ReasonTimeout && !c.retryTimeouts) || attempt == maxAttempts {
			break
		}
		wait := backoff(attempt)
		if err.RetryAfter > 0 {
			if err.RetryAfter > maxRetryAfter {
				break
			}
			wait = err.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait+100*time.Millisecond {
			break // no time left for another try
		}
		if sleep(ctx, wait) != nil {
			break
		}
	}
	if last == nil {
		last = &Error{Service: c.service, Endpoint: c.endpoint, Op: op, Reason: ReasonDeadline, Err: ctx.Err()}
	}
	if c.fix != nil {
		c.fix(last)
	}
	// Redact, then bound: cutting first could leave part of a secret.
	last.Message = oneLine(Redact(last.Message, c.secretList()...))
	// A server may echo a secret in its error code as well.
	last.Code = Redact(last.Code, c.secretList()...)
	return Token{}, last
}

func (c *caller) secretList() []string {
	if c.secrets == nil {
		return nil
	}
	return c.secrets()
}

// backoff is the wait before try attempt+1: exponential with full jitter.
func backoff(attempt int) time.Duration {
	d := backoffBase << (attempt - 1)
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// once performs a single try.
func (c *caller) once(ctx context.Context, op string, call sdkCall) (tok Token, e *Error) {
	timeout := c.attemptTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout || timeout <= 0 {
			timeout = left
		}
	}
	if timeout <= 0 {
		return Token{}, &Error{Service: c.service, Endpoint: c.endpoint, Op: op, Reason: ReasonDeadline, Err: context.DeadlineExceeded}
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

	path, status, header, netErr, bodyErr, body := x.snapshot()
	base := Error{Service: c.service, Endpoint: c.endpoint, Op: op, Status: status, Path: path}
	if d, perr := http.ParseTime(header.Get("Date")); perr == nil {
		base.ServerDate = d
	}
	fail := func(r Reason, cause error) (Token, *Error) {
		e := base
		e.Reason, e.Err = r, cause
		return Token{}, &e
	}

	var local *Error
	if status == 0 && netErr == nil && errors.As(err, &local) {
		e := base
		e.Reason, e.Err = local.Reason, local.Err
		return Token{}, &e
	}
	switch {
	case netErr != nil || (err != nil && status == 0):
		cause := netErr
		if cause == nil {
			cause = err
		}
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fail(ReasonDeadline, ctx.Err()) // cancelled (SIGTERM)
		}
		if isTimeout(cause) || attemptCtx.Err() != nil {
			return fail(ReasonTimeout, fmt.Errorf("no answer within %s", timeout.Round(time.Millisecond)))
		}
		var p errPanic
		if errors.As(cause, &p) {
			return fail(ReasonInternal, cause)
		}
		return fail(ReasonUnreachable, cause)
	case status < 200 || status > 299:
		e := base
		e.Code, e.Message = serviceError(body)
		if e.Message == "" && e.Code == "" {
			e.Message = http.StatusText(status)
		}
		switch {
		case status == http.StatusTooManyRequests:
			e.Reason = ReasonRateLimited
			e.RetryAfter = retryAfter(header, time.Now())
		case status >= 500:
			e.Reason = ReasonUnavailable
			e.RetryAfter = retryAfter(header, time.Now())
		case (status == http.StatusNotFound && (e.Code == "" || e.Code == "not_found")) || status == http.StatusMethodNotAllowed:
			// The path itself is unknown: a wrong URL or API version. A
			// 404 naming a resource (a profile) is a rejection.
			e.Reason = ReasonNotSupported
		default:
			e.Reason = ReasonRejected
		}
		return Token{}, &e
	case err != nil:
		// A 2xx the SDK could not use (it panicked on a missing field, or
		// the body broke off).
		if bodyErr != nil {
			if isTimeout(bodyErr) {
				return fail(ReasonTimeout, fmt.Errorf("answer body did not arrive within %s", timeout.Round(time.Millisecond)))
			}
			return fail(ReasonMalformed, fmt.Errorf("truncated answer: %w", bodyErr))
		}
		e := base
		e.Reason, e.Err, e.Message = ReasonMalformed, err, "missing or invalid fields"
		return Token{}, &e
	}

	// A 2xx: the SDK ignores JSON errors in success bodies, so check what
	// it produced.
	if bodyErr != nil {
		if isTimeout(bodyErr) {
			return fail(ReasonTimeout, fmt.Errorf("answer body did not arrive within %s", timeout.Round(time.Millisecond)))
		}
		e := base
		e.Reason, e.Err, e.Message = ReasonMalformed, bodyErr, "the answer broke off"
		return Token{}, &e
	}
	if resp == nil || resp.AccessToken == "" {
		e := base
		e.Reason, e.Message = ReasonMalformed, "no access_token in the answer"
		return Token{}, &e
	}
	if resp.ExpiresIn <= 0 {
		e := base
		e.Reason, e.Message = ReasonMalformed, fmt.Sprintf("expires_in is %d, not a positive number of seconds", resp.ExpiresIn)
		return Token{}, &e
	}
	if resp.ExpiresIn > maxExpiresIn {
		// Also keeps the conversion to a time.Duration from overflowing.
		e := base
		e.Reason, e.Message = ReasonMalformed, fmt.Sprintf("expires_in is %d, more than a year", resp.ExpiresIn)
		return Token{}, &e
	}
	lifetime := time.Duration(resp.ExpiresIn) * time.Second
	// Cross-check with the absolute expiration measured against the
	// server's own clock, which does not depend on the node's clock.
	if resp.Expiration > 0 && !base.ServerDate.IsZero() {
		if abs := time.Unix(resp.Expiration, 0).Sub(base.ServerDate); abs > 0 && abs < lifetime {
			lifetime = abs
		}
	}
	// Measured from before the request: never later than the truth.
	return Token{AccessToken: resp.AccessToken, IssuedAt: start, Expiry: start.Add(lifetime)}, nil
}

type errPanic struct{ v any }

func (p errPanic) Error() string {
	// The panic value comes from the SDK's own code paths (nil pointer
	// dereferences on missing fields); it carries no request data.
	return fmt.Sprintf("go-sdk-core panicked: %v", p.v)
}
