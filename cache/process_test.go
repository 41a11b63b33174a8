package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// Environment of TestHelperProcess, set only when TestMultiProcess runs the
// test binary as a child.
const (
	envHelper   = "ICR_CACHE_TEST_HELPER"
	envDir      = "ICR_CACHE_TEST_DIR"
	envCalls    = "ICR_CACHE_TEST_CALLS"
	envStart    = "ICR_CACHE_TEST_START"
	envFail     = "ICR_CACHE_TEST_FAIL" // the source fails after this delay
	tokenPrefix = "TOKEN="
	// Further lines a child prints for the outage tests.
	stalePrefix  = "STALE="
	errPrefix    = "ERR="
	recentPrefix = "RECENT="
	donePrefix   = "DONE"
)

// TestMultiProcess is the kubelet's worst case: many plugin processes start
// at once on a cold cache. Exactly one may call the source.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 32 processes")
	}
	const procs = 32
	base := t.TempDir()
	// runChildren starts every child, then lets them race at once.
	got, calls := runChildren(t, procs, base, filepath.Join(base, "cache"))
	if calls != 1 {
		t.Errorf("%d source calls, want 1", calls)
	}
	for i, o := range got {
		if o.token == "" || o.err != "" {
			t.Fatalf("child %d got no token (error %q)", i, o.err)
		}
		if o.token != got[0].token {
			t.Errorf("child %d got %q, child 0 got %q", i, o.token, got[0].token)
		}
	}
}

// TestHelperProcess is one plugin process of TestMultiProcess; it does
// nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestMultiProcess")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if _, err := os.Stat(os.Getenv(envStart)); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("never told to start")
		}
		time.Sleep(time.Millisecond)
	}
	pid := strconv.Itoa(os.Getpid())
	var failAfter time.Duration
	if v := os.Getenv(envFail); v != "" {
		var err error
		if failAfter, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	src := token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		f, err := os.OpenFile(filepath.Join(os.Getenv(envCalls), pid), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return token.Token{}, err
		}
		f.Close()
		if failAfter > 0 {
			time.Sleep(failAfter)
			return token.Token{}, errOutage
		}
		time.Sleep(100 * time.Millisecond)
		now := time.Now()
		return token.Token{AccessToken: "token-of-" + pid, IssuedAt: now, Expiry: now.Add(time.Hour)}, nil
	})
	logger, logs := newLogCapture()
	r, err := newCache(src, testKey, Options{Dir: os.Getenv(envDir), Logger: logger}).Fetch(ctx)
	t.Log(logs.String())
	if failAfter == 0 && err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%s\n", donePrefix)
	if err != nil {
		var rfe *RecentFailureError
		fmt.Printf("%s%s\n%s%v\n", errPrefix, err, recentPrefix, errors.As(err, &rfe))
		return
	}
	if r.Stale {
		var rfe *RecentFailureError
		fmt.Printf("%s%v\n%s%v\n", stalePrefix, r.Stale, recentPrefix, errors.As(r.RefreshErr, &rfe))
	}
	fmt.Printf("%s%s\n", tokenPrefix, r.Token.AccessToken)
}
