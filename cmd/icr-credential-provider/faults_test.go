package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// The fault matrix: the built binary, run as the kubelet runs it, against
// the emulator with one fault injected into IAM, the VPC metadata service or
// the cache directory, each with a cold cache (nothing cached), a warm one
// (a valid entry written by an earlier successful run) and, for the network
// faults, a stale one (that entry, still valid but inside its refresh
// margin). docs/reliability.md shows this table; TestFaultMatrixDoc keeps
// the two in step (ICR_UPDATE_DOCS=1 rewrites the document's table).

// cacheState is what the cache holds when the faulted invocation runs.
type cacheState int

const (
	cold  cacheState = iota // empty cache dir
	warm                    // a fresh entry from an earlier successful run
	stale                   // that entry rewritten to be inside its refresh margin, 5 min from expiry
)

func (c cacheState) String() string { return [...]string{"cold", "warm", "stale"}[c] }

// outcome is what the faulted invocation must do.
type outcome int

const (
	failed    outcome = iota // exit 1, empty stdout, one line on stderr
	newToken                 // exit 0, a token granted during this run
	fromCache                // exit 0, the warm token, no IAM call
	served                   // exit 0, the stale token with a short cacheDuration
)

// diskFault is what is done to the cache directory.
type diskFault int

const (
	diskOK diskFault = iota
	diskReadOnly
	diskFull
	diskCorrupt
	diskEntryOwner
	diskDirOwner
)

type faultRow struct {
	Area    string // IAM, metadata, disk
	Fault   string // short name for the table
	Cache   cacheState
	VPC     bool             // node identity from the metadata service; else an API key
	EP      iamtest.Endpoint // where Inject goes
	Inject  *iamtest.Fault
	Refused bool // the metadata/IAM port is closed: the emulator is stopped
	Disk    diskFault
	Want    outcome
	Stderr  []string // failure: what the one line must say
	Essence string   // failure: the line's gist, for the table
	Warn    string   // success: the one warning line on stderr must say this; "" for an empty stderr
	Bound   time.Duration
}

func (r faultRow) name() string {
	return strings.ReplaceAll(r.Area+" "+r.Fault+" "+r.Cache.String(), " ", "_")
}

// Time bounds. Assertions of bounds, generous for a loaded CI machine; the
// plugin's own limit is 25 s, the kubelet kills at 60 s.
const (
	quickBound    = 10 * time.Second // no waiting involved: retries with sub-second backoff at most
	retryAfterBnd = 15 * time.Second // three waits of Retry-After: 2
	mdHangBound   = 8 * time.Second  // one 3 s attempt, not retried
	iamHangBound  = 30 * time.Second // 10 s attempts until the 25 s invocation deadline
)

type netFault struct {
	area, name string
	vpc        bool
	ep         iamtest.Endpoint
	f          *iamtest.Fault
	refused    bool
	// permanent: the identity is rejected, so a stale token is not served
	// (stale-if-error is for outages)
	permanent bool
	// what happens on a cold cache
	want    outcome
	stderr  []string
	essence string
	bound   time.Duration
}

func netFaults() []netFault {
	iam := func(name string, f iamtest.Fault, want outcome, bound time.Duration, essence string, stderr ...string) netFault {
		return netFault{area: "IAM", name: name, ep: iamtest.EndpointIAMToken, f: &f, want: want, stderr: stderr, essence: essence, bound: bound}
	}
	md := func(name string, ep iamtest.Endpoint, f iamtest.Fault, bound time.Duration, essence string, stderr ...string) netFault {
		return netFault{area: "metadata", name: name, vpc: true, ep: ep, f: &f, want: failed, stderr: stderr, essence: essence, bound: bound}
	}
	return []netFault{
		iam("500", iamtest.HTTPError(500), failed, quickBound, "IAM failed (HTTP 500, 4 attempts): IAM is failing, cached token served while valid", "HTTP 500", "4 attempts", "IAM is failing"),
		iam("503", iamtest.HTTPError(503), failed, quickBound, "IAM failed (HTTP 503, 4 attempts): IAM is failing", "HTTP 503", "4 attempts", "IAM is failing"),
		iam("429 Retry-After: 2", iamtest.TooManyRequests("2"), failed, retryAfterBnd, "IAM rate-limited (HTTP 429, 4 attempts): make --cache-dir writable so invocations share one token", "HTTP 429", "4 attempts", "--cache-dir"),
		iam("429 no Retry-After", iamtest.TooManyRequests(""), failed, quickBound, "IAM rate-limited (HTTP 429, 4 attempts)", "HTTP 429", "4 attempts"),
		iam("hang", iamtest.Hang(), failed, iamHangBound, "IAM did not answer in time: check the network path, HTTPS_PROXY/NO_PROXY, --private-endpoints", "did not answer in time", "HTTPS_PROXY"),
		iam("connection reset", iamtest.Fault{Kind: iamtest.FaultReset}, failed, quickBound, "cannot reach IAM (4 attempts): check the network path", "cannot reach IAM", "4 attempts", "network path"),
		iam("malformed JSON", iamtest.Fault{Kind: iamtest.FaultMalformedJSON}, failed, quickBound, "IAM answered with an unusable body: check for a proxy rewriting answers", "unusable body", "proxy"),
		iam("no access_token", iamtest.Fault{Kind: iamtest.FaultMissingAccessToken}, failed, quickBound, "IAM answered with an unusable body (no access_token)", "unusable body", "no access_token"),
		// expires_in is what the plugin relies on; expiration only
		// cross-checks it against the server's clock.
		iam("no expiration", iamtest.Fault{Kind: iamtest.FaultMissingExpiration}, newToken, quickBound, "", ""),
		iam("expires_in 0", iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: 0}, failed, quickBound, "IAM answered with an unusable body (expires_in is 0)", "unusable body", "expires_in is 0"),
		iam("expires_in -60", iamtest.Fault{Kind: iamtest.FaultExpiresIn, ExpiresIn: -60}, failed, quickBound, "IAM answered with an unusable body (expires_in is -60)", "unusable body", "expires_in is -60"),
		md("hang", iamtest.EndpointMetadataToken, iamtest.Hang(), mdHangBound, "metadata service did not answer in time: is it enabled? ('ibmcloud is instance-update … --metadata-service true')", "did not answer in time", "metadata service enabled"),
		{area: "metadata", name: "refused", vpc: true, refused: true, want: failed, bound: quickBound,
			essence: "cannot reach the metadata service (connection refused): not a VPC instance with the metadata service on", stderr: []string{"connection refused", "metadata-service true"}},
		permanent(md("401", iamtest.EndpointMetadataIAMToken, iamtest.APIError(401, "not_authorized", "The instance identity token is not valid."), quickBound, "metadata service refused (HTTP 401, not_authorized)", "HTTP 401", "not_authorized")),
		permanent(md("profile not linked", iamtest.EndpointMetadataIAMToken, iamtest.APIError(403, "trusted_profile_not_linked", "Trusted profile is not linked to this instance."), quickBound, "metadata service refused (HTTP 403, trusted_profile_not_linked): link the profile ('ibmcloud iam trusted-profile-link-create …')", "HTTP 403", "trusted-profile-link-create")),
		md("malformed", iamtest.EndpointMetadataToken, iamtest.Fault{Kind: iamtest.FaultMalformedJSON}, quickBound, "metadata service answered with an unusable body", "unusable body"),
	}
}

// permanent marks a fault as a rejection of the identity.
func permanent(nf netFault) netFault { nf.permanent = true; return nf }

// faultMatrix is every row of the matrix.
func faultMatrix() []faultRow {
	var rows []faultRow
	for _, nf := range netFaults() {
		for _, c := range []cacheState{cold, warm, stale} {
			r := faultRow{Area: nf.area, Fault: nf.name, Cache: c, VPC: nf.vpc, EP: nf.ep, Inject: nf.f, Refused: nf.refused, Bound: nf.bound}
			switch {
			case c == warm:
				// A fresh cached token: no network call at all.
				r.Want, r.Bound = fromCache, quickBound
			case nf.want != failed:
				r.Want = nf.want
			case c == stale && !nf.permanent:
				// The refresh is bounded (cache.StaleRefreshBudget), then
				// the cached token is served.
				r.Want, r.Warn, r.Bound = served, "serving the cached token", min(nf.bound, quickBound)
			default:
				r.Want, r.Stderr, r.Essence = failed, nf.stderr, nf.essence
			}
			rows = append(rows, r)
		}
	}
	disk := func(name string, d diskFault, c cacheState, want outcome, warn string) faultRow {
		return faultRow{Area: "disk", Fault: name, Cache: c, Disk: d, Want: want, Warn: warn, Bound: quickBound}
	}
	rows = append(rows,
		// The disk layer is an optimisation: an unusable cache dir degrades
		// to no sharing (one warning on stderr), never to a failure.
		disk("read-only", diskReadOnly, cold, newToken, "Token cache lock unavailable"),
		disk("read-only", diskReadOnly, warm, fromCache, ""),
		disk("full", diskFull, cold, newToken, "Could not write the token cache"),
		disk("full", diskFull, warm, fromCache, ""),
		// An entry that cannot be trusted is ignored and replaced (said at
		// -v=2 only).
		disk("corrupt entry", diskCorrupt, cold, newToken, ""),
		disk("corrupt entry", diskCorrupt, warm, newToken, ""),
		disk("entry owned by another uid", diskEntryOwner, warm, newToken, ""),
		disk("dir owned by another uid", diskDirOwner, cold, newToken, "Token cache on disk disabled"),
		disk("dir owned by another uid", diskDirOwner, warm, newToken, "Token cache on disk disabled"),
	)
	// Never trusted, even when IAM is down.
	r := disk("corrupt entry + IAM 503", diskCorrupt, warm, failed, "")
	r.EP, r.Inject = iamtest.EndpointIAMToken, ptr(iamtest.HTTPError(503))
	r.Stderr, r.Essence = []string{"HTTP 503"}, "IAM failed (HTTP 503): the corrupt entry is not served"
	rows = append(rows, r)
	r = disk("read-only + IAM 500", diskReadOnly, cold, failed, "")
	r.EP, r.Inject = iamtest.EndpointIAMToken, ptr(iamtest.HTTPError(500))
	r.Stderr, r.Essence = []string{"HTTP 500"}, "IAM failed (HTTP 500)"
	rows = append(rows, r)
	return rows
}

// faultMatrixParallel is how many rows run at once. Most of a row's time is
// spent waiting (hangs, backoff), so more than the number of cores.
const faultMatrixParallel = 8

func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	rows := faultMatrix()
	keyFile := filepath.Join(t.TempDir(), "apikey")
	if err := os.WriteFile(keyFile, []byte(iamtest.DefaultAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Subtests started from goroutines run concurrently whatever -parallel
	// is, which on a 2-core machine would otherwise serialise the waits.
	sem := make(chan struct{}, faultMatrixParallel)
	var wg sync.WaitGroup
	start := time.Now()
	for _, row := range rows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(row.name(), func(t *testing.T) { runFaultRow(t, row, keyFile) })
		}()
	}
	wg.Wait()
	t.Logf("%d rows in %v", len(rows), time.Since(start).Round(time.Second))
}

func runFaultRow(t *testing.T, row faultRow, keyFile string) {
	emu := iamtest.NewServer()
	t.Cleanup(emu.Close)
	cacheDir, ok := rowCacheDir(t, row)
	if !ok {
		return // skipped, reason logged
	}
	args := emulatorArgs(emu, cacheDir)
	if row.VPC {
		args = append(args, "--profile-id", iamtest.DefaultProfileID)
	} else {
		args = append(args, "--api-key-file", keyFile)
	}
	req := requestJSON("v1", "us.icr.io/team/app")

	var warmToken string
	if row.Cache != cold {
		r := runPlugin(t, invocation{Args: args, Stdin: req, Process: true})
		if r.Code != 0 {
			t.Fatalf("warm-up run: exit %d: %s", r.Code, r.Stderr)
		}
		warmToken = decodeStrict(t, r.Stdout, "v1").Auth["us.icr.io"].Password
		if row.Cache == stale {
			makeEntryStale(t, cacheDir)
		}
	}
	coldName := ""
	if row.Cache == cold && row.Disk == diskCorrupt {
		// The entry's name is a hash of the identity (which includes the
		// emulator's URL): learn it from a run with a scratch cache dir.
		scratch := append(emulatorArgs(emu, filepath.Join(t.TempDir(), "scratch")), args[6:]...)
		r := runPlugin(t, invocation{Args: scratch, Stdin: req, Process: true})
		if r.Code != 0 {
			t.Fatalf("scratch run: exit %d: %s", r.Code, r.Stderr)
		}
		coldName = filepath.Base(entryFile(t, scratch[5], false))
	}
	applyDiskFault(t, row, cacheDir, coldName)

	emu.Reset()
	if row.Inject != nil {
		emu.SetFault(row.EP, *row.Inject)
	}
	if row.Refused {
		emu.Close() // its port is now closed: connection refused
	}
	r := runPlugin(t, invocation{Args: args, Stdin: req, Process: true})
	secrets := []string{iamtest.DefaultAPIKey, warmToken}

	if strings.Contains(r.Stderr, "panic") || strings.Contains(r.Stderr, "goroutine ") {
		t.Errorf("panic output: %s", r.Stderr)
	}
	if r.Elapsed > row.Bound {
		t.Errorf("took %v, bound %v", r.Elapsed.Round(time.Millisecond), row.Bound)
	}
	grants := -1
	if !row.Refused {
		grants = emu.Grants()
	}
	defer func() {
		// For the record (go test -v): what an operator would see.
		msg := r.Stderr
		for _, s := range secrets {
			if s != "" {
				msg = redactFor(msg, s)
			}
		}
		t.Logf("exit %d in %v; stderr: %s", r.Code, r.Elapsed.Round(time.Millisecond), strings.TrimSpace(msg))
	}()
	switch row.Want {
	case failed:
		assertFailure(t, r, row.Stderr...)
		assertNoSecrets(t, r, secrets...)
		return
	}
	if r.Code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", r.Code, r.Stderr)
	}
	resp := decodeStrict(t, r.Stdout, "v1")
	a := resp.Auth["us.icr.io"]
	if resp.CacheKeyType != "Global" || a.Username != provider.Username || a.Password == "" || len(resp.Auth) != len(provider.DefaultHosts()) {
		t.Fatalf("response: cacheKeyType %s, %d hosts, user %q", resp.CacheKeyType, len(resp.Auth), a.Username)
	}
	d := resp.CacheDuration.Duration
	switch row.Want {
	case newToken:
		if warmToken != "" && a.Password == warmToken {
			t.Errorf("served the old token, want a new one")
		}
		if grants != 1 {
			t.Errorf("%d grants, want 1", grants)
		}
		if d < 45*time.Minute || d > 50*time.Minute {
			t.Errorf("cacheDuration %v, want about 50m", d)
		}
	case fromCache:
		if a.Password != warmToken {
			t.Errorf("did not serve the cached token")
		}
		if grants > 0 {
			t.Errorf("%d grants, want none: the token was cached", grants)
		}
		if d < 45*time.Minute || d > 50*time.Minute {
			t.Errorf("cacheDuration %v, want about 50m", d)
		}
	case served:
		if a.Password != warmToken {
			t.Errorf("did not serve the cached (stale) token")
		}
		if d <= 0 || d > provider.StaleCacheDuration {
			t.Errorf("cacheDuration %v for a stale token, want (0, %v]", d, provider.StaleCacheDuration)
		}
	}
	secrets = append(secrets, a.Password)
	assertNoSecrets(t, r, secrets...)
	switch lines := strings.Split(strings.TrimSpace(r.Stderr), "\n"); {
	case row.Warn == "" && r.Stderr != "":
		t.Errorf("stderr is not empty on success: %d lines", len(lines))
	case row.Warn != "" && (len(lines) != 1 || !strings.Contains(r.Stderr, row.Warn)):
		t.Errorf("stderr has %d lines, want one warning saying %q", len(lines), row.Warn)
	}
	if row.Disk == diskCorrupt || row.Disk == diskEntryOwner {
		assertEntryReplaced(t, cacheDir, a.Password)
	}
}

// rowCacheDir returns the row's cache dir: on a tmpfs of its own for the
// read-only and full rows (which need root and mount(8)).
func rowCacheDir(t *testing.T, row faultRow) (string, bool) {
	switch row.Disk {
	case diskReadOnly, diskFull:
		mnt, err := mountTmpfs(t, "64k")
		if err != nil {
			if row.Disk == diskReadOnly && row.Cache == cold {
				// Without mount(8): a cache dir that cannot be created.
				f := filepath.Join(t.TempDir(), "file")
				os.WriteFile(f, nil, 0o600)
				t.Logf("cannot mount a tmpfs (%v); read-only simulated with a cache dir under a regular file", err)
				return filepath.Join(f, "cache"), true
			}
			t.Skipf("SKIPPED, cannot mount a tmpfs to simulate a %s disk: %v", row.Fault, err)
			return "", false
		}
		dir := filepath.Join(mnt, "cache")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		return dir, true
	case diskEntryOwner, diskDirOwner:
		if os.Geteuid() != 0 {
			t.Skipf("SKIPPED, %s needs root to chown", row.Fault)
			return "", false
		}
	}
	return filepath.Join(t.TempDir(), "cache"), true
}

func mountTmpfs(t *testing.T, size string) (string, error) {
	if os.Geteuid() != 0 {
		return "", errors.New("not root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "icr-fault-test", mnt).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mount: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", mnt, err, out)
			exec.Command("umount", "-l", mnt).Run()
		}
	})
	return mnt, nil
}

// applyDiskFault does the row's disk fault to dir; coldName is the entry's
// file name, for planting one on a cold cache.
func applyDiskFault(t *testing.T, row faultRow, dir, coldName string) {
	switch row.Disk {
	case diskReadOnly:
		if strings.Contains(dir, string(filepath.Separator)+"file"+string(filepath.Separator)) {
			return // the fallback: nothing to remount
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", filepath.Dir(dir)).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("cache dir still writable: %v", err)
		}
	case diskFull:
		os.MkdirAll(dir, 0o700)
		f, err := os.Create(filepath.Join(filepath.Dir(dir), "filler"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write(make([]byte, 1<<20))
		f.Close()
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
		}
	case diskCorrupt:
		os.MkdirAll(dir, 0o700)
		entry := entryFile(t, dir, row.Cache == cold)
		if entry == "" {
			entry = filepath.Join(dir, coldName)
		}
		// Truncated JSON in place of the entry.
		if err := os.WriteFile(entry, []byte(`{"version":1,"key_sha256":"`), 0o600); err != nil {
			t.Fatal(err)
		}
	case diskEntryOwner:
		if err := os.Chown(entryFile(t, dir, false), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	case diskDirOwner:
		os.MkdirAll(dir, 0o700)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
}

// entryFile is the path of the one entry in dir.
func entryFile(t *testing.T, dir string, allowMissing bool) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(m) != 1 {
		if allowMissing {
			return ""
		}
		t.Fatalf("%d entries in %s, want 1", len(m), dir)
	}
	return m[0]
}

// makeEntryStale rewrites the entry so that its token, still valid for 5
// minutes, is past its refresh point (1 h life, 10 min margin): what a node
// sees when IAM fails in the last minutes of a token's life.
func makeEntryStale(t *testing.T, dir string) {
	t.Helper()
	p := entryFile(t, dir, false)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	e["issued_at"] = now.Add(-55 * time.Minute).Format(time.RFC3339Nano)
	e["expiry"] = now.Add(5 * time.Minute).Format(time.RFC3339Nano)
	if b, err = json.Marshal(e); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// assertEntryReplaced checks that the untrusted entry was replaced by a
// trusted one holding token.
func assertEntryReplaced(t *testing.T, dir, token string) {
	t.Helper()
	p := entryFile(t, dir, false)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var e struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(b, &e) != nil || e.AccessToken != token {
		t.Errorf("the untrusted entry was not replaced by the new token's")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 {
		t.Errorf("replaced entry: uid %d mode %o, err %v", st.Uid, st.Mode&0o777, err)
	}
}

// The table in docs/reliability.md between these markers is rendered from
// faultMatrix(); TestFaultMatrixDoc fails when they differ, and rewrites the
// document with ICR_UPDATE_DOCS=1.
const (
	matrixDoc   = "../../docs/reliability.md"
	matrixBegin = "<!-- fault-matrix:begin (generated by TestFaultMatrixDoc from faults_test.go; do not edit) -->"
	matrixEnd   = "<!-- fault-matrix:end -->"
)

func renderFaultMatrix() string {
	var b strings.Builder
	b.WriteString("| # | area | fault | cache | exit | stdout | stderr | bound |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for i, r := range faultMatrix() {
		exit, stdout, stderr := "0", "", "empty"
		switch r.Want {
		case failed:
			exit, stdout, stderr = "1", "empty", "one line: "+r.Essence
		case newToken:
			stdout = "response, new token, cacheDuration ≈ 50 m"
		case fromCache:
			stdout = "response, cached token, cacheDuration ≈ 50 m, no IAM call"
		case served:
			stdout = "response, cached token, cacheDuration ≤ 1 m (stale-if-error)"
		}
		if r.Want != failed && r.Warn != "" {
			stderr = "one warning: " + r.Warn
		}
		fault := r.Fault
		if r.Inject != nil {
			fault += " (`" + r.EP.String() + "`: `" + r.Inject.String() + "`)"
		}
		if r.Refused {
			fault += " (emulator stopped: closed loopback port)"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", i+1, r.Area, strings.ReplaceAll(fault, "|", "\\|"), r.Cache, exit, stdout, strings.ReplaceAll(stderr, "|", "\\|"), r.Bound)
	}
	return b.String()
}

func TestFaultMatrixDoc(t *testing.T) {
	doc, err := os.ReadFile(matrixDoc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, matrixBegin), strings.Index(s, matrixEnd)
	if i < 0 || j < i {
		t.Fatalf("%s has no fault matrix markers", matrixDoc)
	}
	want := s[:i+len(matrixBegin)] + "\n" + renderFaultMatrix() + s[j:]
	if want == s {
		return
	}
	if os.Getenv("ICR_UPDATE_DOCS") == "1" {
		if err := os.WriteFile(matrixDoc, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the fault matrix in %s is out of date with faults_test.go: run ICR_UPDATE_DOCS=1 go test -run TestFaultMatrixDoc ./cmd/icr-credential-provider", matrixDoc)
}
