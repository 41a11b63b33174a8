package iamtest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoint names one emulated service endpoint, for faults and counters.
type Endpoint int

// The emulated endpoints.
const (
	// EndpointIAMToken is IAM's POST /identity/token.
	EndpointIAMToken Endpoint = iota
	// EndpointMetadataToken is the VPC metadata service's instance identity
	// token: PUT /instance_identity/v1/token and PUT /identity/v1/token.
	EndpointMetadataToken
	// EndpointMetadataIAMToken is the VPC metadata service's IAM token
	// exchange: POST /instance_identity/v1/iam_token and
	// POST /identity/v1/iam_tokens.
	EndpointMetadataIAMToken
	// EndpointRegistry is every registry path: /v2/... and /oauth/token.
	EndpointRegistry

	numEndpoints
)

var endpointNames = [numEndpoints]string{"iam-token", "metadata-token", "metadata-iam-token", "registry"}

// Endpoints lists all endpoints.
func Endpoints() []Endpoint {
	return []Endpoint{EndpointIAMToken, EndpointMetadataToken, EndpointMetadataIAMToken, EndpointRegistry}
}

// String returns the endpoint's name as used by ParseEndpoint, the control
// endpoints and the stats: iam-token, metadata-token, metadata-iam-token,
// registry.
func (e Endpoint) String() string {
	if e >= 0 && e < numEndpoints {
		return endpointNames[e]
	}
	return "Endpoint(" + strconv.Itoa(int(e)) + ")"
}

// ParseEndpoint parses an endpoint name as returned by Endpoint.String.
func ParseEndpoint(s string) (Endpoint, error) {
	for i, n := range endpointNames {
		if strings.EqualFold(strings.TrimSpace(s), n) {
			return Endpoint(i), nil
		}
	}
	return 0, fmt.Errorf("unknown endpoint %q (want one of %s)", s, strings.Join(endpointNames[:], ", "))
}

// FaultKind is what goes wrong.
type FaultKind int

// Fault kinds.
const (
	// FaultNone: no fault, answer normally.
	FaultNone FaultKind = iota
	// FaultStatus answers with Fault.Status (500, 502, 503, 429, ...) and,
	// if set, a Retry-After header. 502/503/504 carry an HTML body as a
	// gateway would send it; other codes carry the endpoint's own JSON
	// error shape.
	FaultStatus
	// FaultHang accepts the request and never answers, until the client
	// goes away or the server is closed (a disabled VPC metadata service
	// behaves like this).
	FaultHang
	// FaultReset closes the connection with a TCP RST (SO_LINGER 0)
	// without answering.
	FaultReset
	// FaultMalformedJSON answers 200 application/json with a body that is
	// not valid JSON.
	FaultMalformedJSON
	// FaultTruncatedBody answers 200 with a Content-Length larger than the
	// body actually sent, then closes the connection.
	FaultTruncatedBody
	// FaultMissingAccessToken answers 200 with a token response without
	// access_token (registry: without token and access_token).
	FaultMissingAccessToken
	// FaultMissingExpiration answers 200 with a token response without
	// expiration (IAM) or expires_at (metadata) or expires_in (registry).
	FaultMissingExpiration
	// FaultExpiresIn answers 200 with a token response whose expires_in is
	// Fault.ExpiresIn (0 or negative) and whose expiration agrees with it.
	FaultExpiresIn
	// FaultWrongContentType answers 200 with Content-Type text/html and an
	// HTML page instead of JSON (as an intercepting proxy would).
	FaultWrongContentType
	// FaultSlow answers correctly after Fault.Delay.
	FaultSlow
	// FaultAPIError answers Fault.Status with the endpoint's own error
	// shape carrying Fault.Code and Fault.Message: an IAM error
	// (errorCode/errorMessage), a VPC error (errors[].code/message) or a
	// registry error (errors[].code/message).
	FaultAPIError
	// FaultEcho is a hostile or broken service that echoes the request's
	// secret (the apikey or cr_token form field, or the Authorization
	// header's credential) back, where Fault.Echo says: see EchoModes.
	FaultEcho

	numFaultKinds
)

var faultKindNames = [numFaultKinds]string{
	"none", "status", "hang", "reset", "malformed-json", "truncated-body",
	"missing-access-token", "missing-expiration", "expires-in",
	"wrong-content-type", "slow", "api-error", "echo",
}

// EchoModes are where FaultEcho puts the request's secret:
//
//	status-line  a malformed status line: HTTP/1.1 <secret> Bad
//	header       a malformed header line holding the secret
//	body         the endpoint's error shape, the secret in the message
//	split        half of the secret in the error code, half in the message
//	padded       the message padded so that the secret straddles ~600 and ~800 bytes
//	urlencoded   the secret URL-encoded in the message
//	base64       the secret base64-encoded in the message
//	upper        the secret upper-cased in the message
//	redirect     a 302 whose Location and body carry the secret
var EchoModes = []string{"status-line", "header", "body", "split", "padded", "urlencoded", "base64", "upper", "redirect"}

// String returns the kind's name as used by ParseFault.
func (k FaultKind) String() string {
	if k >= 0 && k < numFaultKinds {
		return faultKindNames[k]
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

// tokenShaped reports whether the kind alters a successful token response
// (and so only applies to requests that would get one).
func (k FaultKind) tokenShaped() bool {
	switch k {
	case FaultMissingAccessToken, FaultMissingExpiration, FaultExpiresIn:
		return true
	}
	return false
}

// Fault describes a failure injected into one endpoint.
type Fault struct {
	// Kind is what goes wrong.
	Kind FaultKind
	// Status is the HTTP status for FaultStatus and FaultAPIError
	// (defaults 500 and 400).
	Status int
	// RetryAfter, if set, is sent as the Retry-After header with
	// FaultStatus and FaultAPIError (e.g. "2").
	RetryAfter string
	// Delay is how long FaultSlow waits before answering (default 2s).
	Delay time.Duration
	// ExpiresIn is the expires_in value for FaultExpiresIn.
	ExpiresIn int
	// Code and Message are the error code and message for FaultAPIError,
	// e.g. "BXNIM0415E", "Provided API key could not be found.".
	Code, Message string
	// Echo is where FaultEcho puts the secret (one of EchoModes; default
	// body).
	Echo string
	// Times applies the fault to the next Times requests it applies to,
	// then clears it; 0 means until cleared.
	Times int
}

// Echo is a FaultEcho fault in mode (one of EchoModes).
func Echo(mode string) Fault { return Fault{Kind: FaultEcho, Echo: mode} }

// HTTPError is a FaultStatus fault answering status.
func HTTPError(status int) Fault { return Fault{Kind: FaultStatus, Status: status} }

// TooManyRequests is a 429 fault with a Retry-After header (empty: none).
func TooManyRequests(retryAfter string) Fault {
	return Fault{Kind: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// APIError is a FaultAPIError fault: the endpoint's native error shape with
// the given status, code and message.
func APIError(status int, code, message string) Fault {
	return Fault{Kind: FaultAPIError, Status: status, Code: code, Message: message}
}

// Hang is a FaultHang fault.
func Hang() Fault { return Fault{Kind: FaultHang} }

// Slow is a FaultSlow fault answering after d.
func Slow(d time.Duration) Fault { return Fault{Kind: FaultSlow, Delay: d} }

// WithTimes returns f applying to the next n requests only.
func (f Fault) WithTimes(n int) Fault { f.Times = n; return f }

// String renders the fault in the syntax ParseFault accepts.
func (f Fault) String() string {
	if f.Kind == FaultNone {
		return "none"
	}
	parts := []string{f.Kind.String()}
	if f.Status != 0 {
		if f.Kind == FaultStatus {
			parts[0] = strconv.Itoa(f.Status)
		} else {
			parts = append(parts, "status="+strconv.Itoa(f.Status))
		}
	}
	if f.RetryAfter != "" {
		parts = append(parts, "retry-after="+f.RetryAfter)
	}
	if f.Delay != 0 {
		parts = append(parts, "delay="+f.Delay.String())
	}
	if f.Kind == FaultExpiresIn {
		parts = append(parts, "value="+strconv.Itoa(f.ExpiresIn))
	}
	if f.Code != "" {
		parts = append(parts, "code="+f.Code)
	}
	if f.Echo != "" {
		parts = append(parts, "echo="+f.Echo)
	}
	if f.Times != 0 {
		parts = append(parts, "times="+strconv.Itoa(f.Times))
	}
	if f.Message != "" {
		parts = append(parts, "message="+f.Message)
	}
	return strings.Join(parts, ",")
}

// ParseFault parses a fault spec: a kind, then comma-separated key=value
// parameters. Kinds: none, hang (alias disabled), reset, malformed-json,
// truncated-body, missing-access-token, missing-expiration, expires-in,
// wrong-content-type, slow, status, api-error (alias iam-error), or a bare
// HTTP status code (503 means "status,status=503"). Parameters: status=N,
// retry-after=S, delay=D (a Go duration), value=N (for expires-in),
// code=C, message=M (for api-error; the message runs to the end of the
// spec, commas included), echo=MODE (for echo: one of EchoModes), times=N.
//
// Examples: "hang", "503,times=2", "429,retry-after=5", "slow,delay=3s",
// "expires-in,value=-1",
// "api-error,status=400,code=BXNIM0415E,message=Provided API key could not be found."
func ParseFault(spec string) (Fault, error) {
	var f Fault
	spec = strings.TrimSpace(spec)
	if spec == "" {
		return f, fmt.Errorf("empty fault spec")
	}
	kind, rest, _ := strings.Cut(spec, ",")
	kind = strings.ToLower(strings.TrimSpace(kind))
	if n, err := strconv.Atoi(kind); err == nil {
		if n < 100 || n > 599 {
			return f, fmt.Errorf("fault %q: HTTP status out of range", spec)
		}
		f.Kind, f.Status = FaultStatus, n
	} else {
		found := false
		for i, name := range faultKindNames {
			if kind == name {
				f.Kind, found = FaultKind(i), true
			}
		}
		switch kind {
		case "clear", "off":
			f.Kind, found = FaultNone, true
		case "disabled": // the VPC metadata service switched off
			f.Kind, found = FaultHang, true
		case "iam-error":
			f.Kind, found = FaultAPIError, true
		}
		if !found {
			return f, fmt.Errorf("fault %q: unknown kind %q (want one of %s, or an HTTP status)", spec, kind, strings.Join(faultKindNames[:], ", "))
		}
	}
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok {
			return f, fmt.Errorf("fault %q: parameter %q is not key=value", spec, kv)
		}
		var err error
		switch k {
		case "status":
			f.Status, err = strconv.Atoi(v)
		case "retry-after", "retry_after":
			f.RetryAfter = v
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		case "value", "expires-in", "expires_in":
			f.ExpiresIn, err = strconv.Atoi(v)
		case "code":
			f.Code = v
		case "echo":
			if !slices.Contains(EchoModes, v) {
				err = fmt.Errorf("want one of %s", strings.Join(EchoModes, ", "))
			}
			f.Echo = v
		case "message":
			// Free text: it takes the rest of the spec.
			f.Message = v
			if rest != "" {
				f.Message += "," + rest
				rest = ""
			}
		case "times":
			f.Times, err = strconv.Atoi(v)
			if err == nil && f.Times < 0 {
				err = fmt.Errorf("negative")
			}
		default:
			return f, fmt.Errorf("fault %q: unknown parameter %q", spec, k)
		}
		if err != nil {
			return f, fmt.Errorf("fault %q: bad %s: %v", spec, k, err)
		}
	}
	return f, nil
}
