package cache

import (
	"fmt"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// Outage backoff (negative caching). When a refresh fails, the failure is
// recorded in memory and in the entry on disk, so that the invocations the
// kubelet starts meanwhile, often dozens at once, do not each take the lock
// in turn and spend up to ~20 s retrying a source that is down: that would
// multiply the load on IAM during an outage and make every pull slow.
const (
	// OutageBackoff is how long after a failed refresh that was covered by
	// a still-valid cached token (stale-if-error) every invocation serves
	// that token as stale at once, without calling the source or waiting
	// for the lock. It is short against the life left in a token that
	// qualifies for stale-if-error and against any real outage, and long
	// against a burst of pulls; the kubelet is told to keep a stale token
	// only briefly, so the next attempt comes soon after it ends.
	OutageBackoff = 30 * time.Second

	// FailureBackoff is how long after a failed refresh with no usable
	// token to fall back on every invocation fails at once with a
	// *RecentFailureError instead of calling the source. It is short on
	// purpose: the pull fails either way and the kubelet retries it with
	// its own back-off (image pull back-off starts at 10 s), so it delays
	// recovery by little, while it turns 64 concurrent cache misses during
	// an outage into one call to IAM and 63 fast failures.
	FailureBackoff = 10 * time.Second
)

// maxFailureMessage bounds the failed refresh's message kept in an entry.
const maxFailureMessage = 512

// failure is a failed refresh: when, until when nobody tries again, and the
// error's one-line message. cause is the error itself, known only in the
// process that saw it.
type failure struct {
	at             time.Time
	retryNotBefore time.Time
	message        string
	cause          error
}

// until is when f stops holding back refreshes, given whether a token can
// be served meanwhile: never later than the backoff that applies (so that a
// bad record cannot stop refreshes for long), and FailureBackoff at most
// when there is nothing to serve. Zero if f is not a failure or the clock
// is before it (it was set back).
func (f failure) until(now time.Time, canServe bool) time.Time {
	if f.at.IsZero() || now.Before(f.at) {
		return time.Time{}
	}
	limit := OutageBackoff
	if !canServe {
		limit = FailureBackoff
	}
	u := f.retryNotBefore
	if c := f.at.Add(limit); u.After(c) {
		u = c
	}
	return u
}

// failureMessage is a failure message read from an entry: it was written
// by another process (or planted), so it goes through secret.Line again.
func failureMessage(msg string) string { return secret.Line(msg, maxFailureMessage) }

// RecentFailureError is the error Fetch returns, without calling the
// source, while a recent failed refresh (by another invocation, or another
// call in this process) holds back new attempts: for FailureBackoff when no
// usable token is cached. It is also Result.RefreshErr when a stale token is
// served for that reason (for OutageBackoff). Its message is one line.
type RecentFailureError struct {
	// Message is the failed attempt's error message, one line.
	Message string
	// FailedAt is when that attempt failed.
	FailedAt time.Time
	// RetryNotBefore is when the source will be called again.
	RetryNotBefore time.Time
	// now is when the failure was found, for "Ns ago".
	now time.Time
	// cause is the original error when it happened in this process.
	cause error
}

// Error is "<original message> (from a failed attempt Ns ago by another
// invocation; next attempt after T)".
func (e *RecentFailureError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "refreshing the token failed"
	}
	ago := max(0, e.now.Sub(e.FailedAt)).Round(time.Second)
	return fmt.Sprintf("%s (from a failed attempt %ds ago by another invocation; next attempt after %s)",
		msg, int64(ago/time.Second), e.RetryNotBefore.UTC().Format(time.RFC3339))
}

// Unwrap returns the original error if the attempt failed in this process
// (errors.As then finds, say, an *iam.Error); nil if another process failed.
func (e *RecentFailureError) Unwrap() error { return e.cause }
