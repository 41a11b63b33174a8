// Package cache keeps IAM tokens until shortly before they expire, so that a
// node asks IAM for one token per token lifetime however often, and however
// concurrently, the kubelet runs the plugin.
//
// It is made of two token.Source wrappers, in the shape of oauth2's
// ReuseTokenSource:
//
//   - Reuse, the in-process layer: one go-cache (github.com/patrickmn/go-cache)
//     for the whole process, keyed by identity, serves a fresh token without
//     touching anything else;
//   - File, the layer shared by every process of the node: a file per
//     identity in a cache directory, a flock(2) on a lock file per identity
//     so that a cold cache hit by many processes at once causes a single
//     call to the wrapped source, the record of a failed refresh (so that
//     an outage is not retried by every invocation), stale-if-error, and
//     atomic, checked files. Without a usable directory the same layer keeps
//     its record in the process's memory instead.
//
// New composes them: Reuse(NewFile(src)). The disk is an optimisation, never
// a reason to fail: an unusable directory or a failed write degrades to
// memory with one warning. Everything on disk is checked before it is
// trusted, because the plugin runs as root. The package knows nothing about
// IBM Cloud; it only sees token.Token's expiry.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	gocache "github.com/patrickmn/go-cache"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// DefaultStaleMinRemaining is the least remaining life a cached token must
// have to be served when refreshing it failed (stale-if-error). Less than
// this and the caller gets the refresh error instead: a token about to expire
// would fail the pull anyway, and the error says why.
const DefaultStaleMinRemaining = time.Minute

// StaleRefreshBudget bounds a refresh when a cached token could still be
// served if it failed: a hung IAM then delays the pull by this much, not by
// the invocation's whole time limit, before the cached token is used.
const StaleRefreshBudget = 5 * time.Second

// DefaultLockWait is how long a caller waits, at most, for another process
// or goroutine that is already refreshing the same identity's token before
// it calls its source itself. The context's deadline shortens it (see
// Options.LockWait).
const DefaultLockWait = 20 * time.Second

// lockSafetySlice is the part of the context's remaining time that waiting
// for the lock never uses, so that a caller which gives up waiting still has
// time for its own call to the source. It shrinks to half the remaining time
// for short deadlines.
const lockSafetySlice = 10 * time.Second

// ErrInvalidToken is returned when the wrapped source succeeds but
// yields a token that is empty or already expired.
var ErrInvalidToken = errors.New("token source returned an empty or expired token")

// Options configure the caching layers. The zero value is usable: the
// process's memory only, real clock, defaults for the rest.
type Options struct {
	// Dir is the on-disk cache directory, created 0700 if missing. "" keeps
	// the file layer's record in memory.
	Dir string
	// Memory is the in-process store; nil means the process's own (one for
	// the whole process, so that every caching source of the same identity
	// shares it). Tests give each simulated process its own.
	Memory *Memory
	// Now is the clock used to judge token freshness; default time.Now.
	// Waiting for locks uses the real clock and the context.
	Now func() time.Time
	// Ahead makes the file layer refresh a token this long before its
	// refresh point: a refresher running ahead of the plugin (the node
	// agent) keeps the shared cache fresh so that the plugin never waits.
	Ahead time.Duration
	// StaleMinRemaining is the least remaining life a valid but not fresh
	// token needs to be served when refreshing fails; default
	// DefaultStaleMinRemaining. A negative value disables stale-if-error.
	StaleMinRemaining time.Duration
	// LockWait bounds the wait for a refresh already in progress elsewhere;
	// default DefaultLockWait. The wait also ends a safety slice before the
	// context's deadline (10 s, or half the remaining time if that is less),
	// after which the source is called directly rather than failing.
	LockWait time.Duration
	// Logger receives warnings (V(0)) and diagnostics (V(2), V(4)). A Logger
	// without a sink (the zero value, and logr.Discard()) means
	// klog.Background(). No secret is ever passed to it.
	Logger klog.Logger
}

func (o Options) withDefaults() Options {
	if o.Memory == nil {
		o.Memory = process
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StaleMinRemaining == 0 {
		o.StaleMinRemaining = DefaultStaleMinRemaining
	}
	if o.LockWait <= 0 {
		o.LockWait = DefaultLockWait
	}
	if o.Logger.GetSink() == nil {
		o.Logger = klog.Background()
	}
	o.Logger = o.Logger.WithName("token-cache")
	return o
}

// Origin says where a token handed out by a caching source came from.
type Origin int

const (
	// FromSource means the wrapped source was called for this token.
	FromSource Origin = iota
	// FromMemory means the process's memory held the token.
	FromMemory
	// FromDisk means the on-disk cache held the token, possibly written by
	// another process.
	FromDisk
)

// String returns "source", "memory" or "disk".
func (o Origin) String() string {
	switch o {
	case FromMemory:
		return "memory"
	case FromDisk:
		return "disk"
	default:
		return "source"
	}
}

// Result is a token handed out by Fetch and how it was obtained.
type Result struct {
	// Token is the token. Its AccessToken is a secret: never log it.
	Token token.Token
	// Origin is the layer the token came from.
	Origin Origin
	// Stale is true when Token is valid but past its refresh point and is
	// served only because refreshing it failed (stale-if-error). Callers
	// should let it be reused only briefly (e.g. a short cacheDuration).
	Stale bool
	// RefreshErr is the refresh error that made a stale token be served; it
	// is nil unless Stale.
	RefreshErr error
}

// Fetcher is a caching source that says where its tokens came from.
type Fetcher interface {
	token.Source
	Fetch(ctx context.Context) (Result, error)
}

// New returns the caching source the plugin uses for src: the process's
// memory, then the file layer in opts.Dir, then src. key identifies the
// identity (two sources with the same key must yield interchangeable
// tokens); it is hashed (SHA-256) and never stored in clear. New does no
// I/O and starts no goroutine.
func New(src token.Source, key string, opts Options) *Reused {
	return Reuse(NewFile(src, key, opts), key, opts)
}

// hashKey is the hex SHA-256 of an identity's key: file names and memory
// keys.
func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Memory is an in-process token store: fresh tokens by identity for Reuse,
// and the file layer's record when it has no usable directory. It is safe
// for concurrent use.
type Memory struct{ c *gocache.Cache }

// NewMemory returns an empty store.
func NewMemory() *Memory {
	// No janitor (cleanup interval 0): no goroutine; freshness is checked
	// on every read anyway, and expired items are dropped on Get.
	return &Memory{c: gocache.New(gocache.NoExpiration, 0)}
}

// process is the process's memory: Options.Memory when nil.
var process = NewMemory()

func (m *Memory) token(hash string) (token.Token, bool) {
	v, ok := m.c.Get("token/" + hash)
	if !ok {
		return token.Token{}, false
	}
	t, ok := v.(token.Token)
	return t, ok
}

// setToken keeps t until its expiry (go-cache measures that with the real
// clock; freshness is still judged by the caller's clock on every read).
func (m *Memory) setToken(hash string, t token.Token, now time.Time) {
	if ttl := t.Expiry.Sub(now); ttl > 0 {
		m.c.Set("token/"+hash, t, ttl)
	}
}

// Reused is the in-process layer: a token still fresh in the process's
// memory is served from there; anything else is asked of the wrapped
// source, and a fresh token it hands out is kept. Safe for concurrent use.
type Reused struct {
	src  token.Source
	hash string
	o    Options
}

var _ Fetcher = (*Reused)(nil)

// Reuse wraps src, normally a *File, with the process's memory.
func Reuse(src token.Source, key string, opts Options) *Reused {
	return &Reused{src: src, hash: hashKey(key), o: opts.withDefaults()}
}

// Token returns a fresh token, or a stale one if refreshing failed and
// stale-if-error applies; use Fetch to tell the two apart.
func (r *Reused) Token(ctx context.Context) (token.Token, error) {
	res, err := r.Fetch(ctx)
	return res.Token, err
}

// Fetch is Token with the details: which layer answered, and whether the
// token is stale.
func (r *Reused) Fetch(ctx context.Context) (Result, error) {
	if t, ok := r.o.Memory.token(r.hash); ok && r.fresh(t, r.o.Now()) {
		r.o.Logger.V(4).Info("Using the cached token", "from", FromMemory.String())
		return Result{Token: t, Origin: FromMemory}, nil
	}
	var res Result
	var err error
	if f, ok := r.src.(Fetcher); ok {
		res, err = f.Fetch(ctx)
	} else {
		res.Token, err = r.src.Token(ctx)
	}
	if err == nil && !res.Stale && res.Token.Fresh(r.o.Now()) {
		r.o.Memory.setToken(r.hash, res.Token, r.o.Now())
	}
	return res, err
}

// fresh is token.Fresh, Ahead of time.
func (r *Reused) fresh(t token.Token, now time.Time) bool { return t.Fresh(now.Add(r.o.Ahead)) }
