// Package secret keeps secrets out of everything the plugin writes: stderr,
// log lines, the token cache's failure records and doctor's report. Every
// secret the process handles (API key, instance identity token, IAM token,
// service-account token, registry token) is added to a Set when it is
// obtained; every text that leaves the process goes through Line (errors,
// records) or Writer (logs), which remove any echo of any of them:
//
//   - the secret itself, in any letter case;
//   - its URL-encoded (query and path), JSON-escaped and base64 forms
//     (standard and URL alphabets, padded or not, at any offset inside a
//     longer base64 text, so base64("iambearer:"+token), the Basic
//     authorization header, is covered);
//   - any piece of MinPiece or more characters of any of those forms, so
//     that a secret split across fields or cut short is still caught.
//
// Line redacts first and cuts afterwards: a secret straddling the length
// bound cannot survive as a prefix. The package depends on the standard
// library alone.
package secret

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"sync"
	"unicode/utf8"
)

// MinPiece is the shortest piece of a secret that is recognised on its own.
// Secrets shorter than this are only recognised whole; secrets shorter than
// MinSecret are not recognised at all (they would mangle ordinary text).
const (
	MinPiece  = 8
	MinSecret = 4
)

// Mask replaces what was removed.
const Mask = "[redacted]"

// Set is a set of secrets. The zero value is empty and ready; a Set is safe
// for concurrent use. Adding is cheap; the index used by Redact is built on
// the first Redact after an Add.
type Set struct {
	mu      sync.Mutex
	secrets map[string]bool
	index   *index // nil: rebuild
}

// Default is the process's set: what Add, Redact, Line and Writer use.
var Default = &Set{}

// Add adds secrets to the process's set.
func Add(secrets ...string) { Default.Add(secrets...) }

// Redact removes every echo of the process's secrets from s.
func Redact(s string) string { return Default.Redact(s) }

// Line is Default.Line.
func Line(s string, max int) string { return Default.Line(s, max) }

// Writer is Default.Writer.
func Writer(w io.Writer) io.Writer { return Default.Writer(w) }

// Add adds secrets; empty and too short strings are ignored.
func (s *Set) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) < MinSecret || s.secrets[v] {
			continue
		}
		if s.secrets == nil {
			s.secrets = map[string]bool{}
		}
		s.secrets[v] = true
		s.index = nil
	}
}

// Redact returns text with every echo of every secret replaced by Mask.
func (s *Set) Redact(text string) string {
	if text == "" {
		return text
	}
	s.mu.Lock()
	if s.index == nil && len(s.secrets) > 0 {
		s.index = newIndex(s.secrets)
	}
	ix := s.index
	s.mu.Unlock()
	if ix == nil {
		return text
	}
	return ix.redact(text)
}

// Line is the one step every error text and persisted record goes through:
// secrets removed, white space (new lines included) folded to single
// spaces, then cut to at most max bytes (max <= 0: no bound) on a rune
// boundary, with "…" marking a cut.
func (s *Set) Line(text string, max int) string {
	return Cut(Fold(s.Redact(text)), max)
}

// Fold puts text on one line: every run of white space becomes one space.
func Fold(text string) string { return strings.Join(strings.Fields(text), " ") }

// Cut bounds text to max bytes (max <= 0: no bound) on a rune boundary,
// ending a cut text with "…". Cut never redacts: use Line for anything that
// may hold a secret.
func Cut(text string, max int) string {
	if max <= 0 || len(text) <= max {
		return text
	}
	i := max
	for i > 0 && !utf8.RuneStart(text[i]) {
		i--
	}
	return text[:i] + "…"
}

// Writer returns a writer that redacts each Write before passing it to w.
// Loggers write one record per call, so a secret is never split between
// two writes.
func (s *Set) Writer(w io.Writer) io.Writer { return &writer{set: s, w: w} }

type writer struct {
	set *Set
	w   io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.set.Redact(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Fingerprint identifies a secret without revealing it: the first 8 hex
// digits of its SHA-256, as the plugin's logs and doctor show it.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:4])
}

// index finds pieces of secrets in a text: every form of every secret is
// kept whole, and as the set of its MinPiece-byte pieces, all in lower case.
// A piece of fewer than minDistinct different bytes ("00000000",
// "-1111-22") is not a fingerprint of anything: ordinary text has such runs,
// and random secrets almost never do; those parts are still caught whole.
type index struct {
	whole  []string
	pieces map[string]bool
}

const minDistinct = 4

func newIndex(secrets map[string]bool) *index {
	ix := &index{pieces: map[string]bool{}}
	for sec := range secrets {
		for _, f := range forms(sec) {
			f = lowerASCII(f)
			if len(f) < MinSecret {
				continue
			}
			ix.whole = append(ix.whole, f)
			for i := 0; i+MinPiece <= len(f); i++ {
				if p := f[i : i+MinPiece]; distinct(p) >= minDistinct {
					ix.pieces[p] = true
				}
			}
		}
	}
	return ix
}

// distinct counts the different bytes of a short string.
func distinct(s string) int {
	var seen [256]bool
	n := 0
	for i := 0; i < len(s); i++ {
		if !seen[s[i]] {
			seen[s[i]] = true
			n++
		}
	}
	return n
}

// redact marks every byte of text covered by a known piece, then replaces
// each marked run with Mask.
func (ix *index) redact(text string) string {
	lower := lowerASCII(text)
	var marked []bool
	mark := func(i, n int) {
		if marked == nil {
			marked = make([]bool, len(text))
		}
		for j := i; j < i+n; j++ {
			marked[j] = true
		}
	}
	for i := 0; i+MinPiece <= len(lower); i++ {
		if ix.pieces[lower[i:i+MinPiece]] {
			mark(i, MinPiece)
		}
	}
	for _, w := range ix.whole {
		for off := 0; ; {
			j := strings.Index(lower[off:], w)
			if j < 0 {
				break
			}
			mark(off+j, len(w))
			off += j + 1
		}
	}
	if marked == nil {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		if !marked[i] {
			b.WriteByte(text[i])
			i++
			continue
		}
		b.WriteString(Mask)
		for i < len(text) && marked[i] {
			i++
		}
		// A marked run may end inside a multi-byte rune: drop its tail.
		for i < len(text) && !utf8.RuneStart(text[i]) {
			i++
		}
	}
	return b.String()
}

// forms are the ways a secret can appear in a text: as it is, URL-encoded,
// JSON-escaped, and base64-encoded at each of the three offsets it can
// have inside a longer encoded text (only the characters that depend on
// the secret alone are kept).
func forms(sec string) []string {
	out := []string{sec, url.QueryEscape(sec), url.PathEscape(sec)}
	if b, err := json.Marshal(sec); err == nil {
		out = append(out, string(b[1:len(b)-1]))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for off := 0; off < 3; off++ {
			e := enc.EncodeToString(append(make([]byte, off), sec...))
			// Keep the characters made of the secret's bits alone: not those
			// that mix in the offset's bytes or whatever follows the secret.
			start := (off*8 + 5) / 6
			end := (off + len(sec)) * 8 / 6
			if end > start {
				out = append(out, e[start:end])
			}
		}
	}
	return out
}

// lowerASCII lower-cases ASCII letters only, so that byte offsets stay the
// same as in the original text.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
