// Package secret keeps secrets out of everything the plugin writes. Every
// secret the process handles is added to a Set when it is obtained; every
// text that leaves the process goes through Line (errors, records) or
// Writer (logs), which remove any echo of any of them: the secret in any
// letter case; its URL-encoded, JSON-escaped and base64 forms (either
// alphabet, at any offset in a longer base64 text, so that a Basic
// authorization header is covered); and any piece of MinPiece or more
// characters of those, so that a secret split or cut short is still caught.
// Line redacts before it cuts: no secret survives as a prefix.
package secret

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// MinPiece is the shortest piece of a secret recognised on its own; shorter
// secrets are only recognised whole, and those shorter than MinSecret not
// at all (they would mangle ordinary text).
const (
	MinPiece  = 8
	MinSecret = 4
)

// Mask replaces what was removed.
const Mask = "[redacted]"

// MaxSecrets is how many secrets a Set keeps: the most recently added. A
// long-running process (the node agent) gets a new token on every check,
// each indexed in ~200 KB; without a bound its memory and the cost of each
// Add would grow for as long as it runs. A key or token still in use is
// added again whenever it is read or obtained, which keeps it.
const MaxSecrets = 32

// Set is a set of secrets. The zero value is empty and ready; a Set is safe
// for concurrent use.
type Set struct {
	mu      sync.Mutex
	entries []*index // one per secret, least recently added first; never changed in place
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

// Add adds secrets, or makes them the most recent; empty and too short
// strings are ignored. Beyond MaxSecrets the least recent is forgotten.
func (s *Set) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range secrets {
		if len(v) < MinSecret {
			continue
		}
		// A new slice: Redact reads the old one without the lock.
		entries := slices.Clone(s.entries)
		var ix *index
		if i := slices.IndexFunc(entries, func(e *index) bool { return e.secret == v }); i >= 0 {
			ix = entries[i]
			entries = slices.Delete(entries, i, i+1)
		} else {
			ix = newIndex(v)
		}
		entries = append(entries[max(0, len(entries)-MaxSecrets+1):], ix)
		s.entries = entries
	}
}

// Redact returns text with every echo of every secret replaced by Mask.
func (s *Set) Redact(text string) string {
	if text == "" {
		return text
	}
	s.mu.Lock()
	entries := s.entries
	s.mu.Unlock()
	if len(entries) == 0 {
		return text
	}
	return redact(text, entries)
}

// Line is the one step every error text and persisted record goes through:
// secrets removed, white space folded to single spaces (Fold), control
// characters escaped (Printable), then Cut.
func (s *Set) Line(text string, max int) string {
	return Cut(Printable(Fold(s.Redact(text))), max)
}

// Printable escapes what a terminal would act on instead of showing:
// control characters (C0, DEL, C1), the bidirectional and invisible
// formatting characters that can make a line read otherwise than it is,
// and bytes that are not UTF-8; each as a Go escape (\x1b, \u202e). Text
// from outside (a server's message, a path, a file's value) goes through
// it before it reaches a terminal.
func Printable(text string) string {
	if IndexUnprintable(text) < 0 {
		return text
	}
	var b strings.Builder
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == utf8.RuneError && size == 1, !printable(r) && r < utf8.RuneSelf: // a bad byte, an ASCII control
			fmt.Fprintf(&b, `\x%02x`, text[i])
		case !printable(r) && r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !printable(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(text[i : i+size])
		}
		i += size
	}
	return b.String()
}

// IndexUnprintable is the byte index in text of the first character
// Printable escapes, or -1 if there is none: the one rule for "this text
// reads as it is written", also for values that must be one line.
func IndexUnprintable(text string) int {
	return strings.IndexFunc(text, func(r rune) bool { return !printable(r) })
}

// printable: not a control character (tab included), a format character
// (Cf: bidi overrides, zero-width joiners), a line or paragraph separator,
// nor the replacement of a bad byte.
func printable(r rune) bool {
	return r != utf8.RuneError && !unicode.IsControl(r) && !unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// Fold puts text on one line: every run of white space becomes one space.
func Fold(text string) string { return strings.Join(strings.Fields(text), " ") }

// Cut bounds text to max bytes (max <= 0: no bound) on a rune boundary,
// ending a cut text with "…". It never redacts: use Line for that.
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

// Writer returns a writer that redacts each Write before passing it to w
// (loggers write a record per call, so no secret is split between two).
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

// index holds every form of one secret, lower case, whole and as its
// MinPiece-byte pieces. A piece of fewer than minDistinct different bytes
// ("-1111-22") is left out: ordinary text has such runs, random secrets
// almost never (they are still caught whole).
type index struct {
	secret string
	whole  []string
	pieces map[string]bool
}

const minDistinct = 4

func newIndex(sec string) *index {
	ix := &index{secret: sec, pieces: map[string]bool{}}
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
	return ix
}

// distinct counts the different bytes of a short string. It runs for every
// piece of every form of a secret: no allocation, no sort.
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

// redact marks every byte of text covered by a piece or a whole form of a
// secret, then replaces each marked run with Mask.
func redact(text string, entries []*index) string {
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
	for _, ix := range entries {
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
// JSON-escaped, and base64-encoded at each of the three offsets it can have
// in a longer encoded text.
func forms(sec string) []string {
	out := []string{sec, url.QueryEscape(sec), url.PathEscape(sec)}
	if b, err := json.Marshal(sec); err == nil {
		out = append(out, string(b[1:len(b)-1]))
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for off := 0; off < 3; off++ {
			e := enc.EncodeToString(append(make([]byte, off), sec...))
			// Keep only the characters made of the secret's bits alone.
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
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
