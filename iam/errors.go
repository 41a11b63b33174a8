package iam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// Reason classifies why a token could not be obtained.
type Reason string

// Reasons. Callers branch on these (errors.As to *Error), never on text.
const (
	ReasonTimeout      Reason = "Timeout"      // no answer in time
	ReasonUnreachable  Reason = "Unreachable"  // refused, reset, DNS, no route
	ReasonRejected     Reason = "Rejected"     // 4xx: the identity or request is wrong; retrying will not help
	ReasonRateLimited  Reason = "RateLimited"  // 429
	ReasonUnavailable  Reason = "Unavailable"  // 5xx
	ReasonMalformed    Reason = "Malformed"    // 2xx with an unusable body
	ReasonConfig       Reason = "Config"       // local configuration is wrong
	ReasonInternal     Reason = "Internal"     // a bug, e.g. a panic inside the SDK
	ReasonDeadline     Reason = "Deadline"     // the invocation's own deadline ran out
	ReasonNotSupported Reason = "NotSupported" // e.g. the endpoint does not exist (404)
)

// Error is a failure to obtain a token. Its message is one line that names
// the cause and the fix, and never contains a secret; Cause() and Fix give
// them apart.
type Error struct {
	Service  string // "IAM" or "VPC metadata service"
	Endpoint string // the base URL called
	Op       string // what was attempted, e.g. "exchange the API key for an IAM token"
	Reason   Reason // classifies the failure
	Status   int    // the HTTP status; 0: no answer
	Code     string // the service's error code (IAM "BXNIM0415E"), if any
	// Message is the service's own error message, if any, as sent: it may
	// echo a secret, so it is only shown through Error, Cause or
	// secret.Line, which remove secrets before they cut.
	Message    string
	Attempts   int           // how many times the call was tried
	Fix        string        // what the operator should do
	RetryAfter time.Duration // what a 429 or 503 asked for, if anything
	ServerDate time.Time     // the answer's Date header, if any (clock checks)
	Path       string        // the URL path of the last request, if any
	Err        error         // the underlying error, if any
}

// maxCause bounds the cause, which quotes the server; the fix is the
// plugin's own and always kept whole.
const maxCause = 800

func (e *Error) Error() string {
	if e.Fix == "" {
		return e.Cause()
	}
	return e.Cause() + ": " + secret.Line(e.Fix, 0)
}

// Cause is the error without its fix: what was attempted, where, and what
// the service said, on one line, without secrets, bounded in length.
func (e *Error) Cause() string { return secret.Line(e.cause(), maxCause) }

func (e *Error) cause() string {
	svc := e.Service
	if e.Endpoint != "" {
		svc += " at " + e.Endpoint
	}
	tries := ""
	if e.Attempts > 1 {
		tries = fmt.Sprintf(" (%d attempts)", e.Attempts)
	}
	detail := strings.Join(slices.DeleteFunc([]string{e.Code, e.Message}, func(s string) bool { return s == "" }), ": ")
	if detail != "" {
		detail = " (" + detail + ")"
	}
	switch e.Reason {
	case ReasonTimeout:
		within := ""
		if e.Err != nil {
			within = " (" + e.Err.Error() + ")"
		}
		return fmt.Sprintf("%s did not answer in time to %s%s%s", svc, e.Op, within, tries)
	case ReasonUnreachable:
		return fmt.Sprintf("cannot reach %s to %s%s: %s", svc, e.Op, tries, NetCause(e.Err))
	case ReasonRateLimited:
		return fmt.Sprintf("%s rate-limited the request to %s (HTTP 429)%s%s", svc, e.Op, detail, tries)
	case ReasonUnavailable:
		return fmt.Sprintf("%s failed to %s (HTTP %d)%s%s", svc, e.Op, e.Status, detail, tries)
	case ReasonMalformed:
		return fmt.Sprintf("%s answered a request to %s with an unusable body%s%s", svc, e.Op, detail, tries)
	case ReasonRejected, ReasonNotSupported:
		return fmt.Sprintf("%s refused to %s (HTTP %d)%s", svc, e.Op, e.Status, detail)
	case ReasonDeadline:
		return fmt.Sprintf("gave up trying to %s at %s: the invocation's time ran out%s", e.Op, svc, tries)
	default:
		if e.Err != nil {
			return fmt.Sprintf("%s: cannot %s%s: %v", svc, e.Op, detail, e.Err)
		}
		return fmt.Sprintf("%s: cannot %s%s", svc, e.Op, detail)
	}
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again may succeed: false when the
// identity or the request was refused, or the configuration is wrong.
func (e *Error) Temporary() bool {
	switch e.Reason {
	case ReasonTimeout, ReasonUnreachable, ReasonRateLimited, ReasonUnavailable, ReasonMalformed, ReasonDeadline, ReasonInternal:
		return true
	}
	return false
}

// NetCause names a network failure in words an operator can act on
// ("connection refused", "host name x does not resolve"), without the URL.
func NetCause(err error) string {
	if err == nil {
		return "network error"
	}
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "host name " + dnsErr.Name + " does not resolve"
		}
		return "DNS lookup of " + dnsErr.Name + " failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// serviceError extracts the error code and message, uncut (see Error), from
// an error body: IAM's {"errorCode":…,"errorMessage":…}, VPC's and
// registries' {"errors":[{"code":…,"message":…}]}, or OAuth's.
func serviceError(body []byte) (code, msg string) {
	var v struct {
		ErrorCode    string `json:"errorCode"`
		ErrorMessage string `json:"errorMessage"`
		Errors       []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &v) != nil {
		return "", ""
	}
	switch {
	case v.ErrorCode != "" || v.ErrorMessage != "":
		return v.ErrorCode, v.ErrorMessage
	case len(v.Errors) > 0:
		return v.Errors[0].Code, v.Errors[0].Message
	case v.Error != "":
		return v.Error, v.ErrorDescription
	}
	return "", ""
}

// retryAfter parses a Retry-After header (seconds or HTTP date).
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
