package iam

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// maxBody bounds every answer read (token answers are a few KiB);
// maxKeptBody what is kept of it for the diagnosis and for finding tokens.
const (
	maxBody     = 1 << 20
	maxKeptBody = 16 << 10
)

// dialVet, when set, vets every address this package's transports dial.
var dialVet atomic.Pointer[func(network, addr string) error]

// RestrictDials makes every transport built by this package refuse the
// addresses vet returns an error for, before anything is sent. Test binaries
// use it (RunLoopbackOnly) so that a test that forgets an endpoint fails
// instead of reaching the default metadata address.
func RestrictDials(vet func(network, addr string) error) { dialVet.Store(&vet) }

// dialer dials for this package's transports, through dialVet if set.
func dialer(timeout, keepAlive time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: keepAlive}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if vet := dialVet.Load(); vet != nil {
			if err := (*vet)(network, addr); err != nil {
				return nil, err
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// TestingM is the part of *testing.M that RunLoopbackOnly uses.
type TestingM interface{ Run() int }

// RunLoopbackOnly runs a package's tests (from TestMain) with every dial of
// this package's transports restricted to loopback addresses, and fails the
// run if any test tried another address.
func RunLoopbackOnly(m TestingM) int {
	var mu sync.Mutex
	var tried []string
	RestrictDials(func(network, addr string) error {
		// (ParseIP's nil for a name is no loopback address.)
		if host, _, err := net.SplitHostPort(addr); err == nil && (host == "localhost" || net.ParseIP(host).IsLoopback()) {
			return nil
		}
		mu.Lock()
		tried = append(tried, addr)
		mu.Unlock()
		return fmt.Errorf("dial %s %s: tests may only reach loopback addresses", network, addr)
	})
	code := m.Run()
	if len(tried) > 0 {
		fmt.Printf("FAIL: tests dialled addresses other than loopback: %s (give every test its own endpoint URLs)\n", strings.Join(tried, ", "))
		return 1
	}
	return code
}

// NewIAMTransport returns the transport for IAM: proxies from the
// environment the plugin inherits from the kubelet (HTTPS_PROXY, NO_PROXY,
// …), TLS 1.2 or later, bounded dial and handshake times; system TLS roots
// load on the first handshake. The rest is http.DefaultTransport's settings
// written out: cloning it would set up HTTP/2 in every invocation, even
// those that call no IAM (the warm path); this one does on its first request.
func NewIAMTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer(5*time.Second, 30*time.Second),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: 1 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
	}
}

// NewMetadataTransport returns the transport for the link-local VPC metadata
// service: never through a proxy (a proxy cannot reach 169.254.169.254 and
// would leak the instance identity token), and a short connect timeout
// because a disabled metadata service accepts nothing and answers nothing.
func NewMetadataTransport(connectTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer(connectTimeout, 0),
		ResponseHeaderTimeout: 0, // bounded by the per-attempt client timeout
		MaxIdleConns:          2,
		IdleConnTimeout:       10 * time.Second,
		DisableCompression:    true,
	}
}

// exchange records what happened on the wire during one SDK call, so that
// errors are classified from facts rather than the SDK's message strings.
type exchange struct {
	mu sync.Mutex
	observed
}

// observed is the last request's path, and its answer or error.
type observed struct {
	path    string
	status  int
	header  http.Header
	netErr  error
	bodyErr error
	body    []byte
}

func (x *exchange) snapshot() observed {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.observed // a later append to body does not show in the copy
}

// recordingTransport binds a context to every request the SDK makes (the
// SDK's RequestToken takes no context) and records the exchange.
type recordingTransport struct {
	ctx  context.Context
	base http.RoundTripper
	x    *exchange
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.WithContext(t.ctx)
	// go-sdk-core passes the instance identity token it obtained as a
	// bearer token: whatever is said about this request must not show it.
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		secret.Add(tok)
	}
	resp, err := t.base.RoundTrip(req)
	t.x.mu.Lock()
	defer t.x.mu.Unlock()
	t.x.observed = observed{path: req.URL.Path, netErr: err}
	if err != nil {
		return nil, err
	}
	t.x.status, t.x.header = resp.StatusCode, resp.Header.Clone()
	resp.Body = &recordingBody{ReadCloser: resp.Body, r: io.LimitReader(resp.Body, maxBody), x: t.x}
	return resp, nil
}

type recordingBody struct {
	io.ReadCloser // the body, closed as is
	r             io.Reader
	x             *exchange
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.x.mu.Lock()
	if len(b.x.body) < maxKeptBody {
		room := maxKeptBody - len(b.x.body)
		b.x.body = append(b.x.body, p[:min(n, room)]...)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.x.bodyErr = err
	}
	b.x.mu.Unlock()
	return n, err
}

// clientFor returns an http.Client for one attempt of one SDK call; ctx
// bounds the attempt (the SDK's calls take no context of their own).
func clientFor(ctx context.Context, base http.RoundTripper) (*http.Client, *exchange) {
	x := &exchange{}
	return &http.Client{
		Transport: &recordingTransport{ctx: ctx, base: base, x: x},
		// Token endpoints never redirect; following one could send a
		// secret somewhere unexpected.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, x
}
