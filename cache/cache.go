// Package cache keeps IAM tokens until shortly before they expire, so that a
// node asks IAM for one token per token lifetime however often, and however
// concurrently, the kubelet runs the plugin.
//
// A Source wraps any iam.TokenSource and looks in three places, in order:
// memory (github.com/patrickmn/go-cache, for the life of the process), a file
// on disk (shared by all invocations on the node), and only then the wrapped
// source. On a miss, processes take an exclusive flock(2) on a per-identity
// lock file and re-read the entry before calling the source, so a cold cache
// hit by many processes at once causes a single call.
//
// The disk layer is an optimisation, never a reason to fail: an unusable
// directory or a failed write degrades to the memory layer with one warning.
// Everything on disk is checked before it is trusted, because the plugin
// runs as root. The package knows nothing about IBM Cloud; it only sees
// iam.Token's expiry.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	gocache "github.com/patrickmn/go-cache"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
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

// DefaultLockWait is how long a Source waits, at most, for another process or
// goroutine that is already refreshing the same identity's token before it
// calls its source itself. The context's deadline shortens it (see
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

// Options configure a caching source. The zero value is usable: in-process
// cache only, real clock, defaults for the rest.
type Options struct {
	// Dir is the on-disk cache directory, created 0700 if missing. "" disables
	// the disk layer (in-process cache only).
	Dir string
	// Now is the clock used to judge token freshness; default time.Now.
	// Waiting for locks always uses the real clock and the context.
	Now func() time.Time
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

// Origin says where a token handed out by a Source came from.
type Origin int

const (
	// FromSource means the wrapped source was called for this token.
	FromSource Origin = iota
	// FromMemory means the in-process cache held the token.
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

// Result is a token handed out by Source.Fetch and how it was obtained.
type Result struct {
	// Token is the token. Its AccessToken is a secret: never log it.
	Token iam.Token
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

// Source is a caching iam.TokenSource. It is safe for concurrent use, and
// separate processes using the same Dir and key cooperate through the disk.
type Source struct {
	src      iam.TokenSource
	hash     string // hex SHA-256 of the key: file names and memory key
	dir      string
	now      func() time.Time
	staleMin time.Duration
	lockWait time.Duration
	log      klog.Logger
	mem      *gocache.Cache
	sem      chan struct{} // one refresh at a time in this process
	failMu   sync.Mutex
	memFail  failure     // the last failed refresh in this process, if any
	diskOff  atomic.Bool // the disk layer was found unusable
	warned   atomic.Bool // the one disk warning was logged
	sys      sysOps
}

var _ iam.TokenSource = (*Source)(nil)

// New returns a Source that serves src's tokens from memory, then from disk,
// and calls src only when the cached token is not fresh (iam.Token.Fresh).
// key identifies the identity, normally iam.Identity.CacheKey(); two sources
// with the same key must yield interchangeable tokens. The key is hashed
// (SHA-256) for file names and never stored in clear.
//
// New does no I/O and starts no goroutine; the directory is checked on first
// use.
func New(src iam.TokenSource, key string, opts Options) *Source {
	sum := sha256.Sum256([]byte(key))
	s := &Source{
		src:      src,
		hash:     hex.EncodeToString(sum[:]),
		dir:      opts.Dir,
		now:      opts.Now,
		staleMin: opts.StaleMinRemaining,
		lockWait: opts.LockWait,
		log:      opts.Logger,
		// No janitor (cleanup interval 0): no goroutine; freshness is
		// checked on every read anyway.
		mem: gocache.New(gocache.NoExpiration, 0),
		sem: make(chan struct{}, 1),
		sys: realSys,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.staleMin == 0 {
		s.staleMin = DefaultStaleMinRemaining
	}
	if s.lockWait <= 0 {
		s.lockWait = DefaultLockWait
	}
	if s.log.GetSink() == nil {
		s.log = klog.Background()
	}
	s.log = s.log.WithName("token-cache")
	return s
}

// Token returns a fresh token, or a stale one if refreshing failed and
// stale-if-error applies; use Fetch to tell the two apart. It implements
// iam.TokenSource.
func (s *Source) Token(ctx context.Context) (iam.Token, error) {
	r, err := s.Fetch(ctx)
	return r.Token, err
}

// Fetch is Token with the details: which layer answered and whether the
// token is stale. On a stale-if-error answer the error is nil, Result.Stale
// is true and Result.RefreshErr holds the refresh error; the failure is also
// logged as a warning. Otherwise the source's error is returned unchanged,
// so errors.Is and errors.As see it.
//
// A failed refresh holds back further calls to the source, in this process
// and in every process sharing Dir: for OutageBackoff a still-valid token is
// served as stale at once (RefreshErr is then a *RecentFailureError), and
// for FailureBackoff, when there is no token to serve, Fetch fails at once
// with a *RecentFailureError. A successful refresh ends it.
func (s *Source) Fetch(ctx context.Context) (Result, error) {
	now := s.now()
	var best candidate
	var fail failure
	if t, ok := s.memGet(); ok {
		if t.Fresh(now) {
			return Result{Token: t, Origin: FromMemory}, nil
		}
		best.consider(t, FromMemory)
	}
	fail.consider(s.memFailure())

	dirfd := -1
	if s.dir != "" && !s.diskOff.Load() {
		dirfd = s.openDir()
	}
	if dirfd >= 0 {
		defer closeFd(dirfd)
		switch rec, state, reason := s.readRecord(dirfd); state {
		case entryOK:
			if rec.tok.Fresh(now) {
				return s.served(rec.tok, FromDisk), nil
			}
			best.consider(rec.tok, FromDisk)
			fail.consider(rec.fail)
		case entryUntrusted, entryUnreadable:
			s.log.V(2).Info("Ignoring token cache entry", "file", s.entryName(), "reason", reason)
		}
	}
	if r, err, ok := s.backedOff(best, fail, now); ok {
		return r, err
	}

	deadline := s.lockDeadline(ctx)
	if !s.acquire(ctx, deadline) {
		s.log.V(2).Info("Gave up waiting for a token refresh in this process; calling the token source directly")
		return s.refresh(ctx, dirfd, best, false)
	}
	defer func() { <-s.sem }()

	// Another goroutine may have refreshed, or failed to, while we waited.
	now = s.now()
	if t, ok := s.memGet(); ok && t.Fresh(now) {
		return Result{Token: t, Origin: FromMemory}, nil
	}
	fail.consider(s.memFailure())
	if r, err, ok := s.backedOff(best, fail, now); ok {
		return r, err
	}
	if dirfd < 0 {
		return s.refresh(ctx, dirfd, best, false)
	}
	for {
		// While it waits for the lock, a process stops at an entry that
		// answers it: a fresh token, or a failed refresh in force.
		settles := func(rec record) bool {
			now := s.now()
			if rec.tok.Fresh(now) {
				return true
			}
			b, f := best, fail
			b.consider(rec.tok, FromDisk)
			f.consider(rec.fail)
			_, _, ok := s.decideBackoff(b, f, now)
			return ok
		}
		lockfd, rec, ok := s.lockEntry(ctx, dirfd, deadline, settles)
		if lockfd >= 0 {
			defer closeFd(lockfd) // releases the flock
		}
		if !ok {
			return s.refresh(ctx, dirfd, best, lockfd >= 0)
		}
		now = s.now()
		if rec.tok.Fresh(now) {
			return s.served(rec.tok, FromDisk), nil
		}
		best.consider(rec.tok, FromDisk)
		fail.consider(rec.fail)
		if r, err, ok := s.backedOff(best, fail, now); ok {
			return r, err
		}
		if lockfd >= 0 {
			return s.refresh(ctx, dirfd, best, true)
		}
		// The failed refresh that stopped the wait has just run out: wait
		// for the lock again rather than call the source without it.
	}
}

// refresh calls the source and stores its token, or applies stale-if-error
// and records the failure. dirfd is the cache directory (or -1); locked says
// whether the caller holds the cross-process lock.
func (s *Source) refresh(ctx context.Context, dirfd int, best candidate, locked bool) (Result, error) {
	srcCtx := ctx
	if best.ok && s.staleUsable(best.tok, s.now()) {
		var cancel context.CancelFunc
		srcCtx, cancel = context.WithTimeout(ctx, StaleRefreshBudget)
		defer cancel()
	}
	tok, err := s.src.Token(srcCtx)
	now := s.now()
	if err == nil && !tok.Valid(now) {
		err = ErrInvalidToken
	}
	if err != nil {
		// Stale-if-error is for outages. A source that says its failure is
		// permanent (the identity was rejected: a key deleted, a profile
		// unlinked) is believed: serving the old token would hide the
		// change for up to an hour, then fail all at once.
		stale := best.ok && s.staleUsable(best.tok, now) && !permanent(err)
		// A cancelled invocation (SIGTERM) says nothing about the source.
		if !errors.Is(ctx.Err(), context.Canceled) {
			s.recordFailure(dirfd, locked, best, err, now, stale)
		}
		if stale {
			// A warning (V(0) Info, logr has no warning severity): the caller
			// is served. Errors from iam.TokenSource never hold secrets.
			s.log.Info("Token refresh failed; serving the cached token until it expires",
				"err", err.Error(), "from", best.origin.String(), "expiresIn", best.tok.Expiry.Sub(now).Round(time.Second))
			return Result{Token: best.tok, Origin: best.origin, Stale: true, RefreshErr: err}, nil
		}
		return Result{}, err
	}
	s.setMemFailure(failure{})
	s.log.V(4).Info("Obtained a new token", "expiresIn", tok.Expiry.Sub(now).Round(time.Second))
	if !tok.Fresh(now) {
		// Too short-lived to be worth keeping: nobody may reuse it.
		return Result{Token: tok, Origin: FromSource}, nil
	}
	s.memSet(tok, now)
	if dirfd >= 0 {
		if err := s.writeEntry(dirfd, tok); err != nil {
			s.diskWarning("Could not write the token cache; the new token is used but not shared", err)
		}
	}
	return Result{Token: tok, Origin: FromSource}, nil
}

// permanent reports whether err says of itself that retrying cannot help
// (it has a Temporary method that returns false).
func permanent(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && !t.Temporary()
}

// staleUsable reports whether t may be served when refreshing it failed.
func (s *Source) staleUsable(t iam.Token, now time.Time) bool {
	return s.staleMin >= 0 && t.Valid(now) && t.Expiry.Sub(now) >= s.staleMin
}

// backedOff answers from a failed refresh still in force, if there is one:
// the best token as stale if it can be served, else a *RecentFailureError.
// ok is false if the source may be called.
func (s *Source) backedOff(best candidate, fail failure, now time.Time) (r Result, err error, ok bool) {
	r, err, ok = s.decideBackoff(best, fail, now)
	if ok && r.Stale {
		// A warning, like stale-if-error after a failed call.
		s.log.Info("Token refresh failed recently; serving the cached token without trying again yet",
			"err", r.RefreshErr.Error(), "from", r.Origin.String(), "expiresIn", r.Token.Expiry.Sub(now).Round(time.Second))
	}
	return r, err, ok
}

// decideBackoff is backedOff without the log line.
func (s *Source) decideBackoff(best candidate, fail failure, now time.Time) (r Result, err error, ok bool) {
	canServe := best.ok && s.staleUsable(best.tok, now)
	until := fail.until(now, canServe)
	if until.IsZero() || !now.Before(until) {
		return Result{}, nil, false
	}
	rfe := &RecentFailureError{Message: fail.message, FailedAt: fail.at, RetryNotBefore: until, now: now, cause: fail.cause}
	if !canServe {
		return Result{}, rfe, true
	}
	return Result{Token: best.tok, Origin: best.origin, Stale: true, RefreshErr: rfe}, nil, true
}

// recordFailure keeps a failed refresh in memory and, if the caller holds
// the lock, in the entry on disk, so that other invocations back off. The
// entry keeps the best still-valid token: a failure never hides one.
func (s *Source) recordFailure(dirfd int, locked bool, best candidate, err error, now time.Time, stale bool) {
	backoff := FailureBackoff
	if stale {
		backoff = OutageBackoff
	}
	f := failure{at: now, retryNotBefore: now.Add(backoff), message: failureMessage(err.Error()), cause: err}
	s.setMemFailure(f)
	if dirfd < 0 || !locked {
		// Without the lock, a write could replace a token another process
		// has just stored.
		return
	}
	rec := record{fail: failure{at: f.at, retryNotBefore: f.retryNotBefore, message: f.message}}
	// A permanent failure (the identity was rejected) retires the token:
	// other invocations must not serve it as stale either.
	if best.ok && best.tok.Valid(now) && !permanent(err) {
		rec.tok = best.tok
	}
	// A process that gave up waiting for the lock may have stored a token
	// since the entry was read.
	if cur, state, _ := s.readRecord(dirfd); state == entryOK && cur.tok.Valid(now) {
		if cur.tok.Fresh(now) {
			return
		}
		if !permanent(err) && (rec.tok.AccessToken == "" || cur.tok.Expiry.After(rec.tok.Expiry)) {
			rec.tok = cur.tok
		}
	}
	if err := s.writeRecord(dirfd, rec); err != nil {
		s.diskWarning("Could not record the failed token refresh on disk; other invocations will try again", err)
	}
}

func (s *Source) memFailure() failure {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.memFail
}

func (s *Source) setMemFailure(f failure) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	s.memFail = f
}

// served records a token found on disk in memory and describes it.
func (s *Source) served(t iam.Token, o Origin) Result {
	s.memSet(t, s.now())
	s.log.V(4).Info("Using the cached token", "from", o.String())
	return Result{Token: t, Origin: o}
}

// candidate is the best cached token seen so far that is not fresh, for
// stale-if-error.
type candidate struct {
	tok    iam.Token
	origin Origin
	ok     bool
}

func (c *candidate) consider(t iam.Token, o Origin) {
	if t.AccessToken == "" {
		return
	}
	if !c.ok || t.Expiry.After(c.tok.Expiry) {
		*c = candidate{tok: t, origin: o, ok: true}
	}
}

func (s *Source) memGet() (iam.Token, bool) {
	v, ok := s.mem.Get(s.hash)
	if !ok {
		return iam.Token{}, false
	}
	t, ok := v.(iam.Token)
	return t, ok
}

// memSet keeps t until its expiry. go-cache measures the TTL with the real
// clock; freshness is still judged by s.now on every read.
func (s *Source) memSet(t iam.Token, now time.Time) {
	if ttl := t.Expiry.Sub(now); ttl > 0 {
		s.mem.Set(s.hash, t, ttl)
	}
}

// lockDeadline is when waiting for someone else's refresh stops: LockWait
// from now, or a safety slice before ctx's deadline if that is sooner.
func (s *Source) lockDeadline(ctx context.Context) time.Time {
	now := time.Now()
	d := now.Add(s.lockWait)
	if dl, ok := ctx.Deadline(); ok {
		slice := max(0, min(dl.Sub(now)/2, lockSafetySlice))
		if c := dl.Add(-slice); c.Before(d) {
			d = c
		}
	}
	return d
}

// acquire takes the in-process refresh slot, waiting until deadline at most.
func (s *Source) acquire(ctx context.Context, deadline time.Time) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	default:
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// diskWarning logs the first problem with the disk layer at V(0) and later
// ones at V(2), so that a broken disk cache costs one log line. (logr has no
// warning severity; V(0) Info is the Kubernetes convention for warnings.)
func (s *Source) diskWarning(msg string, err error) {
	if s.warned.CompareAndSwap(false, true) {
		s.log.Info(msg, "dir", s.dir, "err", err.Error())
		return
	}
	s.log.V(2).Info(msg, "dir", s.dir, "err", err.Error())
}
