package cache_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// This target goes through the package's public API only (New, Fetch), so
// that it keeps checking the contract whatever the entry parser looks like
// inside: an entry file with arbitrary content never yields a token unless
// it is a well-formed entry, of the format the package itself writes, for
// the right key, and still valid.

const fuzzKey = "apikey\x00https://iam.example\x00fuzz-identity"

var fuzzNow = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

const sourceToken = "FROM-SOURCE-token"

var errSource = errors.New("fake token source failure")

// quiet is a logger that drops everything (a sinkless logger would mean
// klog on stderr).
var quiet = funcr.New(func(prefix, args string) {}, funcr.Options{})

func entryName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:]) + ".json"
}

func fuzzSource(fail bool) token.Source {
	return token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		if fail {
			return token.Token{}, errSource
		}
		return token.Token{AccessToken: sourceToken, IssuedAt: fuzzNow, Expiry: fuzzNow.Add(time.Hour)}, nil
	})
}

// writtenEntry returns an entry as the package itself writes it for key,
// holding a token valid at fuzzNow for lifetime.
func writtenEntry(tb testing.TB, key, tok string, issued time.Time, lifetime time.Duration) []byte {
	tb.Helper()
	dir := tb.TempDir()
	src := token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		return token.Token{AccessToken: tok, IssuedAt: issued, Expiry: issued.Add(lifetime)}, nil
	})
	c := cache.New(src, key, cache.Options{Memory: cache.NewMemory(), Dir: dir, Now: func() time.Time { return issued }, Logger: quiet})
	if _, err := c.Fetch(context.Background()); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, entryName(key)))
	if err != nil {
		tb.Fatalf("the cache wrote no entry file where expected: %v", err)
	}
	return b
}

func FuzzDiskEntry(f *testing.F) {
	valid := writtenEntry(f, fuzzKey, "DISK-token-valid", fuzzNow.Add(-5*time.Minute), time.Hour)
	var format struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(valid, &format); err != nil {
		f.Fatalf("the cache's own entry is not JSON: %v", err)
	}
	wantHash := strings.TrimSuffix(entryName(fuzzKey), ".json")

	f.Add(valid, false)
	f.Add(valid, true)
	// Inside the refresh margin but valid: stale-if-error material.
	f.Add(writtenEntry(f, fuzzKey, "DISK-token-stale", fuzzNow.Add(-55*time.Minute), time.Hour), true)
	// Expired.
	f.Add(writtenEntry(f, fuzzKey, "DISK-token-expired", fuzzNow.Add(-2*time.Hour), time.Hour), true)
	// Another key's entry, copied in place.
	f.Add(writtenEntry(f, "another identity", "DISK-token-other-key", fuzzNow.Add(-5*time.Minute), time.Hour), true)
	f.Add(valid[:len(valid)/2], true)
	f.Add([]byte{}, true)
	f.Add([]byte("null"), true)
	f.Add([]byte("{}"), false)
	f.Add([]byte(`{"version":1,"key_sha256":"`+wantHash+`","access_token":"DISK-x","expiry":"2031-05-06T08:08:09Z"}`), true)
	f.Add([]byte(`{"version":99,"key_sha256":"`+wantHash+`","access_token":"DISK-x","issued_at":"2031-05-06T07:00:00Z","expiry":"2031-05-06T08:08:09Z"}`), true)
	f.Add([]byte(`{"version":1,"key_sha256":"`+strings.ToUpper(wantHash)+`","access_token":"DISK-x","issued_at":"2031-05-06T07:00:00Z","expiry":"2031-05-06T08:08:09Z"}`), true)
	f.Add([]byte(`{"version":1,"key_sha256":"`+wantHash+`","access_token":"","issued_at":"2031-05-06T07:00:00Z","expiry":"2031-05-06T08:08:09Z"}`), true)
	f.Add([]byte(`{"version":1,"KEY_SHA256":"`+wantHash+`","Access_Token":"DISK-x","expiry":"9999-12-31T23:59:59Z","expiry":"0001-01-01T00:00:00Z"}`), true)

	f.Fuzz(func(t *testing.T, data []byte, sourceFails bool) {
		dir := tmpfsDir(t)
		if err := os.WriteFile(filepath.Join(dir, entryName(fuzzKey)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := cache.New(fuzzSource(sourceFails), fuzzKey, cache.Options{Memory: cache.NewMemory(), Dir: dir, Now: func() time.Time { return fuzzNow }, Logger: quiet})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := c.Fetch(ctx)
		if err != nil {
			if !sourceFails {
				// A working source is only not called while a recorded
				// outage backs off; any error must then be a token
				// source error, not a crash of the parser.
				t.Logf("error with a working source: %v", err)
			}
			return
		}
		tok := res.Token
		if tok.AccessToken == sourceToken {
			if sourceFails {
				t.Fatal("the failing source's token?")
			}
			return
		}
		// A token from disk: the entry must be well formed, for this key,
		// and the token exactly the entry's.
		var e struct {
			Version     int       `json:"version"`
			KeySHA256   string    `json:"key_sha256"`
			AccessToken string    `json:"access_token"`
			Expiry      time.Time `json:"expiry"`
		}
		if err := json.Unmarshal(data, &e); err != nil {
			t.Fatalf("a token (origin %v) was served from an entry that is not JSON", res.Origin)
		}
		switch {
		case e.Version < 1 || e.Version > format.Version:
			// Earlier versions may be read on upgrade; nothing else.
			t.Fatalf("served a token from an entry of format version %d, the package writes %d", e.Version, format.Version)
		case e.KeySHA256 != wantHash:
			t.Fatalf("served a token from an entry for another key")
		case e.AccessToken == "" || tok.AccessToken != e.AccessToken:
			t.Fatalf("served token is not the entry's")
		case !tok.Expiry.Equal(e.Expiry):
			t.Fatalf("served expiry %v, entry says %v", tok.Expiry, e.Expiry)
		case !tok.Valid(fuzzNow):
			t.Fatalf("served a token that expired at %v (now %v)", tok.Expiry, fuzzNow)
		}
		if res.Stale {
			if !sourceFails {
				t.Fatal("a stale token was served although the source works")
			}
			if tok.Expiry.Sub(fuzzNow) < cache.DefaultStaleMinRemaining {
				t.Fatalf("served stale with only %v left", tok.Expiry.Sub(fuzzNow))
			}
		} else if !tok.Fresh(fuzzNow) {
			t.Fatalf("served a token past its refresh point as fresh")
		}
	})
}

// tmpfsDir is a temporary directory on /dev/shm when there is one: the cache
// fsyncs every write, which costs milliseconds on a disk and nothing on
// tmpfs (where the real cache lives, /run).
func tmpfsDir(t *testing.T) string {
	dir, err := os.MkdirTemp("/dev/shm", "icr-cache-fuzz-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
