package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// testKey looks like an identity's cache key; it must never appear on disk.
const testKey = "vpc-metadata|https://iam.example|profile=Profile-0123456789"

// t0 is the fake clock's start; far from the real time on purpose.
var t0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeSource counts calls and hands out numbered tokens valid for lifetime,
// or fails with err when set.
type fakeSource struct {
	clock    func() time.Time
	lifetime time.Duration
	delay    time.Duration
	calls    atomic.Int32
	mu       sync.Mutex
	err      error
}

func newSource(clock func() time.Time, lifetime time.Duration) *fakeSource {
	return &fakeSource{clock: clock, lifetime: lifetime}
}

func (f *fakeSource) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSource) source() token.Source {
	return token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		n := f.calls.Add(1)
		if f.delay > 0 {
			time.Sleep(f.delay)
		}
		f.mu.Lock()
		err := f.err
		f.mu.Unlock()
		if err != nil {
			return token.Token{}, err
		}
		now := f.clock()
		return token.Token{AccessToken: fmt.Sprintf("SECRET-token-%d", n), IssuedAt: now, Expiry: now.Add(f.lifetime)}, nil
	})
}

// logCapture is a logr sink that records every line at every verbosity.
type logCapture struct {
	mu   *sync.Mutex
	buf  *strings.Builder
	name string
	kv   []any
}

func newLogCapture() (logr.Logger, *logCapture) {
	c := &logCapture{mu: &sync.Mutex{}, buf: &strings.Builder{}}
	return logr.New(c), c
}

func (c *logCapture) Init(logr.RuntimeInfo) {}
func (c *logCapture) Enabled(int) bool      { return true }

func (c *logCapture) Info(level int, msg string, kv ...any) {
	c.write(fmt.Sprintf("I%d %s", level, msg), kv)
}

func (c *logCapture) Error(err error, msg string, kv ...any) {
	c.write(fmt.Sprintf("E %s err=%q", msg, err), kv)
}

func (c *logCapture) write(head string, kv []any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.WriteString(c.name + " " + head)
	for _, v := range append(append([]any{}, c.kv...), kv...) {
		// %+v as well as %v, in case a sink prints structs field by field.
		fmt.Fprintf(c.buf, " %v|%+v", v, v)
	}
	c.buf.WriteString("\n")
}

func (c *logCapture) WithValues(kv ...any) logr.LogSink {
	n := *c
	n.kv = append(append([]any{}, c.kv...), kv...)
	return &n
}

func (c *logCapture) WithName(name string) logr.LogSink {
	n := *c
	n.name = c.name + "/" + name
	return &n
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// lines counts the log lines at V(0) (warnings and errors) containing s.
func (c *logCapture) loudLines(s string) int {
	n := 0
	for _, l := range strings.Split(c.String(), "\n") {
		if strings.Contains(l, s) && (strings.Contains(l, " I0 ") || strings.Contains(l, " E ")) {
			n++
		}
	}
	return n
}

// assertNoSecret fails if secret appears in the logs or in any of texts.
func assertNoSecret(t *testing.T, logs *logCapture, secret string, texts ...string) {
	t.Helper()
	if strings.Contains(logs.String(), secret) {
		t.Errorf("secret %q appears in the logs:\n%s", secret, logs)
	}
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q appears in %q", secret, s)
		}
	}
}

// hashOf is the file name stem for key.
func hashOf(key string) string { return hashKey(key) }

// newCache is New with a memory of its own unless opts gives one: each
// call stands for a new process.
func newCache(src token.Source, key string, opts Options) *Reused {
	if opts.Memory == nil {
		opts.Memory = NewMemory()
	}
	return New(src, key, opts)
}

// file is the file layer of a cache made by newCache.
func (r *Reused) file() *File { return r.src.(*File) }

func entryPath(dir string) string { return filepath.Join(dir, hashOf(testKey)+".json") }

// entryJSON is a well-formed entry for testKey, modifiable by mutate.
func entryJSON(t *testing.T, token string, issued, expiry time.Time, mutate func(*entry)) []byte {
	t.Helper()
	e := entry{Version: entryVersion, KeySHA256: hashOf(testKey), AccessToken: token, IssuedAt: issued, Expiry: expiry}
	if mutate != nil {
		mutate(&e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readStoredEntry reads the entry for testKey as a test would, failing if it
// is not a private regular file.
func readStoredEntry(t *testing.T, dir string) entry {
	t.Helper()
	p := entryPath(dir)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatalf("entry: %v", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("entry mode %v, want regular 0600", fi.Mode())
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var e entry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("entry is not JSON: %v", err)
	}
	return e
}
