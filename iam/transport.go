package iam

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxBody bounds every answer read from IAM or the metadata service; real
// token answers are a few kilobytes.
const maxBody = 1 << 20

// maxErrorBody bounds what is kept of a non-2xx answer for the diagnosis.
const maxErrorBody = 16 << 10

// NewIAMTransport returns the transport for IAM: proxies from the
// environment (HTTPS_PROXY, NO_PROXY, … that the plugin inherits from the
// kubelet), TLS 1.2 or later, bounded dial and handshake times. System TLS
// roots are loaded lazily on the first handshake, so building it is cheap.
func NewIAMTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 5 * time.Second
	t.ResponseHeaderTimeout = 10 * time.Second
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	return t
}

// NewMetadataTransport returns the transport for the link-local VPC metadata
// service: never through a proxy (a proxy cannot reach 169.254.169.254 and
// would leak the instance identity token), and a short connect timeout
// because a disabled metadata service accepts nothing and answers nothing.
func NewMetadataTransport(connectTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: connectTimeout}).DialContext,
		ResponseHeaderTimeout: 0, // bounded by the per-attempt client timeout
		MaxIdleConns:          2,
		IdleConnTimeout:       10 * time.Second,
		DisableCompression:    true,
	}
}

// exchange records what happened on the wire during one SDK call, so that
// errors are classified from facts (status, headers, network error, error
// body) rather than from the SDK's message strings.
type exchange struct {
	mu        sync.Mutex
	path      string
	status    int
	header    http.Header
	netErr    error
	bodyErr   error
	errorBody []byte
}

func (x *exchange) snapshot() (path string, status int, header http.Header, netErr, bodyErr error, errorBody []byte) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.path, x.status, x.header, x.netErr, x.bodyErr, append([]byte(nil), x.errorBody...)
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
	resp, err := t.base.RoundTrip(req)
	t.x.mu.Lock()
	defer t.x.mu.Unlock()
	t.x.path = req.URL.Path
	t.x.status, t.x.header, t.x.netErr, t.x.bodyErr, t.x.errorBody = 0, nil, nil, nil, nil
	if err != nil {
		t.x.netErr = err
		return nil, err
	}
	t.x.status = resp.StatusCode
	t.x.header = resp.Header.Clone()
	keep := resp.StatusCode < 200 || resp.StatusCode > 299
	resp.Body = &recordingBody{r: io.LimitReader(resp.Body, maxBody), c: resp.Body, x: t.x, keep: keep}
	return resp, nil
}

type recordingBody struct {
	r    io.Reader
	c    io.Closer
	x    *exchange
	keep bool
}

func (b *recordingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.x.mu.Lock()
	if b.keep && len(b.x.errorBody) < maxErrorBody {
		room := maxErrorBody - len(b.x.errorBody)
		b.x.errorBody = append(b.x.errorBody, p[:min(n, room)]...)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		b.x.bodyErr = err
	}
	b.x.mu.Unlock()
	return n, err
}

func (b *recordingBody) Close() error { return b.c.Close() }

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
