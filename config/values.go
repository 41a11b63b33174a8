package config

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// hostList is the value of --registries: comma-separated hosts, as pflag's
// string slice, but split at commas only. pflag reads its value as one CSV
// record and drops everything after a line break; here the line break
// stays in the value, for Validate to refuse.
type hostList struct {
	hosts   *[]string
	changed bool
}

func (h *hostList) Set(v string) error {
	if !h.changed {
		*h.hosts = nil
	}
	if v != "" {
		*h.hosts = append(*h.hosts, strings.Split(v, ",")...)
	}
	h.changed = true
	return nil
}

func (h *hostList) Type() string       { return "strings" }
func (h *hostList) String() string     { return "[" + strings.Join(*h.hosts, ",") + "]" }
func (h *hostList) GetSlice() []string { return *h.hosts }
func (h *hostList) Replace(v []string) error {
	*h.hosts = v
	return nil
}
func (h *hostList) Append(v string) error {
	*h.hosts = append(*h.hosts, v)
	return nil
}

// maxValueQuote bounds a setting's value repeated in an error.
const maxValueQuote = 80

// checkValue is the rule for every setting's value (secret.IndexUnprintable):
// one line, no control character (a line break, a tab, an escape), invisible
// formatting character or byte that is not UTF-8, which the kubelet config,
// an environment file and a command line each read otherwise than it was
// written. The value is repeated, escaped, only if repeat.
func checkValue(flag, value string, repeat bool) error {
	i := secret.IndexUnprintable(value)
	if i < 0 {
		return nil
	}
	what := "a control, invisible or non-UTF-8 character"
	if c := value[i]; c == '\n' || c == '\r' {
		what = "a line break"
	}
	shown := ""
	if repeat {
		shown = " " + strconv.Quote(secret.Cut(value, maxValueQuote))
	}
	fix := "give the value on one line, with printable characters only"
	if flag == "--registries" {
		fix += ": several registries are comma-separated"
	}
	return &Error{Cause: fmt.Sprintf("%s%s has %s at byte %d", flag, shown, what, i), Fix: fix}
}
