package iam

import (
	"cmp"
	"context"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

const (
	DefaultIAMURL        = "https://iam.cloud.ibm.com"
	PrivateIAMURL        = "https://private.iam.cloud.ibm.com"
	DefaultMetadataURL   = "http://169.254.169.254"
	DefaultIAMTimeout    = 10 * time.Second
	DefaultMetadataTime  = 3 * time.Second
	metadataConnectLimit = 2 * time.Second
)

// Options are shared by all token sources. Zero values select the defaults
// in parentheses.
type Options struct {
	IAMURL      string // IAM base URL (DefaultIAMURL)
	MetadataURL string // VPC metadata service base URL (DefaultMetadataURL)
	// MetadataVersion is one of MetadataVersions ("": go-sdk-core's default);
	// if the service does not know its paths (404), the other's are tried.
	MetadataVersion   string
	Transport         http.RoundTripper // IAM calls (NewIAMTransport())
	MetadataTransport http.RoundTripper // metadata calls (NewMetadataTransport())
	IAMTimeout        time.Duration     // one attempt at IAM (DefaultIAMTimeout)
	// MetadataTimeout bounds one attempt at the metadata service
	// (DefaultMetadataTime): a disabled service never answers.
	MetadataTimeout time.Duration
	MaxAttempts     int              // tries per call (DefaultMaxAttempts)
	Now             func() time.Time // the clock (time.Now)
}

func (o Options) withDefaults() Options {
	o.IAMURL = strings.TrimRight(cmp.Or(o.IAMURL, DefaultIAMURL), "/")
	o.MetadataURL = strings.TrimRight(cmp.Or(o.MetadataURL, DefaultMetadataURL), "/")
	if o.Transport == nil {
		o.Transport = NewIAMTransport()
	}
	if o.MetadataTransport == nil {
		o.MetadataTransport = NewMetadataTransport(metadataConnectLimit)
	}
	if o.IAMTimeout <= 0 {
		o.IAMTimeout = DefaultIAMTimeout
	}
	if o.MetadataTimeout <= 0 {
		o.MetadataTimeout = DefaultMetadataTime
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// silenceSDK keeps go-sdk-core's logger off stdout, which carries the
// plugin's response, and quiet: it would add lines to the one-line error the
// kubelet logs. This package reports errors itself.
var silenceSDK = sync.OnceFunc(func() {
	core.SetLogger(core.NewLogger(core.LevelNone, log.New(io.Discard, "", 0), log.New(io.Discard, "", 0)))
})

// APIKeySource exchanges an IAM API key for access tokens (grant type
// urn:ibm:params:oauth:grant-type:apikey). Safe for concurrent use.
type APIKeySource struct {
	apiKey string
	origin string
	opts   Options
	c      caller
}

// NewAPIKeySource returns a source for apiKey, which it adds to the
// process's secret set. origin says where the key came from (a file name,
// "IBMCLOUD_API_KEY") for messages; it is not a secret.
func NewAPIKeySource(apiKey, origin string, opts Options) *APIKeySource {
	secret.Add(apiKey)
	opts = opts.withDefaults()
	s := &APIKeySource{apiKey: apiKey, origin: origin, opts: opts}
	s.c = iamCaller(opts, s.fix)
	return s
}

// iamCaller is the caller for IAM's token endpoint: timeouts are retried
// (a slow IAM is not a disabled service).
func iamCaller(opts Options, fix func(*Error)) caller {
	return caller{
		service:        "IAM",
		endpoint:       opts.IAMURL,
		transport:      opts.Transport,
		attemptTimeout: opts.IAMTimeout,
		maxAttempts:    opts.MaxAttempts,
		retryTimeouts:  true,
		now:            opts.Now,
		fix:            fix,
		sleep:          sleepCtx,
	}
}

func (s *APIKeySource) Token(ctx context.Context) (token.Token, error) {
	silenceSDK()
	return s.c.run(ctx, "exchange the API key from "+s.origin+" for a token", func(client *http.Client) (*core.IamTokenServerResponse, error) {
		a := &core.IamAuthenticator{ApiKey: s.apiKey, URL: s.opts.IAMURL, Client: client}
		return a.RequestToken()
	})
}

// CacheKey identifies the API key by its fingerprint and the IAM endpoint;
// it holds no secret.
func (s *APIKeySource) CacheKey() string {
	return "apikey\x00" + s.opts.IAMURL + "\x00" + secret.Fingerprint(s.apiKey)
}

func (s *APIKeySource) Describe() string {
	return "API key from " + s.origin + " (fingerprint " + secret.Fingerprint(s.apiKey) + ")"
}

func (s *APIKeySource) fix(e *Error) {
	switch {
	case e.Reason != ReasonRejected:
		e.Fix = fixForTransient(e)
	case e.Code == "BXNIM0415E":
		e.Fix = "the API key in " + s.origin + " does not exist (deleted, mistyped, or from another account): create one with 'ibmcloud iam service-api-key-create NAME SERVICE_ID' and put it there"
	case e.Code == "BXNIM0416E", e.Code == "BXNIM0417E":
		e.Fix = "the API key in " + s.origin + " is locked or its owner is disabled: use another key or re-enable it"
	default:
		e.Fix = "check the API key in " + s.origin + " and the IAM URL " + s.opts.IAMURL
	}
}

// fixForTransient is the remedy for failures that are not the identity's
// fault: network, rate limits, outages; and an IAM URL without IAM's token
// endpoint (the VPC source words its own).
func fixForTransient(e *Error) string {
	switch e.Reason {
	case ReasonNotSupported:
		return "IAM URL " + e.Endpoint + " does not serve /identity/token: check --iam-url"
	case ReasonTimeout, ReasonUnreachable:
		return "check the node's network path to " + e.Endpoint + " (firewall, DNS, HTTPS_PROXY/NO_PROXY in the kubelet's environment); nodes without public egress need --private-endpoints"
	case ReasonRateLimited:
		return "too many token requests from this account or node; make sure --cache-dir is writable so that invocations share one token, then retry"
	case ReasonUnavailable:
		return e.Service + " is failing; image pulls recover when it does (https://cloud.ibm.com/status) and a cached token is served meanwhile while one is valid"
	case ReasonMalformed:
		return "the answer was not a valid token response; if it persists, check for a proxy that rewrites or cuts HTTPS answers"
	case ReasonDeadline:
		return e.Service + " was too slow for the kubelet's time limit; check the network path to " + e.Endpoint
	case ReasonInternal:
		return "this is a bug in the plugin; please report it with this message"
	}
	return "retry; if it persists, run 'icr-credential-provider doctor'"
}
