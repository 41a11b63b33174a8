package cache

import (
	"cmp"
	"fmt"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// A failed refresh is recorded in memory and on disk (negative caching), so
// that the dozens of invocations the kubelet starts meanwhile do not each
// take the lock in turn and spend up to ~20 s retrying a source that is
// down: that would multiply the load on IAM and make every pull slow.
const (
	// OutageBackoff is how long after a failed refresh covered by a
	// still-valid token (stale-if-error) every invocation serves that token
	// as stale without calling the source. Short against the token's
	// remaining life and any real outage, long against a burst of pulls.
	OutageBackoff = 30 * time.Second

	// FailureBackoff is how long after a failed refresh with no token to
	// fall back on every invocation fails at once with a
	// *RecentFailureError. Short on purpose: the kubelet retries with its
	// own back-off (from 10 s), while 64 concurrent misses during an outage
	// become one call to IAM and 63 fast failures.
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

// until is when f stops holding back refreshes: never later than the
// backoff that applies, given whether a token can be served meanwhile (so
// that a bad record cannot stop refreshes for long). Zero if f is no failure
// or the clock was set back before it.
func (f failure) until(now time.Time, canServe bool) time.Time {
	if f.at.IsZero() || now.Before(f.at) {
		return time.Time{}
	}
	limit := OutageBackoff
	if !canServe {
		limit = FailureBackoff
	}
	if c := f.at.Add(limit); f.retryNotBefore.After(c) {
		return c
	}
	return f.retryNotBefore
}

// failureMessage is a failed refresh's message as stored and as read back
// (someone may have planted it): one line, without secrets, cut.
func failureMessage(msg string) string { return secret.Line(msg, maxFailureMessage) }

// RecentFailureError is the error Fetch returns, without calling the
// source, while a recent failed refresh (by another invocation, or another
// call in this process) holds back new attempts and no usable token is
// cached; and Result.RefreshErr of a stale token served for that reason.
// Its message is one line.
type RecentFailureError struct {
	Message        string    // the failed attempt's error message, one line
	FailedAt       time.Time // when that attempt failed
	RetryNotBefore time.Time // when the source will be called again
	now            time.Time // when the failure was found, for "Ns ago"
	cause          error     // the original error, if it happened in this process
}

// Error is "<original message> (from a failed attempt Ns ago by another
// invocation; next attempt after T)".
func (e *RecentFailureError) Error() string {
	msg := cmp.Or(e.Message, "refreshing the token failed")
	ago := max(0, e.now.Sub(e.FailedAt)).Round(time.Second)
	return fmt.Sprintf("%s (from a failed attempt %ds ago by another invocation; next attempt after %s)",
		msg, int64(ago/time.Second), e.RetryNotBefore.UTC().Format(time.RFC3339))
}

// Unwrap returns the original error if the attempt failed in this process
// (errors.As then finds, say, an *iam.Error); nil if another process failed.
func (e *RecentFailureError) Unwrap() error { return e.cause }
