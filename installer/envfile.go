package installer

import (
	"bytes"
	"slices"
	"strings"
)

// envAssign is one assignment in a systemd EnvironmentFile (the syntax of
// systemd.exec(5), EnvironmentFile=): NAME=VALUE, the value unquoted,
// single-quoted (verbatim) or double-quoted (backslash escapes), a
// backslash at the end of a line continuing it.
type envAssign struct {
	Name, Value string
	Export      bool // "export NAME=…"
	// Raw value span in the file: [ValStart, ValEnd) holds the value as
	// written, quotes included, without trailing blanks and line end.
	ValStart, ValEnd int
	Quote            byte // '"', '\'' or 0
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// parseEnvFile returns the assignments of content in order; lines that are
// empty, comments (# or ;) or without "=" are skipped, as systemd does.
func parseEnvFile(content []byte) []envAssign {
	var out []envAssign
	i, n := 0, len(content)
	skip := func(while func(byte) bool) {
		for i < n && while(content[i]) {
			i++
		}
	}
	word := func() string {
		start := i
		skip(func(c byte) bool { return c != '=' && c != '\n' && !isBlank(c) })
		return string(content[start:i])
	}
	nextLine := func() {
		skip(func(c byte) bool { return c != '\n' })
		i++
	}
	var val strings.Builder
	// value copies content up to stop; with escapes a backslash quotes the
	// next byte, and before a line end continues the line.
	value := func(stop byte, escapes bool) {
		for i < n && content[i] != stop {
			if escapes && content[i] == '\\' && i+1 < n {
				i++
				if content[i] == '\n' {
					i++
					continue
				}
			}
			val.WriteByte(content[i])
			i++
		}
	}
	for i < n {
		skip(isBlank)
		if i >= n {
			break
		}
		if c := content[i]; c == '\n' || c == '#' || c == ';' {
			nextLine()
			continue
		}
		a := envAssign{}
		name := word()
		if name == "export" && i < n && isBlank(content[i]) {
			a.Export = true
			skip(isBlank)
			name = word()
		}
		skip(isBlank)
		if i >= n || content[i] != '=' || name == "" {
			nextLine()
			continue
		}
		i++ // '='
		skip(func(c byte) bool { return c == ' ' || c == '\t' })
		a.Name, a.ValStart = name, i
		val.Reset()
		if i < n && (content[i] == '"' || content[i] == '\'') {
			a.Quote = content[i]
			i++
			value(a.Quote, a.Quote == '"')
			if i < n {
				i++ // closing quote
			}
			value('\n', false) // the rest of its line: in the raw span, unquoted
		} else {
			value('\n', true)
		}
		end := i
		for end > a.ValStart && isBlank(content[end-1]) {
			end--
		}
		a.ValEnd = end
		a.Value = strings.TrimRight(val.String(), " \t\r")
		out = append(out, a)
		if i < n {
			i++ // '\n'
		}
	}
	return out
}

// envValue is the value of the last assignment of name, if there is one.
func envValue(content []byte, name string) (string, bool) {
	var v string
	found := false
	for _, a := range parseEnvFile(content) {
		if a.Name == name {
			v, found = a.Value, true
		}
	}
	return v, found
}

// appendToEnvVar returns content with words appended to the value of the
// last assignment of name, every other byte as it was; without an
// assignment, one is added as a last line. The words must need no quoting.
func appendToEnvVar(content []byte, name string, words []string) ([]byte, error) {
	add := strings.Join(words, " ")
	var last *envAssign
	as := parseEnvFile(content)
	for i := range as {
		if as[i].Name == name {
			last = &as[i]
		}
	}
	if last == nil {
		out := bytes.Clone(content)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		return append(out, name+"="+add+"\n"...), nil
	}
	if last.Export {
		return nil, errorf("%s is assigned with 'export', which this installer does not edit: add the flags to it by hand", name)
	}
	raw := content[last.ValStart:last.ValEnd]
	at := last.ValEnd
	switch {
	case last.Quote != 0:
		closing := bytes.LastIndexByte(raw, last.Quote)
		if closing <= 0 || closing != len(raw)-1 {
			return nil, errorf("%s has text after its closing quote, which this installer does not edit: add the flags to it by hand", name)
		}
		at = last.ValStart + closing
	case bytes.HasSuffix(raw, []byte{'\\'}):
		return nil, errorf("%s ends with a backslash, which this installer does not edit: add the flags to it by hand", name)
	}
	if strings.TrimSpace(last.Value) != "" {
		add = " " + add
	}
	return slices.Concat(content[:at], []byte(add), content[at:]), nil
}
