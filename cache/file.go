package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// File is the layer every process of the node shares: a record per identity
// (the token, and the last failed refresh) in a cache directory, read before
// the wrapped source is called, and a lock per identity taken before it is,
// so that one caller refreshes and the others pick up its token — or its
// failure. Without a usable directory both live in the process's memory.
// Safe for concurrent use.
type File struct {
	src  token.Source
	hash string
	o    Options
	sys  sysOps
	// The directory proved unusable; the one loud disk warning was logged.
	diskOff, warned atomic.Bool
}

var _ Fetcher = (*File)(nil)

// NewFile wraps src with the file layer in opts.Dir. It does no I/O; the
// directory is created and checked on first use.
func NewFile(src token.Source, key string, opts Options) *File {
	return &File{src: src, hash: hashKey(key), o: opts.withDefaults(), sys: realSys}
}

// Token returns a fresh token, or a stale one if refreshing failed and
// stale-if-error applies; use Fetch to tell the two apart.
func (f *File) Token(ctx context.Context) (token.Token, error) { return tokenOf(f.Fetch(ctx)) }

// Fetch returns the stored token if it is fresh; otherwise it waits for the
// identity's lock — returning as soon as another caller stores a fresh token
// or a failure — and calls the source.
//
// A stale-if-error answer has a nil error, Result.Stale and
// Result.RefreshErr, and is logged as a warning. Otherwise the source's
// error is returned unchanged, for errors.Is and errors.As.
//
// A failed refresh holds back every caller sharing the store: for
// OutageBackoff a still-valid token is served as stale at once (RefreshErr
// is a *RecentFailureError); for FailureBackoff, with no token to serve,
// Fetch fails at once with a *RecentFailureError. A success ends it.
func (f *File) Fetch(ctx context.Context) (Result, error) {
	st := f.store()
	defer st.close()
	mem := f.o.Memory.record(f.hash)
	rec := mem.withCause(st.read())
	if r, err, ok := f.answer(rec, true); ok {
		return r, err
	}
	unlock, latest := st.lock(ctx, f.lockDeadline(ctx), func(r record) bool {
		_, _, ok := f.answer(r, false)
		return ok
	})
	locked := unlock != nil
	if locked {
		defer unlock()
	}
	if latest != nil {
		// Another caller may have refreshed, or failed to, meanwhile.
		rec = mem.withCause(*latest)
		if r, err, ok := f.answer(rec, true); ok {
			return r, err
		}
	}
	if !locked {
		f.o.Logger.V(2).Info("Gave up waiting for another refresh of the token; calling the token source directly")
	}
	return f.refresh(ctx, st, rec, locked)
}

// answer serves rec if it answers the caller: a fresh token, or a failed
// refresh still in force (the token as stale, or a *RecentFailureError).
// ok is false if the source must be called.
func (f *File) answer(rec record, log bool) (r Result, err error, ok bool) {
	now := f.o.Now()
	if rec.tok.Fresh(now.Add(f.o.Ahead)) {
		if log {
			f.o.Logger.V(4).Info("Using the cached token", "from", rec.origin.String())
		}
		return Result{Token: rec.tok, Origin: rec.origin}, nil, true
	}
	canServe := f.staleUsable(rec.tok, now)
	until := rec.fail.until(now, canServe)
	if !now.Before(until) { // (also when until is zero: no failure in force)
		return Result{}, nil, false
	}
	rfe := &RecentFailureError{Message: rec.fail.message, FailedAt: rec.fail.at, RetryNotBefore: until, now: now, cause: rec.fail.cause}
	if !canServe {
		return Result{}, rfe, true
	}
	if log {
		f.o.Logger.Info("Token refresh failed recently; serving the cached token without trying again yet",
			"err", rfe.Error(), "from", rec.origin.String(), "expiresIn", rec.tok.Expiry.Sub(now).Round(time.Second))
	}
	return Result{Token: rec.tok, Origin: rec.origin, Stale: true, RefreshErr: rfe}, nil, true
}

// refresh calls the source and stores its token, or applies stale-if-error
// and records the failure. Without the lock a failure is not recorded, lest
// it replace a token the holder stores.
func (f *File) refresh(ctx context.Context, st store, rec record, locked bool) (Result, error) {
	srcCtx := ctx
	if f.staleUsable(rec.tok, f.o.Now()) {
		var cancel context.CancelFunc
		srcCtx, cancel = context.WithTimeout(ctx, StaleRefreshBudget)
		defer cancel()
	}
	tok, err := f.src.Token(srcCtx)
	now := f.o.Now()
	if err == nil && !tok.Valid(now) {
		err = ErrInvalidToken
	}
	if err != nil {
		// Stale-if-error is for outages. A permanent failure (a key deleted,
		// a profile unlinked) is believed: serving the old token would hide
		// the change for up to an hour, then fail all at once.
		stale := f.staleUsable(rec.tok, now) && !permanent(err)
		// A cancelled invocation (SIGTERM) says nothing about the source.
		if locked && !errors.Is(ctx.Err(), context.Canceled) {
			f.recordFailure(st, rec, err, now, stale)
		}
		if stale {
			// V(0) Info is the Kubernetes warning.
			f.o.Logger.Info("Token refresh failed; serving the cached token until it expires",
				"err", err.Error(), "from", rec.origin.String(), "expiresIn", rec.tok.Expiry.Sub(now).Round(time.Second))
			return Result{Token: rec.tok, Origin: rec.origin, Stale: true, RefreshErr: err}, nil
		}
		return Result{}, err
	}
	f.o.Logger.V(4).Info("Obtained a new token", "expiresIn", tok.Expiry.Sub(now).Round(time.Second))
	// A token too short-lived to be fresh is not kept. Any fresh one is
	// stored, lock or not: it will do for everyone.
	if tok.Fresh(now) {
		if err := st.write(record{tok: tok}); err != nil {
			f.warn("Could not write the token cache; the new token is used but not shared", err)
		}
	}
	return Result{Token: tok, Origin: FromSource}, nil
}

// recordFailure stores a failed refresh, so that other callers back off. The
// record keeps the best still-valid token (a failure never hides one),
// unless the failure is permanent: then the token is retired.
func (f *File) recordFailure(st store, rec record, err error, now time.Time, stale bool) {
	// A caller that gave up waiting for the lock may have stored a token
	// since: a fresh one stands, a later one is kept.
	cur := st.read()
	if cur.tok.Fresh(now) {
		return
	}
	backoff := FailureBackoff
	if stale {
		backoff = OutageBackoff
	}
	next := record{fail: failure{at: now, retryNotBefore: now.Add(backoff), message: failureMessage(err.Error()), cause: err}}
	for _, t := range []token.Token{rec.tok, cur.tok} {
		if t.Valid(now) && t.Expiry.After(next.tok.Expiry) && !permanent(err) {
			next.tok = t
		}
	}
	// Only this process knows the cause (for RecentFailureError.Unwrap).
	f.o.Memory.record(f.hash).setCause(next.fail)
	if err := st.write(next); err != nil {
		f.warn("Could not record the failed token refresh; other invocations will try again", err)
	}
}

// permanent reports whether err says of itself (Temporary() false) that
// retrying cannot help.
func permanent(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && !t.Temporary()
}

// staleUsable reports whether t may be served when refreshing it failed.
func (f *File) staleUsable(t token.Token, now time.Time) bool {
	return f.o.StaleMinRemaining >= 0 && t.Valid(now) && t.Expiry.Sub(now) >= f.o.StaleMinRemaining
}

// lockDeadline is when waiting for someone else's refresh stops: LockWait
// from now, or a safety slice before ctx's deadline if that is sooner.
func (f *File) lockDeadline(ctx context.Context) time.Time {
	now := time.Now()
	d := now.Add(f.o.LockWait)
	if dl, ok := ctx.Deadline(); ok {
		slice := max(0, min(dl.Sub(now)/2, lockSafetySlice))
		if c := dl.Add(-slice); c.Before(d) {
			d = c
		}
	}
	return d
}

// store is where the file layer keeps its record: the cache directory
// (disk), or the process's memory.
type store interface {
	// read returns the record; an untrusted or missing one reads as empty.
	read() record
	// lock takes the identity's lock, waiting until deadline, and returns
	// unlock and the record read under the lock; or returns early, unlock
	// nil, with a record that settles accepts; or neither: the wait failed.
	lock(ctx context.Context, deadline time.Time, settles func(record) bool) (unlock func(), latest *record)
	// write replaces the record atomically.
	write(record) error
	close()
}

// store opens the directory, or falls back to memory for good (one
// warning) if it cannot be used.
func (f *File) store() store {
	if f.o.Dir != "" && !f.diskOff.Load() {
		// The sweep goes by file times: the real clock.
		d, err := openDisk(f.o.Dir, f.hash, f.sys, f.o.Logger, time.Now())
		if err == nil {
			d.warn = f.warn
			return d
		}
		f.diskOff.Store(true)
		f.warn("Token cache on disk disabled; caching in memory only", err)
	}
	return f.o.Memory.record(f.hash)
}

// warn logs a disk problem as a warning (V(0)) once per process and at V(2)
// after that, so that a broken disk cache costs one log line.
func (f *File) warn(msg string, err error) {
	log := f.o.Logger.V(2)
	if f.warned.CompareAndSwap(false, true) {
		log = f.o.Logger
	}
	log.Info(msg, "dir", f.o.Dir, "err", err.Error())
}

// record is a stored token (AccessToken "" if none) and a failed refresh
// (zero if none); origin says where the token was read from.
type record struct {
	tok    token.Token
	fail   failure
	origin Origin
}

// memRecord is the file layer's record in memory, with its lock (one
// refresh at a time in the process), and the cause of the last failure this
// process recorded, wherever it stored it.
type memRecord struct {
	mu    sync.Mutex
	rec   record
	cause failure
	sem   chan struct{}
}

func (m *memRecord) setCause(f failure) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cause = f
}

// withCause gives rec's failure its cause if this process recorded it.
func (m *memRecord) withCause(rec record) record {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !rec.fail.at.IsZero() && rec.fail.at.Equal(m.cause.at) {
		rec.fail.cause = m.cause.cause
	}
	return rec
}

// record returns hash's record in m, created on first use.
func (m *Memory) record(hash string) *memRecord {
	k := "record/" + hash
	_ = m.c.Add(k, &memRecord{sem: make(chan struct{}, 1)}, 0) // fails if there is one
	v, _ := m.c.Get(k)
	return v.(*memRecord)
}

func (m *memRecord) read() record {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rec
	r.origin = FromMemory
	return r
}

func (m *memRecord) write(r record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rec = r
	return nil
}

func (m *memRecord) lock(ctx context.Context, deadline time.Time, _ func(record) bool) (func(), *record) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	select {
	case m.sem <- struct{}{}: // tried first: a free lock is taken even after the deadline
	default:
		select {
		case m.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, nil
		}
	}
	rec := m.read()
	return func() { <-m.sem }, &rec
}

func (m *memRecord) close() {}
