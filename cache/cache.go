// Package cache keeps IAM tokens until shortly before they expire, so that a
// node asks IAM for one token per token lifetime however often, and however
// concurrently, the kubelet runs the plugin.
//
// Two token.Source wrappers, in the shape of oauth2's ReuseTokenSource:
// Reuse, one in-process go-cache keyed by identity; and File, shared by every
// process of the node: an entry and a flock(2)ed lock file per identity in a
// cache directory (one call to the source for a cold cache hit by many
// processes), the record of a failed refresh, stale-if-error. New composes
// them. The disk is an optimisation, never a reason to fail: an unusable
// directory degrades to memory with one warning. Everything on disk is
// checked before it is trusted, because the plugin runs as root.
package cache

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	gocache "github.com/patrickmn/go-cache"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

const (
	// DefaultStaleMinRemaining is the least remaining life a cached token
	// must have to be served when refreshing it failed (stale-if-error): one
	// about to expire would fail the pull anyway, and the error says why.
	DefaultStaleMinRemaining = time.Minute
	// StaleRefreshBudget bounds a refresh when a cached token could be served
	// if it failed, so that a hung IAM delays the pull by this much only.
	StaleRefreshBudget = 5 * time.Second
	// DefaultLockWait is the longest wait for another process or goroutine
	// already refreshing the same identity before calling the source itself.
	DefaultLockWait = 20 * time.Second
	// lockSafetySlice is the part of the context's remaining time (at most
	// half of it) that waiting for the lock leaves for the caller's own call.
	lockSafetySlice = 10 * time.Second
)

// ErrInvalidToken is returned when the wrapped source succeeds but
// yields a token that is empty or already expired.
var ErrInvalidToken = errors.New("token source returned an empty or expired token")

// Options configure the caching layers. The zero value is usable: the
// process's memory only, real clock, defaults for the rest.
type Options struct {
	Dir    string           // the disk cache directory, created 0700; "": memory only
	Memory *Memory          // the in-process store; nil: the process's own
	Now    func() time.Time // judges freshness (time.Now); lock waits use the real clock
	Ahead  time.Duration    // the file layer refreshes this long before the refresh point
	// StaleMinRemaining overrides DefaultStaleMinRemaining; negative
	// disables stale-if-error.
	StaleMinRemaining time.Duration
	// LockWait overrides DefaultLockWait. The wait also ends 10 s (at most
	// half the time left) before the context's deadline; the source is then
	// called directly.
	LockWait time.Duration
	// Logger gets warnings (V(0)) and diagnostics (V(2), V(4)), never a
	// secret; without a sink, klog.Background().
	Logger klog.Logger
}

func (o Options) withDefaults() Options {
	o.Memory = cmp.Or(o.Memory, process)
	o.StaleMinRemaining = cmp.Or(o.StaleMinRemaining, DefaultStaleMinRemaining)
	if o.Now == nil {
		o.Now = time.Now
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
	FromSource Origin = iota // the wrapped source was called
	FromMemory               // the process's memory held it
	FromDisk                 // the on-disk cache held it, maybe from another process
)

func (o Origin) String() string {
	switch o {
	case FromMemory:
		return "memory"
	case FromDisk:
		return "disk"
	}
	return "source"
}

// Result is a token handed out by Fetch and how it was obtained.
type Result struct {
	Token  token.Token // its AccessToken is a secret: never log it
	Origin Origin      // the layer it came from
	// Stale: Token is valid but past its refresh point, served only because
	// refreshing failed (stale-if-error); let it be reused only briefly.
	Stale      bool
	RefreshErr error // the refresh error behind a stale token
}

// Fetcher is a caching source that says where its tokens came from.
type Fetcher interface {
	token.Source
	Fetch(ctx context.Context) (Result, error)
}

// New returns the caching source the plugin uses for src: the process's
// memory, then the file layer in opts.Dir, then src. key identifies the
// identity (equal keys must yield interchangeable tokens); only its SHA-256
// is stored. New does no I/O and starts no goroutine.
func New(src token.Source, key string, opts Options) *Reused {
	return Reuse(NewFile(src, key, opts), key, opts)
}

func hashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Memory is an in-process token store: fresh tokens for Reuse, and the file
// layer's record without a usable directory. Safe for concurrent use.
type Memory struct{ c *gocache.Cache }

func NewMemory() *Memory {
	// No janitor goroutine: expired items are dropped on Get.
	return &Memory{c: gocache.New(gocache.NoExpiration, 0)}
}

// process is the process's memory: Options.Memory when nil.
var process = NewMemory()

func (m *Memory) token(hash string) (token.Token, bool) {
	v, _ := m.c.Get("token/" + hash)
	t, ok := v.(token.Token)
	return t, ok
}

// setToken keeps t until its expiry by the real clock; readers still judge
// freshness by theirs.
func (m *Memory) setToken(hash string, t token.Token, now time.Time) {
	if ttl := t.Expiry.Sub(now); ttl > 0 {
		m.c.Set("token/"+hash, t, ttl)
	}
}

// Reused is the in-process layer: a token still fresh in the process's
// memory is served from there; anything else is asked of the wrapped
// source, and a fresh token it hands out is kept. Safe for concurrent use.
type Reused struct {
	src  Fetcher
	hash string
	o    Options
}

var _ Fetcher = (*Reused)(nil)

// Reuse wraps src, normally a *File, with the process's memory.
func Reuse(src Fetcher, key string, opts Options) *Reused {
	return &Reused{src: src, hash: hashKey(key), o: opts.withDefaults()}
}

// Token returns a fresh token, or a stale one if refreshing failed and
// stale-if-error applies; use Fetch to tell the two apart.
func (r *Reused) Token(ctx context.Context) (token.Token, error) { return tokenOf(r.Fetch(ctx)) }

func tokenOf(r Result, err error) (token.Token, error) { return r.Token, err }

// Fetch is Token with the details (Result).
func (r *Reused) Fetch(ctx context.Context) (Result, error) {
	if t, ok := r.o.Memory.token(r.hash); ok && t.Fresh(r.o.Now().Add(r.o.Ahead)) {
		r.o.Logger.V(4).Info("Using the cached token", "from", FromMemory.String())
		return Result{Token: t, Origin: FromMemory}, nil
	}
	res, err := r.src.Fetch(ctx)
	if err == nil && !res.Stale && res.Token.Fresh(r.o.Now()) {
		r.o.Memory.setToken(r.hash, res.Token, r.o.Now())
	}
	return res, err
}
