package secret

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

const key = "Qz7vK2mP9xR4tL8wN3bJ6hF1sD5gY0cA"

func TestRedactForms(t *testing.T) {
	var s Set
	s.Add(key, "", "abc") // empty and short strings are not secrets
	for name, text := range map[string]string{
		"plain":           "key " + key + " end",
		"upper":           "key " + strings.ToUpper(key),
		"url-encoded":     "k=" + url.QueryEscape(key+"/+="),
		"base64":          "b " + base64.StdEncoding.EncodeToString([]byte(key)),
		"basic auth pair": "Basic " + base64.StdEncoding.EncodeToString([]byte("iambearer:"+key)),
		"base64 url":      base64.URLEncoding.EncodeToString([]byte("xx" + key)),
		"a piece":         "cut: " + key[5:16],
		"two halves":      "code=" + key[:16] + " message=" + key[16:],
	} {
		t.Run(name, func(t *testing.T) {
			got := s.Redact(text)
			if !strings.Contains(got, Mask) {
				t.Fatalf("nothing redacted: %q", got)
			}
			for i := 0; i+MinPiece <= len(key); i++ {
				if strings.Contains(strings.ToLower(got), strings.ToLower(key[i:i+MinPiece])) {
					t.Errorf("piece %q survives in %q", key[i:i+MinPiece], got)
				}
			}
		})
	}
	if got := s.Redact("an ordinary message with abc and 00000000"); got != "an ordinary message with abc and 00000000" {
		t.Errorf("ordinary text changed: %q", got)
	}
}

// TestLineRedactsBeforeCutting: a secret straddling the bound does not
// survive as a prefix.
func TestLineRedactsBeforeCutting(t *testing.T) {
	var s Set
	s.Add(key)
	text := strings.Repeat("x", 95) + key
	got := s.Line(text, 100)
	if strings.Contains(got, key[:5]) || len(got) > 100+len("…") {
		t.Errorf("Line = %q", got)
	}
	if got := s.Line("a\n b\t\tc", 0); got != "a b c" {
		t.Errorf("fold: %q", got)
	}
	if got := Cut("héllo", 2); got != "h…" {
		t.Errorf("Cut on a rune boundary: %q", got)
	}
}

func TestWriter(t *testing.T) {
	var s Set
	s.Add(key)
	var b bytes.Buffer
	n, err := s.Writer(&b).Write([]byte("log line " + key + "\n"))
	if err != nil || n != len("log line "+key+"\n") || strings.Contains(b.String(), key) {
		t.Fatalf("%d, %v: %q", n, err, b.String())
	}
}

func TestFingerprint(t *testing.T) {
	if f := Fingerprint(key); len(f) != 8 || strings.Contains(key, f) || f != Fingerprint(key) || f == Fingerprint(key+"x") {
		t.Errorf("Fingerprint = %q", f)
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode and 日本":             "plain text, ünïcode and 日本",
		"\x1b[32m[ ok ]\x1b[0m":                  `\x1b[32m[ ok ]\x1b[0m`,
		"bell\a del\x7f nul\x00 tab\t cr\r lf\n": `bell\x07 del\x7f nul\x00 tab\x09 cr\x0d lf\x0a`,
		"c1 \u009b31m":                           `c1 \u009b31m`,
		"bidi \u202eko ]\u202c":                  `bidi \u202eko ]\u202c`,
		"zero\u200bwidth, line\u2028sep":         `zero\u200bwidth, line\u2028sep`,
		"bad \xff\xfe byte":                      `bad \xff\xfe byte`,
		"replacement \ufffd":                     `replacement \ufffd`,
		"tag \U000e0041":                         `tag \U000e0041`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
	var s Set
	if got := s.Line("a\x1b]0;title\x07 b\n\x1b[2Jc", 0); got != `a\x1b]0;title\x07 b \x1b[2Jc` {
		t.Errorf("Line = %q", got)
	}
}

// TestSetKeepsTheRecent: a long-running process adds a new token on every
// check; the set keeps the MaxSecrets most recently added (an Add of a
// secret already there makes it the most recent) and forgets the rest, so
// its memory is bounded however long the process runs.
func TestSetKeepsTheRecent(t *testing.T) {
	var s Set
	tok := func(i int) string { return fmt.Sprintf("%x", sha256.Sum256([]byte{byte(i)})) }
	redacted := func(v string) bool { return s.Redact("x "+v+" y") == "x "+Mask+" y" }
	s.Add(key)
	for i := range 3 * MaxSecrets {
		s.Add(tok(i))
		s.Add(key) // in use: read again on every check
		if len(s.entries) > MaxSecrets {
			t.Fatalf("%d secrets kept, more than %d", len(s.entries), MaxSecrets)
		}
	}
	if !redacted(key) {
		t.Error("a secret added again on every check was forgotten")
	}
	newest := 3*MaxSecrets - 1
	for i := newest - (MaxSecrets - 2); i <= newest; i++ {
		if !redacted(tok(i)) {
			t.Errorf("token %d of the %d most recent is not redacted: %q", i, MaxSecrets-1, s.Redact("x "+tok(i)+" y"))
		}
	}
	if old := tok(newest - MaxSecrets); redacted(old) {
		t.Errorf("token %d, older than the %d kept, is still in the set", newest-MaxSecrets, MaxSecrets)
	}
}
