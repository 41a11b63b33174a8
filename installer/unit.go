package installer

import (
	"maps"
	"path"
	"slices"
	"strings"
)

// unitDirs are systemd's unit directories, most important first: a unit
// or drop-in of the same name in an earlier one masks the later ones.
var unitDirs = []string{"/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"}

type unitFile struct {
	Path    string
	Content []byte
}

// serviceSettings are the [Service] settings of a unit and its drop-ins
// that matter for the kubelet's command line, with systemd's rule that an
// empty assignment resets the list.
type serviceSettings struct {
	ExecStart        string   // the last one, continuation lines joined
	ExecStartFrom    string   // the file that set it
	EnvironmentFiles []string // in order, without the "-" of an optional file
	Environment      []string // NAME=VALUE, in order
	EnvironmentFrom  []string // the file of each Environment entry
}

// findUnit returns the files of unit on h in systemd's order: the unit file
// from the most important directory, then the *.conf drop-ins of every
// <unit>.d by name (a name in a more important directory masks a later one).
func findUnit(h Host, unit string) ([]unitFile, error) {
	var files []unitFile
	for _, d := range unitDirs {
		p := path.Join(d, unit)
		if b, err := h.read(p); err == nil {
			files = append(files, unitFile{Path: p, Content: b})
			break
		} else if h.exists(p) {
			return nil, hostFileError(p, err)
		}
	}
	dropins := map[string]string{} // name → path
	for _, d := range unitDirs {
		for _, e := range h.readDir(path.Join(d, unit+".d")) {
			if _, seen := dropins[e.Name()]; !seen && strings.HasSuffix(e.Name(), ".conf") {
				dropins[e.Name()] = path.Join(d, unit+".d", e.Name())
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(dropins)) {
		b, err := h.read(dropins[n])
		if err != nil {
			return nil, hostFileError(dropins[n], err)
		}
		files = append(files, unitFile{Path: dropins[n], Content: b})
	}
	return files, nil
}

// parseService reads the [Service] settings of files, in order.
func parseService(files []unitFile) serviceSettings {
	var s serviceSettings
	for _, f := range files {
		section := ""
		for _, line := range unitLines(f.Content) {
			if strings.HasPrefix(line, "[") {
				section = strings.TrimSpace(line)
				continue
			}
			if section != "[Service]" {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "ExecStart":
				s.ExecStart, s.ExecStartFrom = v, f.Path
			case "EnvironmentFile":
				if v == "" {
					s.EnvironmentFiles = nil
				} else {
					s.EnvironmentFiles = append(s.EnvironmentFiles, strings.TrimPrefix(v, "-"))
				}
			case "Environment":
				if v == "" {
					s.Environment, s.EnvironmentFrom = nil, nil
				}
				for _, a := range unitWords(v) {
					s.Environment = append(s.Environment, a)
					s.EnvironmentFrom = append(s.EnvironmentFrom, f.Path)
				}
			}
		}
	}
	return s
}

// unitLines returns the logical lines of a unit file: comments and blank
// lines dropped, a line ending with a backslash joined with the next.
func unitLines(content []byte) []string {
	var out []string
	var cur strings.Builder
	for raw := range strings.SplitSeq(string(content), "\n") {
		line := strings.TrimRight(raw, " \t\r")
		if cur.Len() == 0 {
			t := strings.TrimSpace(line)
			if t == "" || t[0] == '#' || t[0] == ';' {
				continue
			}
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// unitWords splits a unit setting's value into words as systemd does for
// ExecStart and Environment: blanks separate words, double or single
// quotes group them (and are removed).
func unitWords(v string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote == 0 && (c == '"' || c == '\''):
			quote, in = c, true
		case quote != '\'' && c == '\\' && i+1 < len(v):
			i++
			cur.WriteByte(v[i])
			in = true
		case quote == 0 && (c == ' ' || c == '\t'):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
