package cache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// errOutage is what a source says during an IAM outage.
var errOutage = errors.New("IAM at https://iam.example failed to exchange the API key for a token (HTTP 503) (4 attempts): IAM is failing")

// outcome is what one concurrent caller got.
type outcome struct {
	token  string
	stale  bool
	err    string
	recent bool // err, or the stale token's RefreshErr, is a *RecentFailureError
}

func outcomeOf(r Result, err error) outcome {
	var rfe *RecentFailureError
	o := outcome{token: r.Token.AccessToken, stale: r.Stale}
	if err != nil {
		o.err, o.recent = err.Error(), errors.As(err, &rfe)
	} else if r.Stale {
		o.recent = errors.As(r.RefreshErr, &rfe)
	}
	return o
}

// checkOutcomes checks n concurrent callers during an outage: all got
// wantToken (stale) or an error, and all but the one that called the
// failing source were answered by its failure record.
func checkOutcomes(t *testing.T, got []outcome, wantToken string) {
	t.Helper()
	recent := 0
	for i, o := range got {
		if wantToken != "" {
			if o.err != "" || o.token != wantToken || !o.stale {
				t.Errorf("caller %d: token %q stale %v err %q; want the stale token", i, o.token, o.stale, o.err)
			}
		} else {
			if o.err == "" || o.token != "" {
				t.Errorf("caller %d: token %q err %q; want an error", i, o.token, o.err)
			}
			if !strings.Contains(o.err, errOutage.Error()) {
				t.Errorf("caller %d: error %q does not carry the source's message", i, o.err)
			}
			if strings.Contains(o.err, "\n") {
				t.Errorf("caller %d: error is not one line: %q", i, o.err)
			}
		}
		if o.recent {
			recent++
		}
		if strings.Contains(o.err, "SECRET") {
			t.Errorf("caller %d: a token in the error: %q", i, o.err)
		}
	}
	// The caller that called the source has the source's own error; all the
	// others were held back by its failure.
	if recent != len(got)-1 {
		t.Errorf("%d of %d callers held back by the recent failure, want %d", recent, len(got), len(got)-1)
	}
}

// staleEntry stores a token for testKey that is valid for 5 more minutes
// but past its refresh point (issued 55 minutes before now).
func staleEntry(t *testing.T, dir string, now time.Time, token string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := entryJSON(t, token, now.Add(-55*time.Minute), now.Add(5*time.Minute), nil)
	if err := os.WriteFile(entryPath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOutageBackoffGoroutines: during an outage, concurrent callers cause
// one call to the source; the others are served at once from its failure.
func TestOutageBackoffGoroutines(t *testing.T) {
	const n = 32
	const delay = 100 * time.Millisecond
	for _, tc := range []struct {
		name   string
		warm   bool // a valid but not fresh token is cached
		disk   bool
		shared bool // one Source for all (else one each, like processes)
	}{
		{name: "warm, one Source, memory only", warm: true, shared: true},
		{name: "warm, one Source, with disk", warm: true, disk: true, shared: true},
		{name: "warm, a Source each, shared disk", warm: true, disk: true},
		{name: "cold, one Source, memory only", shared: true},
		{name: "cold, one Source, with disk", disk: true, shared: true},
		{name: "cold, a Source each, shared disk", disk: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			logger, logs := newLogCapture()
			opts := Options{Now: clock.Now, Logger: logger}
			if tc.disk {
				opts.Dir = filepath.Join(t.TempDir(), "cache")
			}
			shared := newCache(fake.source(), testKey, opts)
			newSrc := func() *Reused {
				if tc.shared {
					return shared
				}
				return newCache(fake.source(), testKey, opts)
			}
			wantToken := ""
			if tc.warm {
				r, err := shared.Fetch(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				wantToken = r.Token.AccessToken
				clock.Advance(55 * time.Minute)
			}
			calls := fake.calls.Load()
			fake.setErr(errOutage)
			fake.delay = delay

			got := make([]outcome, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				s := newSrc()
				wg.Go(func() {
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					r, err := s.Fetch(ctx)
					got[i] = outcomeOf(r, err)
				})
			}
			close(start)
			wg.Wait()
			if c := fake.calls.Load() - calls; c != 1 {
				t.Errorf("%d source calls, want 1", c)
			}
			checkOutcomes(t, got, wantToken)

			// Within the backoff: still no call, from a new Source too.
			backoff := FailureBackoff
			if tc.warm {
				backoff = OutageBackoff
			}
			clock.Advance(backoff - time.Second)
			r, err := newSrc().Fetch(context.Background())
			if o := outcomeOf(r, err); !o.recent || fake.calls.Load()-calls != 1 {
				t.Errorf("within the backoff: %+v after %d calls", o, fake.calls.Load()-calls)
			}
			// After the backoff the next caller tries again, and a success
			// ends the backoff for everyone.
			clock.Advance(time.Second)
			fake.setErr(nil)
			fake.delay = 0
			r, err = newSrc().Fetch(context.Background())
			if err != nil || r.Stale || r.Origin != FromSource || fake.calls.Load()-calls != 2 {
				t.Fatalf("after the backoff: %v stale %v from %v, %d calls", err, r.Stale, r.Origin, fake.calls.Load()-calls)
			}
			r2, err := newSrc().Fetch(context.Background())
			if err != nil || r2.Stale || r2.Token.AccessToken != r.Token.AccessToken {
				t.Errorf("after recovery: %v stale %v", err, r2.Stale)
			}
			if tc.disk {
				if e := readStoredEntry(t, opts.Dir); !e.RefreshFailedAt.IsZero() || !e.RetryNotBefore.IsZero() || e.Error != "" {
					t.Errorf("failure record survived a successful refresh")
				}
			}
			assertNoSecret(t, logs, "SECRET")
		})
	}
}

// TestOutageBackoffMultiProcess: the same as separate processes, the
// kubelet's way, against a failing source.
func TestOutageBackoffMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 32 processes")
	}
	const procs = 32
	const delay = 500 * time.Millisecond
	for _, warm := range []bool{true, false} {
		t.Run(map[bool]string{true: "warm but stale", false: "cold"}[warm], func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "cache")
			wantToken := ""
			if warm {
				wantToken = "SECRET-stale-token"
				staleEntry(t, dir, time.Now(), wantToken)
			}
			got, calls := runChildren(t, procs, base, dir, envFail+"="+delay.String())
			if calls != 1 {
				t.Errorf("%d source calls, want 1", calls)
			}
			checkOutcomes(t, got, wantToken)

			e := readStoredEntry(t, dir)
			if e.RefreshFailedAt.IsZero() || !strings.Contains(e.Error, errOutage.Error()) {
				t.Errorf("no failure record on disk")
			}
			wantBackoff := FailureBackoff
			if warm {
				wantBackoff = OutageBackoff
			}
			if d := e.RetryNotBefore.Sub(e.RefreshFailedAt); d != wantBackoff {
				t.Errorf("retry_not_before - refresh_failed_at = %v, want %v", d, wantBackoff)
			}
			if e.AccessToken != wantToken {
				t.Errorf("entry token changed by the failure record")
			}
		})
	}
}

// runChildren runs TestHelperProcess in procs processes at once and returns
// what each got and how many called the source.
func runChildren(t *testing.T, procs int, base, dir string, env ...string) ([]outcome, int) {
	t.Helper()
	calls := filepath.Join(base, "calls")
	start := filepath.Join(base, "start")
	if err := os.Mkdir(calls, 0o700); err != nil {
		t.Fatal(err)
	}
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*bytes.Buffer, procs)
	for i := range cmds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), envHelper+"=1", envDir+"="+dir, envCalls+"="+calls, envStart+"="+start)
		cmd.Env = append(cmd.Env, env...)
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	if err := os.WriteFile(start, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make([]outcome, procs)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
		seen := false
		for _, line := range strings.Split(outs[i].String(), "\n") {
			if line == donePrefix {
				seen = true
			}
			switch {
			case strings.HasPrefix(line, tokenPrefix):
				got[i].token = strings.TrimPrefix(line, tokenPrefix)
			case strings.HasPrefix(line, stalePrefix):
				got[i].stale = strings.TrimPrefix(line, stalePrefix) == "true"
			case strings.HasPrefix(line, errPrefix):
				got[i].err = strings.TrimPrefix(line, errPrefix)
			case strings.HasPrefix(line, recentPrefix):
				got[i].recent = strings.TrimPrefix(line, recentPrefix) == "true"
			}
		}
		if !seen {
			t.Fatalf("child %d reported nothing:\n%s", i, outs[i])
		}
	}
	made, err := os.ReadDir(calls)
	if err != nil {
		t.Fatal(err)
	}
	return got, len(made)
}

// TestLockWaiterPicksUpFailure: a process waiting for the lock returns as
// soon as the holder records its failure, without calling the source.
func TestLockWaiterPicksUpFailure(t *testing.T) {
	for _, warm := range []bool{false, true} {
		t.Run(map[bool]string{true: "warm", false: "cold"}[warm], func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			logger, logs := newLogCapture()
			stale := ""
			if warm {
				stale = "SECRET-stale-token"
				staleEntry(t, dir, clock.Now(), stale)
			}
			release := holdLock(t, dir)
			failedAt := clock.Now()
			rec := record{fail: failure{at: failedAt, retryNotBefore: failedAt.Add(FailureBackoff), message: errOutage.Error()}}
			if warm {
				rec.tok = token.Token{AccessToken: stale, IssuedAt: failedAt.Add(-55 * time.Minute), Expiry: failedAt.Add(5 * time.Minute)}
				rec.fail.retryNotBefore = failedAt.Add(OutageBackoff)
			}
			waiter := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger})
			// The holder writes once the waiter reads the entry a second
			// time: it is then polling for the lock.
			polling := make(chan struct{})
			var reads atomic.Int32
			sys := waiter.file().sys
			waiter.file().sys.openat = func(dirfd int, path string, flags int, mode uint32) (int, error) {
				if strings.HasSuffix(path, ".json") && reads.Add(1) == 2 {
					close(polling)
				}
				return sys.openat(dirfd, path, flags, mode)
			}
			go func() {
				// The holder's refresh fails; it records that and releases.
				<-polling
				holder, err := openDisk(dir, hashOf(testKey), realSys, logger, clock.Now())
				if err != nil {
					t.Error(err)
					return
				}
				defer holder.close()
				if err := holder.write(rec); err != nil {
					t.Error(err)
				}
				release()
			}()
			clock.Advance(2 * time.Second)
			r, err := waiter.Fetch(context.Background())
			o := outcomeOf(r, err)
			if fake.calls.Load() != 0 || !o.recent {
				t.Fatalf("%d calls, %+v", fake.calls.Load(), o)
			}
			if warm != (o.token == stale && o.stale) {
				t.Errorf("warm %v: got %+v", warm, o)
			}
			rnb := clock.Now().Add(FailureBackoff - 2*time.Second).UTC().Format(time.RFC3339)
			if warm {
				rnb = clock.Now().Add(OutageBackoff - 2*time.Second).UTC().Format(time.RFC3339)
				var rfe *RecentFailureError
				errors.As(r.RefreshErr, &rfe)
				o.err = rfe.Error()
			}
			want := errOutage.Error() + " (from a failed attempt 2s ago by another invocation; next attempt after " + rnb + ")"
			if o.err != want {
				t.Errorf("error\n%q, want\n%q", o.err, want)
			}
			assertNoSecret(t, logs, "SECRET")
		})
	}
}

// TestFailureRecordKeepsValidToken: a failed refresh never hides a token
// that is still valid, even one too close to expiry to be served stale, and
// never replaces a fresh token stored meanwhile by another process.
func TestFailureRecordKeepsValidToken(t *testing.T) {
	t.Run("valid token too close to expiry to serve", func(t *testing.T) {
		dir := t.TempDir()
		clock := newClock()
		fake := newSource(clock.Now, time.Hour)
		fake.setErr(errOutage)
		b := entryJSON(t, "SECRET-almost-expired", clock.Now().Add(-59*time.Minute), clock.Now().Add(30*time.Second), nil)
		if err := os.WriteFile(entryPath(dir), b, 0o600); err != nil {
			t.Fatal(err)
		}
		logger, logs := newLogCapture()
		defer assertNoSecret(t, logs, "SECRET")
		opts := Options{Dir: dir, Now: clock.Now, Logger: logger}
		if _, err := newCache(fake.source(), testKey, opts).Fetch(context.Background()); !errors.Is(err, errOutage) {
			t.Fatalf("err %v", err)
		}
		e := readStoredEntry(t, dir)
		if e.AccessToken != "SECRET-almost-expired" || e.RefreshFailedAt.IsZero() {
			t.Errorf("token hidden or failure not recorded")
		}
		// The next caller fails fast; a caller that accepts less life left
		// gets the token as stale.
		_, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
		var rfe *RecentFailureError
		if !errors.As(err, &rfe) || fake.calls.Load() != 1 {
			t.Errorf("second caller: %v after %d calls", err, fake.calls.Load())
		}
		opts.StaleMinRemaining = time.Second
		r, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
		if err != nil || !r.Stale || r.Token.AccessToken != "SECRET-almost-expired" || fake.calls.Load() != 1 {
			t.Errorf("lenient caller: %v stale %v after %d calls", err, r.Stale, fake.calls.Load())
		}
	})
	t.Run("fresh token stored during the failed refresh", func(t *testing.T) {
		dir := t.TempDir()
		clock := newClock()
		fresh := entryJSON(t, "SECRET-fresh-from-other", clock.Now(), clock.Now().Add(time.Hour), nil)
		src := token.SourceFunc(func(context.Context) (token.Token, error) {
			// A process that gave up waiting for the lock succeeds meanwhile.
			if err := os.WriteFile(entryPath(dir), fresh, 0o600); err != nil {
				t.Error(err)
			}
			return token.Token{}, errOutage
		})
		logger, _ := newLogCapture()
		if _, err := newCache(src, testKey, Options{Dir: dir, Now: clock.Now, Logger: logger}).Fetch(context.Background()); !errors.Is(err, errOutage) {
			t.Fatalf("err %v", err)
		}
		if e := readStoredEntry(t, dir); e.AccessToken != "SECRET-fresh-from-other" || !e.RefreshFailedAt.IsZero() {
			t.Errorf("fresh token replaced by a failure record")
		}
	})
}

// TestFailureRecordBounds: a record cannot stop refreshes for longer than
// the backoffs, whatever it says, nor when the clock is set back; a
// cancelled invocation records nothing.
func TestFailureRecordBounds(t *testing.T) {
	tests := []struct {
		name      string
		failedAgo time.Duration // before now
		retryIn   time.Duration // after now
		withToken bool          // a stale-servable token is in the entry
		wantCall  bool
	}{
		{name: "in force", failedAgo: time.Second, retryIn: 5 * time.Second},
		{name: "expired", failedAgo: 20 * time.Second, retryIn: -10 * time.Second, wantCall: true},
		{name: "claims an hour, no token: FailureBackoff at most", failedAgo: FailureBackoff, retryIn: time.Hour, wantCall: true},
		{name: "claims an hour, token: OutageBackoff at most", failedAgo: OutageBackoff, retryIn: time.Hour, withToken: true, wantCall: true},
		{name: "claims an hour, token, recent", failedAgo: OutageBackoff - time.Second, retryIn: time.Hour, withToken: true},
		{name: "clock set back before the failure", failedAgo: -time.Minute, retryIn: time.Hour, wantCall: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := newClock()
			fake := newSource(clock.Now, time.Hour)
			fake.setErr(errOutage)
			now := clock.Now()
			b := entryJSON(t, "", time.Time{}, time.Time{}, func(e *entry) {
				e.RefreshFailedAt, e.RetryNotBefore, e.Error = now.Add(-tc.failedAgo), now.Add(tc.retryIn), "earlier failure"
				if tc.retryIn < -tc.failedAgo {
					e.RetryNotBefore = e.RefreshFailedAt
				}
				if tc.withToken {
					e.AccessToken, e.IssuedAt, e.Expiry = "SECRET-stale", now.Add(-55*time.Minute), now.Add(5*time.Minute)
				}
			})
			if err := os.WriteFile(entryPath(dir), b, 0o600); err != nil {
				t.Fatal(err)
			}
			logger, logs := newLogCapture()
			_, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger}).Fetch(context.Background())
			assertNoSecret(t, logs, "SECRET")
			if called := fake.calls.Load() == 1; called != tc.wantCall {
				t.Errorf("source called %v, want %v (err %v)", called, tc.wantCall, err)
			}
		})
	}
	t.Run("cancelled invocation", func(t *testing.T) {
		dir := t.TempDir()
		clock := newClock()
		ctx, cancel := context.WithCancel(context.Background())
		src := token.SourceFunc(func(context.Context) (token.Token, error) {
			cancel()
			return token.Token{}, context.Canceled
		})
		logger, _ := newLogCapture()
		s := newCache(src, testKey, Options{Dir: dir, Now: clock.Now, Logger: logger})
		if _, err := s.Fetch(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(entryPath(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a cancelled invocation recorded a failure: %v", err)
		}
	})
	t.Run("cancelled invocation, memory only", func(t *testing.T) {
		clock := newClock()
		ctx, cancel := context.WithCancel(context.Background())
		src := token.SourceFunc(func(context.Context) (token.Token, error) {
			cancel()
			return token.Token{}, context.Canceled
		})
		logger, _ := newLogCapture()
		mem := NewMemory()
		if _, err := newCache(src, testKey, Options{Memory: mem, Now: clock.Now, Logger: logger}).Fetch(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		if f := mem.record(hashOf(testKey)).read().fail; !f.at.IsZero() {
			t.Errorf("a cancelled invocation recorded a failure in memory")
		}
	})
}

// TestReadsVersion1Entries: entries written before failure records existed
// are still served.
func TestReadsVersion1Entries(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	b := entryJSON(t, "SECRET-v1", clock.Now(), clock.Now().Add(time.Hour), func(e *entry) { e.Version = entryVersionV1 })
	if !strings.Contains(string(b), `"version":1`) {
		t.Fatalf("not a version 1 entry: %s", b)
	}
	if err := os.WriteFile(entryPath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	logger, _ := newLogCapture()
	r, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger}).Fetch(context.Background())
	if err != nil || r.Origin != FromDisk || r.Token.AccessToken != "SECRET-v1" {
		t.Fatalf("%v from %v", err, r.Origin)
	}
}

func TestRecentFailureErrorMessage(t *testing.T) {
	now := t0
	e := &RecentFailureError{Message: "IAM at https://iam.example failed (HTTP 503)", FailedAt: now.Add(-3400 * time.Millisecond), RetryNotBefore: now.Add(6 * time.Second), now: now}
	want := "IAM at https://iam.example failed (HTTP 503) (from a failed attempt 3s ago by another invocation; next attempt after 2031-05-06T07:08:15Z)"
	if e.Error() != want {
		t.Errorf("%q\nwant %q", e.Error(), want)
	}
	if e.Unwrap() != nil {
		t.Errorf("Unwrap without a cause: %v", e.Unwrap())
	}
	long := failureMessage(strings.Repeat("é", maxFailureMessage) + "\n\tnext line")
	if len(long) > maxFailureMessage+len("…") || strings.ContainsAny(long, "\n\t") || !strings.HasSuffix(long, "…") {
		t.Errorf("failureMessage: %d bytes %q", len(long), long[len(long)-10:])
	}
	if got := failureMessage("a\n  b\tc"); got != "a b c" {
		t.Errorf("failureMessage: %q", got)
	}
}

// permanentErr is an error that says retrying cannot help, like an
// *iam.Error for a rejected identity.
type permanentErr struct{}

func (permanentErr) Error() string   { return "IAM rejected the identity: fix it" }
func (permanentErr) Temporary() bool { return false }

func TestPermanentFailureRetiresStaleToken(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	calls := 0
	tok := token.Token{AccessToken: "tok-1", IssuedAt: now, Expiry: now.Add(time.Hour)}
	src := token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		calls++
		if calls == 1 {
			return tok, nil
		}
		return token.Token{}, permanentErr{}
	})
	if _, err := newCache(src, "k", Options{Dir: dir, Now: clock}).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(55 * time.Minute) // inside the margin, 5 min left: stale-usable
	_, err := newCache(src, "k", Options{Dir: dir, Now: clock}).Fetch(context.Background())
	if !errors.As(err, new(permanentErr)) {
		t.Fatalf("err = %v, want the permanent error, not the stale token", err)
	}
	// Another invocation during the backoff must not serve it either.
	r, err := newCache(src, "k", Options{Dir: dir, Now: clock}).Fetch(context.Background())
	if err == nil || r.Token.AccessToken != "" {
		t.Fatalf("second invocation: token %q, err %v; want an error", r.Token.AccessToken, err)
	}
	if calls != 2 {
		t.Errorf("source called %d times, want 2 (the backoff holds the second invocation)", calls)
	}
}

func TestStaleRefreshIsBounded(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	first := true
	src := token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		if first {
			first = false
			return token.Token{AccessToken: "tok-1", IssuedAt: now, Expiry: now.Add(time.Hour)}, nil
		}
		// A hung IAM: this refresh may take StaleRefreshBudget at most.
		if dl, ok := ctx.Deadline(); !ok || dl.After(time.Now().Add(StaleRefreshBudget)) {
			t.Errorf("the refresh has %v, more than StaleRefreshBudget", time.Until(dl))
		}
		return token.Token{}, context.DeadlineExceeded
	})
	if _, err := newCache(src, "k", Options{Dir: dir, Now: clock}).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	now = now.Add(55 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	r, err := newCache(src, "k", Options{Dir: dir, Now: clock}).Fetch(ctx)
	if err != nil || !r.Stale || r.Token.AccessToken != "tok-1" {
		t.Fatalf("got %+v, %v; want the stale token", r.Origin, err)
	}
}
