package cache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

var errIAMDown = errors.New("iam: request token: 503 Service Unavailable")

// step is one Token call in a scenario, after advancing the clock.
type step struct {
	advance    time.Duration
	newProcess bool   // a new Source (empty memory) for this step
	srcErr     error  // the source fails in this step (nil: it works)
	wantCalls  int32  // total source calls after the step
	wantOrigin Origin // ignored when wantErr
	wantStale  bool
	wantErr    error
	wantRecent bool // the error is a *RecentFailureError (no source call)
}

func TestFetchScenarios(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		staleMin time.Duration
		disk     bool
		steps    []step
	}{{
		name:     "fresh token is reused from memory",
		lifetime: time.Hour,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 30 * time.Minute, wantCalls: 1, wantOrigin: FromMemory},
			{advance: 19*time.Minute + 59*time.Second, wantCalls: 1, wantOrigin: FromMemory}, // 49m59s
		},
	}, {
		name:     "hour token is refreshed RefreshMargin before expiry",
		lifetime: time.Hour,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 50 * time.Minute, wantCalls: 2, wantOrigin: FromSource},
		},
	}, {
		name:     "short token is refreshed at 80% of its lifetime",
		lifetime: 5 * time.Minute,
		disk:     true,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 3*time.Minute + 59*time.Second, wantCalls: 1, wantOrigin: FromMemory},
			{advance: 2 * time.Second, wantCalls: 2, wantOrigin: FromSource}, // 4m01s > 4m
			{advance: time.Second, wantCalls: 2, wantOrigin: FromMemory},
		},
	}, {
		name:     "stale-if-error serves a valid token from memory",
		lifetime: time.Hour,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 55 * time.Minute, srcErr: errIAMDown, wantCalls: 2, wantOrigin: FromMemory, wantStale: true},
			{advance: 3 * time.Minute, srcErr: errIAMDown, wantCalls: 3, wantOrigin: FromMemory, wantStale: true}, // 2 min left
		},
	}, {
		name:     "stale-if-error serves a valid token from disk",
		lifetime: time.Hour,
		disk:     true,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 55 * time.Minute, newProcess: true, srcErr: errIAMDown, wantCalls: 2, wantOrigin: FromDisk, wantStale: true},
		},
	}, {
		name:     "fresh token is reused from disk by a new process",
		lifetime: time.Hour,
		disk:     true,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 49 * time.Minute, newProcess: true, wantCalls: 1, wantOrigin: FromDisk},
			{advance: 2 * time.Minute, newProcess: true, wantCalls: 2, wantOrigin: FromSource},
			{newProcess: true, wantCalls: 2, wantOrigin: FromDisk},
		},
	}, {
		name:     "no stale token with less than StaleMinRemaining left",
		lifetime: time.Hour,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 59*time.Minute + 1*time.Second, srcErr: errIAMDown, wantCalls: 2, wantErr: errIAMDown}, // 59 s left
		},
	}, {
		name:     "custom StaleMinRemaining",
		lifetime: time.Hour,
		staleMin: 10 * time.Minute,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 50*time.Minute + time.Second, srcErr: errIAMDown, wantCalls: 2, wantErr: errIAMDown},
		},
	}, {
		name:     "negative StaleMinRemaining disables stale-if-error",
		lifetime: time.Hour,
		staleMin: -1,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: 51 * time.Minute, srcErr: errIAMDown, wantCalls: 2, wantErr: errIAMDown},
		},
	}, {
		name:     "never served past expiry",
		lifetime: time.Hour,
		disk:     true,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{advance: time.Hour, srcErr: errIAMDown, wantCalls: 2, wantErr: errIAMDown},
			{advance: time.Hour, newProcess: true, srcErr: errIAMDown, wantCalls: 3, wantErr: errIAMDown},
		},
	}, {
		name:     "error with an empty cache",
		lifetime: time.Hour,
		disk:     true,
		steps: []step{
			{srcErr: errIAMDown, wantCalls: 1, wantErr: errIAMDown},
			// The failure holds back calls for FailureBackoff, in this
			// process too.
			{advance: FailureBackoff - time.Second, srcErr: nil, wantCalls: 1, wantErr: errIAMDown, wantRecent: true},
			{advance: time.Second, srcErr: nil, wantCalls: 2, wantOrigin: FromSource},
		},
	}, {
		name:     "expired token from the source is an error",
		lifetime: -time.Second,
		steps: []step{
			{wantCalls: 1, wantErr: ErrInvalidToken},
		},
	}, {
		name:     "token too short-lived to keep is returned but not reused",
		lifetime: time.Nanosecond,
		disk:     true,
		steps: []step{
			{wantCalls: 1, wantOrigin: FromSource},
			{wantCalls: 2, wantOrigin: FromSource},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newClock()
			fake := newSource(clock.Now, tc.lifetime)
			logger, logs := newLogCapture()
			opts := Options{Now: clock.Now, StaleMinRemaining: tc.staleMin, Logger: logger}
			if tc.disk {
				opts.Dir = filepath.Join(t.TempDir(), "cache")
			}
			s := newCache(fake.source(), testKey, opts)
			var issued []string
			for i, st := range tc.steps {
				clock.Advance(st.advance)
				fake.setErr(st.srcErr)
				if st.newProcess {
					s = newCache(fake.source(), testKey, opts)
				}
				r, err := s.Fetch(context.Background())
				if got := fake.calls.Load(); got != st.wantCalls {
					t.Errorf("step %d: %d source calls, want %d", i, got, st.wantCalls)
				}
				if st.wantErr != nil {
					if !errors.Is(err, st.wantErr) {
						t.Errorf("step %d: err %v, want %v", i, err, st.wantErr)
					}
					var rfe *RecentFailureError
					if errors.As(err, &rfe) != st.wantRecent {
						t.Errorf("step %d: err %v, RecentFailureError %v", i, err, st.wantRecent)
					}
					if r.Token.AccessToken != "" {
						t.Errorf("step %d: a token came with the error", i)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if r.Origin != st.wantOrigin || r.Stale != st.wantStale {
					t.Errorf("step %d: origin %v stale %v, want %v %v", i, r.Origin, r.Stale, st.wantOrigin, st.wantStale)
				}
				if st.wantStale {
					if !errors.Is(r.RefreshErr, st.srcErr) {
						t.Errorf("step %d: RefreshErr %v, want %v", i, r.RefreshErr, st.srcErr)
					}
					if !r.Token.Valid(clock.Now()) {
						t.Errorf("step %d: stale token is not valid", i)
					}
					if logs.loudLines(errIAMDown.Error()) == 0 {
						t.Errorf("step %d: stale-if-error not logged:\n%s", i, logs)
					}
				} else if r.RefreshErr != nil {
					t.Errorf("step %d: RefreshErr %v on a fresh token", i, r.RefreshErr)
				}
				if !st.wantStale && !r.Token.Fresh(clock.Now()) && r.Origin != FromSource {
					t.Errorf("step %d: cached token served past its refresh point", i)
				}
				if !r.Token.Valid(clock.Now()) && tc.lifetime > 0 {
					t.Errorf("step %d: token served past expiry", i)
				}
				issued = append(issued, r.Token.AccessToken)
			}
			for _, tok := range issued {
				assertNoSecret(t, logs, tok)
			}
		})
	}
}

func TestTokenImplementsSource(t *testing.T) {
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	var ts token.Source = newCache(fake.source(), testKey, Options{Now: clock.Now})
	tok, err := ts.Token(context.Background())
	if err != nil || tok.AccessToken != "SECRET-token-1" {
		t.Fatalf("Token() = %v, %v", tok, err)
	}
}

func TestDiskSharedBetweenSources(t *testing.T) {
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	dir := filepath.Join(t.TempDir(), "a", "b", "cache")
	logger, logs := newLogCapture()
	opts := Options{Dir: dir, Now: clock.Now, Logger: logger}

	first, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
	if err != nil || first.Origin != FromSource {
		t.Fatalf("first: %+v, %v", first, err)
	}
	// A new Source stands for a new process: memory is empty, disk is not.
	clock.Advance(10 * time.Minute)
	second, err := newCache(fake.source(), testKey, opts).Fetch(context.Background())
	if err != nil || second.Origin != FromDisk || second.Token.AccessToken != first.Token.AccessToken {
		t.Fatalf("second: %+v, %v", second, err)
	}
	if !second.Token.Expiry.Equal(first.Token.Expiry) || !second.Token.IssuedAt.Equal(first.Token.IssuedAt) {
		t.Errorf("disk round trip changed times: %v -> %v", first.Token, second.Token)
	}
	// Another identity does not see it.
	other, err := newCache(fake.source(), testKey+"-other", opts).Fetch(context.Background())
	if err != nil || other.Origin != FromSource {
		t.Fatalf("other identity: %+v, %v", other, err)
	}
	if got := fake.calls.Load(); got != 2 {
		t.Errorf("%d source calls, want 2", got)
	}

	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v, %v; want 0700", fi.Mode(), err)
	}
	e := readStoredEntry(t, dir)
	if e.Version != entryVersion || e.KeySHA256 != hashOf(testKey) || e.AccessToken != first.Token.AccessToken {
		t.Errorf("stored entry version %d hash %s", e.Version, e.KeySHA256)
	}

	// The key appears nowhere on disk; the token only inside entries.
	names, _ := os.ReadDir(dir)
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n.Name()))
		for _, secret := range []string{testKey, "Profile-0123456789"} {
			if strings.Contains(n.Name(), secret) || strings.Contains(string(b), secret) {
				t.Errorf("%s holds the key in clear", n.Name())
			}
		}
		if strings.Contains(n.Name(), "SECRET") {
			t.Errorf("file name %s holds a token", n.Name())
		}
		if strings.HasSuffix(n.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", n.Name())
		}
	}
	assertNoSecret(t, logs, first.Token.AccessToken)
	assertNoSecret(t, logs, other.Token.AccessToken)
}

func TestConcurrentGoroutinesOneCall(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory only", true: "with disk"}[disk], func(t *testing.T) {
			fake := newSource(time.Now, time.Hour)
			fake.delay = 50 * time.Millisecond
			opts := Options{}
			if disk {
				opts.Dir = t.TempDir()
			}
			logger, _ := newLogCapture()
			opts.Logger = logger
			s := newCache(fake.source(), testKey, opts)
			const n = 64
			var wg sync.WaitGroup
			tokens := make([]string, n)
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					tok, err := s.Token(ctx)
					tokens[i], errs[i] = tok.AccessToken, err
				})
			}
			close(start)
			wg.Wait()
			for i := range n {
				if errs[i] != nil || tokens[i] != tokens[0] {
					t.Fatalf("goroutine %d: %q, %v; goroutine 0: %q", i, tokens[i], errs[i], tokens[0])
				}
			}
			if got := fake.calls.Load(); got != 1 {
				t.Errorf("%d source calls, want 1", got)
			}
		})
	}
}

func TestConcurrentSourcesSameDirOneCall(t *testing.T) {
	// Separate Sources share nothing in memory, like separate processes; the
	// flock on the lock file alone must make it one call.
	fake := newSource(time.Now, time.Hour)
	fake.delay = 50 * time.Millisecond
	dir := t.TempDir()
	logger, _ := newLogCapture()
	const n = 32
	var wg sync.WaitGroup
	tokens := make([]string, n)
	for i := range n {
		wg.Go(func() {
			s := newCache(fake.source(), testKey, Options{Dir: dir, Logger: logger})
			tok, err := s.Token(context.Background())
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok.AccessToken
		})
	}
	wg.Wait()
	if got := fake.calls.Load(); got != 1 {
		t.Errorf("%d source calls, want 1", got)
	}
	for i := range n {
		if tokens[i] != tokens[0] {
			t.Errorf("source %d got another token", i)
		}
	}
}

// holdLock takes the flock a refreshing process would hold, until release.
func holdLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, hashOf(testKey)+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { f.Close() }) }
	t.Cleanup(release)
	return release
}

// TestLockWait: a caller waits for the process that holds the lock, and
// stops waiting when that process stores a token, when LockWait elapses,
// or early enough before its context's deadline to make its own call. The
// order of events is asserted, not their timing.
func TestLockWait(t *testing.T) {
	tests := []struct {
		name       string
		lockWait   time.Duration
		ctxTimeout time.Duration
		// otherWrites: the lock holder stores a fresh token once the
		// caller is waiting.
		otherWrites bool
		wantOrigin  Origin
		wantCalls   int32
	}{{
		name: "holder's token is picked up while waiting", lockWait: time.Minute,
		otherWrites: true, wantOrigin: FromDisk, wantCalls: 0,
	}, {
		name: "LockWait elapses: call the source directly", lockWait: 50 * time.Millisecond,
		wantOrigin: FromSource, wantCalls: 1,
	}, {
		name: "context deadline minus safety slice ends the wait", lockWait: time.Minute, ctxTimeout: 400 * time.Millisecond,
		wantOrigin: FromSource, wantCalls: 1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var calls atomic.Int32
			src := token.SourceFunc(func(ctx context.Context) (token.Token, error) {
				calls.Add(1)
				// The wait left time for this call.
				if ctx.Err() != nil {
					t.Errorf("the source was called with its context done: %v", ctx.Err())
				}
				now := time.Now()
				return token.Token{AccessToken: "SECRET-own", IssuedAt: now, Expiry: now.Add(time.Hour)}, nil
			})
			logger, logs := newLogCapture()
			s := newCache(src, testKey, Options{Dir: dir, LockWait: tc.lockWait, Logger: logger})
			release := holdLock(t, dir)
			if tc.otherWrites {
				polling := make(chan struct{})
				var reads atomic.Int32
				sys := s.file().sys
				s.file().sys.openat = func(dirfd int, path string, flags int, mode uint32) (int, error) {
					if strings.HasSuffix(path, ".json") && reads.Add(1) == 2 {
						close(polling)
					}
					return sys.openat(dirfd, path, flags, mode)
				}
				go func() {
					<-polling
					now := time.Now()
					b := entryJSON(t, "SECRET-from-other-process", now, now.Add(time.Hour), nil)
					tmp := entryPath(dir) + ".tmp"
					_ = os.WriteFile(tmp, b, 0o600)
					_ = os.Rename(tmp, entryPath(dir))
					release()
				}()
			}
			ctx := context.Background()
			if tc.ctxTimeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctxTimeout)
				defer cancel()
			}
			r, err := s.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if r.Origin != tc.wantOrigin || calls.Load() != tc.wantCalls {
				t.Errorf("origin %v after %d calls, want %v after %d", r.Origin, calls.Load(), tc.wantOrigin, tc.wantCalls)
			}
			if tc.wantCalls > 0 && !strings.Contains(logs.String(), "calling the token source directly") {
				t.Errorf("fallback not logged:\n%s", logs)
			}
			assertNoSecret(t, logs, r.Token.AccessToken)
		})
	}
}

func TestInProcessWaitFallback(t *testing.T) {
	fake := newSource(time.Now, time.Hour)
	logger, logs := newLogCapture()
	mem := NewMemory()
	s := newCache(fake.source(), testKey, Options{Memory: mem, LockWait: 50 * time.Millisecond, Logger: logger})
	mem.record(hashOf(testKey)).sem <- struct{}{} // a refresh in this process that never ends
	r, err := s.Fetch(context.Background())
	if err != nil || r.Origin != FromSource || fake.calls.Load() != 1 {
		t.Fatalf("origin %v, %v, %d calls", r.Origin, err, fake.calls.Load())
	}
	if !strings.Contains(logs.String(), "calling the token source directly") {
		t.Errorf("fallback not logged:\n%s", logs)
	}
	// A cancelled context ends the wait at once; the source decides.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fake.setErr(context.Canceled)
	mem.c.Flush()
	mem.record(hashOf(testKey)).sem <- struct{}{}
	if _, err := s.Fetch(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestMemoryServesTheProcess: the process's memory is one store for every
// caching source: a second source for the same identity in the same
// process (as the plugin makes one per request) is served from memory,
// without reading the disk or calling its source.
func TestMemoryServesTheProcess(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	mem := NewMemory()
	first := newSource(clock.Now, time.Hour)
	r, err := newCache(first.source(), testKey, Options{Memory: mem, Dir: dir, Now: clock.Now}).Fetch(context.Background())
	if err != nil || r.Origin != FromSource {
		t.Fatalf("first: %v, %v", r.Origin, err)
	}
	// The disk entry goes away: only memory can answer now.
	if err := os.Remove(entryPath(dir)); err != nil {
		t.Fatal(err)
	}
	second := newSource(clock.Now, time.Hour)
	clock.Advance(30 * time.Minute)
	r2, err := newCache(second.source(), testKey, Options{Memory: mem, Dir: dir, Now: clock.Now}).Fetch(context.Background())
	if err != nil || r2.Origin != FromMemory || r2.Token.AccessToken != r.Token.AccessToken || second.calls.Load() != 0 {
		t.Fatalf("second source: %v from %v, %d calls; want the first token from memory", err, r2.Origin, second.calls.Load())
	}
	// Another identity is not.
	r3, err := New(second.source(), testKey+"-other", Options{Memory: mem, Dir: dir, Now: clock.Now}).Fetch(context.Background())
	if err != nil || r3.Origin != FromSource {
		t.Fatalf("other identity: %v, %v", r3.Origin, err)
	}
	// Past its refresh point, memory does not answer.
	clock.Advance(21 * time.Minute)
	r4, err := New(second.source(), testKey, Options{Memory: mem, Dir: dir, Now: clock.Now}).Fetch(context.Background())
	if err != nil || r4.Origin != FromSource {
		t.Fatalf("after the refresh point: %v, %v", r4.Origin, err)
	}
}

func TestWarmPathStartsNoGoroutine(t *testing.T) {
	dir := t.TempDir()
	clock := newClock()
	fake := newSource(clock.Now, time.Hour)
	logger, _ := newLogCapture()
	if _, err := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger}).Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	s := newCache(fake.source(), testKey, Options{Dir: dir, Now: clock.Now, Logger: logger})
	r, err := s.Fetch(context.Background())
	if err != nil || r.Origin != FromDisk {
		t.Fatalf("%+v, %v", r, err)
	}
	if after := runtime.NumGoroutine(); after != before {
		t.Errorf("goroutines %d -> %d", before, after)
	}
}

func TestOriginString(t *testing.T) {
	for o, want := range map[Origin]string{FromSource: "source", FromMemory: "memory", FromDisk: "disk"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", o, o.String(), want)
		}
	}
}
