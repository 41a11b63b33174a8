package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// The proof of issue 3 with real processes: the built binary, a shared cache
// dir, the emulator counting IAM token grants.

// TestCacheProcesses64Cold starts 64 plugin processes at once on a cold cache
// dir, as a Deployment roll-out with 64 distinct images would: every one
// answers with a valid response and the emulator grants exactly one token.
func TestCacheProcesses64Cold(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	args := append(emulatorArgs(emu, filepath.Join(t.TempDir(), "cache")), "--profile-id", iamtest.DefaultProfileID)

	const n = 64
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = runPlugin(t, invocation{Process: true, Args: args, Stdin: requestJSON("v1", fmt.Sprintf("us.icr.io/team/app-%d", i))})
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(t0)

	tokens := map[string]bool{}
	var slowest time.Duration
	for i, r := range results {
		if r.Code != 0 {
			t.Errorf("process %d: exit %d: %s", i, r.Code, r.Stderr)
			continue
		}
		resp := decodeStrict(t, r.Stdout, "v1")
		a := resp.Auth["us.icr.io"]
		if a.Username != provider.Username || a.Password == "" {
			t.Errorf("process %d: no credentials for us.icr.io", i)
		}
		tokens[a.Password] = true
		assertNoSecrets(t, r, a.Password)
		slowest = max(slowest, r.Elapsed)
	}
	if g := emu.Grants(); g != 1 {
		t.Errorf("%d IAM token grants for %d concurrent processes on a cold cache, want exactly 1", g, n)
	}
	if len(tokens) != 1 {
		t.Errorf("%d distinct tokens handed out, want 1", len(tokens))
	}
	t.Logf("%d processes in %v (slowest %v), %d grant(s)", n, elapsed.Round(time.Millisecond), slowest.Round(time.Millisecond), emu.Grants())
}

// TestCacheSequential500 runs 500 invocations one after another for 50
// different images on several registries: one grant for the token's
// lifetime (1 h by default, so exactly one), and every answer valid.
func TestCacheSequential500(t *testing.T) {
	if testing.Short() {
		t.Skip("500 processes; skipped with -short")
	}
	t.Parallel()
	emu := iamtest.NewServer()
	defer emu.Close()
	args := append(emulatorArgs(emu, filepath.Join(t.TempDir(), "cache")), "--profile-id", iamtest.DefaultProfileID)
	hosts := []string{"us.icr.io", "de.icr.io", "icr.io", "private.jp.icr.io", "registry.ng.bluemix.net"}

	var first string
	t0 := time.Now()
	for i := range 500 {
		host := hosts[i%len(hosts)]
		image := fmt.Sprintf("%s/team/app-%d", host, i%50)
		r := runPlugin(t, invocation{Args: args, Stdin: requestJSON("v1", image)})
		if r.Code != 0 {
			t.Fatalf("invocation %d (%s): exit %d: %s", i, image, r.Code, r.Stderr)
		}
		resp := decodeStrict(t, r.Stdout, "v1")
		tok := resp.Auth[host].Password
		if tok == "" {
			t.Fatalf("invocation %d: no credentials for %s", i, host)
		}
		if first == "" {
			first = tok
		} else if tok != first {
			t.Fatalf("invocation %d got a different token: the cache was not used", i)
		}
		if d := resp.CacheDuration.Duration; d < 45*time.Minute || d > 50*time.Minute {
			t.Fatalf("invocation %d: cacheDuration %v, want about 50m", i, d)
		}
	}
	if g := emu.Grants(); g != 1 {
		t.Errorf("%d grants for 500 invocations within one token lifetime, want 1", g)
	}
	t.Logf("500 sequential invocations in %v (%v each), %d grant(s)", time.Since(t0).Round(time.Millisecond), (time.Since(t0) / 500).Round(time.Microsecond), emu.Grants())
}

// TestCacheShortLifetime uses 10 s tokens (refresh margin 2 s, 20 % of the
// life): while IAM works, every invocation gets a token outside its margin,
// a cacheDuration that ends before the margin starts, and one grant per
// refresh period; once IAM fails, the cached token is served until its
// refresh point and never after (it has less than the 1 min that
// stale-if-error needs), and nothing is ever served past expiry.
func TestCacheShortLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about 30 s; skipped with -short")
	}
	t.Parallel()
	const lifetime = 10 * time.Second
	const margin = lifetime / 5
	// Token expiries are known to the second (the JWT's exp), and the
	// plugin measures a token's life from before its request.
	const slack = time.Second

	emu := iamtest.NewServer(iamtest.WithTokenLifetime(lifetime))
	defer emu.Close()
	args := append(emulatorArgs(emu, filepath.Join(t.TempDir(), "cache")), "--api-key-file", writeAPIKeyFile(t))
	req := requestJSON("v1", "us.icr.io/team/app")

	type answer struct {
		at, exp time.Time
		tok     string
	}
	check := func(phase string, r result, before time.Time) (answer, bool) {
		t.Helper()
		if r.Code != 0 {
			return answer{}, false
		}
		resp := decodeStrict(t, r.Stdout, "v1")
		tok := resp.Auth["us.icr.io"].Password
		c, err := iamtest.DecodeClaims(tok)
		if err != nil {
			t.Fatalf("%s: token: %v", phase, err)
		}
		exp := time.Unix(c.Expiry, 0).Add(slack)
		after := time.Now()
		if !after.Before(exp) {
			t.Errorf("%s: served a token %v past its expiry", phase, after.Sub(exp))
		}
		if left := exp.Sub(after); left < margin-slack {
			t.Errorf("%s: served a token with %v left, inside its %v refresh margin", phase, left.Round(time.Millisecond), margin)
		}
		if end := before.Add(resp.CacheDuration.Duration); end.After(exp.Add(-margin)) {
			t.Errorf("%s: cacheDuration %v lets the kubelet keep the token %v into its refresh margin", phase, resp.CacheDuration.Duration, end.Sub(exp.Add(-margin)))
		}
		return answer{at: after, exp: exp, tok: tok}, true
	}

	// Phase 1: IAM works, invocations every 200 ms for 1.8 token lifetimes
	// (two refreshes).
	tokens := map[string]bool{}
	var last answer
	t0 := time.Now()
	for time.Since(t0) < 18*time.Second {
		before := time.Now()
		r := runPlugin(t, invocation{Args: args, Stdin: req})
		s, ok := check("IAM up", r, before)
		if !ok {
			t.Fatalf("IAM up: exit %d: %s", r.Code, r.Stderr)
		}
		tokens[s.tok] = true
		last = s
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(t0)
	grants := emu.Grants()
	// A token is replaced at 80 % of its life: one grant per 8 s, give or
	// take the first and the last.
	period := lifetime - margin
	minG, maxG := int(elapsed/lifetime), int(elapsed/(period-slack))+1
	if grants < minG || grants > maxG || len(tokens) != grants {
		t.Errorf("%d grants (%d distinct tokens) in %v with %v tokens, want %d..%d", grants, len(tokens), elapsed.Round(time.Millisecond), lifetime, minG, maxG)
	}
	t.Logf("IAM up: %d grants, %d tokens in %v", grants, len(tokens), elapsed.Round(time.Millisecond))

	// Phase 2: IAM fails. Until the cached token's refresh point the
	// plugin may serve it; after it, it must fail (too little life left
	// for stale-if-error), and at no point serve anything expired.
	emu.SetFault(iamtest.EndpointIAMToken, iamtest.HTTPError(503))
	var failures, successes int
	for time.Now().Before(last.exp.Add(2 * time.Second)) {
		before := time.Now()
		r := runPlugin(t, invocation{Args: args, Stdin: req})
		if s, ok := check("IAM down", r, before); ok {
			successes++
			if s.tok != last.tok {
				t.Errorf("IAM down: served a token that is not the cached one")
			}
		} else {
			failures++
			assertFailure(t, r)
			if time.Now().Before(last.exp.Add(-margin - slack)) {
				t.Errorf("IAM down: failed %v before the cached token's refresh point: %s", time.Until(last.exp.Add(-margin)).Round(time.Millisecond), r.Stderr)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if failures == 0 {
		t.Error("IAM down: no failure once the cached token was past its refresh point")
	}
	t.Logf("IAM down: %d served from cache before the refresh point, %d failed after it", successes, failures)
}

func writeAPIKeyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "apikey")
	if err := os.WriteFile(p, []byte(iamtest.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
