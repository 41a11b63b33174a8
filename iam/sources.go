package iam

import (
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

// Default endpoints.
const (
	DefaultIAMURL        = "https://iam.cloud.ibm.com"
	PrivateIAMURL        = "https://private.iam.cloud.ibm.com"
	DefaultMetadataURL   = "http://169.254.169.254"
	DefaultIAMTimeout    = 10 * time.Second
	DefaultMetadataTime  = 3 * time.Second
	metadataConnectLimit = 2 * time.Second
)

// Options are shared by all token sources. Zero values select defaults.
type Options struct {
	// IAMURL is the IAM base URL (DefaultIAMURL).
	IAMURL string
	// MetadataURL is the VPC metadata service base URL (DefaultMetadataURL).
	MetadataURL string
	// MetadataVersion is the metadata API version date, one of
	// MetadataVersions; "" is go-sdk-core's default. When the service does
	// not know the paths of the version asked for (404), the other version's
	// are tried.
	MetadataVersion string
	// Transport carries IAM calls (NewIAMTransport()).
	Transport http.RoundTripper
	// MetadataTransport carries metadata calls (NewMetadataTransport()).
	MetadataTransport http.RoundTripper
	// IAMTimeout bounds one attempt at IAM (DefaultIAMTimeout).
	IAMTimeout time.Duration
	// MetadataTimeout bounds one attempt at the metadata service
	// (DefaultMetadataTime): a disabled service never answers.
	MetadataTimeout time.Duration
	// MaxAttempts bounds tries per call (DefaultMaxAttempts).
	MaxAttempts int
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.IAMURL == "" {
		o.IAMURL = DefaultIAMURL
	}
	o.IAMURL = strings.TrimRight(o.IAMURL, "/")
	if o.MetadataURL == "" {
		o.MetadataURL = DefaultMetadataURL
	}
	o.MetadataURL = strings.TrimRight(o.MetadataURL, "/")
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
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

var quietSDK sync.Once

// silenceSDK routes go-sdk-core's logger away from stdout, which carries the
// plugin's response, and keeps it quiet: its messages would add lines to the
// one-line error the kubelet logs. Errors are reported by this package.
func silenceSDK() {
	quietSDK.Do(func() {
		core.SetLogger(core.NewLogger(core.LevelNone, log.New(io.Discard, "", 0), log.New(io.Discard, "", 0)))
	})
}

// APIKeySource exchanges an IAM API key for access tokens
// (grant_type=urn:ibm:params:oauth:grant-type:apikey). Safe for concurrent
// use.
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
// (IAM is far away; a slow answer is not a disabled service).
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
	}
}

// Token obtains a new token from IAM.
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

// Describe names the identity for logs.
func (s *APIKeySource) Describe() string {
	return "API key from " + s.origin + " (fingerprint " + secret.Fingerprint(s.apiKey) + ")"
}

func (s *APIKeySource) fix(e *Error) {
	switch e.Reason {
	case ReasonRejected:
		switch e.Code {
		case "BXNIM0415E":
			e.Fix = "the API key in " + s.origin + " does not exist (deleted, mistyped, or from another account): create one with 'ibmcloud iam service-api-key-create NAME SERVICE_ID' and put it there"
		case "BXNIM0416E", "BXNIM0417E":
			e.Fix = "the API key in " + s.origin + " is locked or its owner is disabled: use another key or re-enable it"
		default:
			e.Fix = "check the API key in " + s.origin + " and the IAM URL " + s.opts.IAMURL
		}
	case ReasonNotSupported:
		e.Fix = "IAM URL " + s.opts.IAMURL + " does not serve /identity/token: check --iam-url"
	default:
		e.Fix = fixForTransient(e)
	}
}

// fixForTransient is the remedy for failures that are not the identity's
// fault: network, rate limits, outages, of the service e names.
func fixForTransient(e *Error) string {
	switch e.Reason {
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
