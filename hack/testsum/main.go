// Command testsum reads `go test -json` and keeps make test's output short
// and its verdict plain.
//
// As a filter (testsum -suite NAME -record FILE) it passes go test's own
// lines for packages ("ok", "FAIL", "?") and the output of failed tests
// through, and records the suite's counts in FILE. With -summary it reads
// the recorded suites and prints one line per suite and a last line
//
//	N passed, N failed, N skipped
//
// naming the skipped tests and why. Its exit status is non-zero when a
// suite had a failure or did not run to the end.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// event is one line of `go test -json` (test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// Suite is what a recorded suite file holds.
type Suite struct {
	Name    string   `json:"name"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Skipped []string `json:"skipped"` // "Test (package): reason"
	// Broken says the suite did not run to the end (a build failure, a
	// package that failed outside any test).
	Broken []string `json:"broken,omitempty"`
	// Note replaces the counts, for a suite that was not run (and why).
	Note string `json:"note,omitempty"`
}

func main() {
	suite := flag.String("suite", "", "name of the suite read on stdin")
	record := flag.String("record", "", "file to record the suite's counts in")
	summary := flag.String("summary", "", "directory of recorded suites: print the summary")
	note := flag.String("note", "", "with -suite and -record: record the suite by this line instead of counts (a suite that is not go test)")
	expect := flag.String("expect", "", "with -summary: comma-separated suites that must have recorded, else they count as failed")
	flag.Parse()
	var err error
	switch {
	case *summary != "":
		err = printSummary(os.Stdout, *summary, strings.FieldsFunc(*expect, func(r rune) bool { return r == ',' }))
	case *suite != "" && *record != "" && *note != "":
		err = write(*record, Suite{Name: *suite, Note: *note})
	case *suite != "" && *record != "":
		var s Suite
		s, err = filter(os.Stdin, os.Stdout, *suite)
		if werr := write(*record, s); err == nil {
			err = werr
		}
		if err == nil && (s.Failed > 0 || len(s.Broken) > 0) {
			err = fmt.Errorf("%s: %d failed", s.Name, s.Failed+len(s.Broken))
		}
	default:
		err = errors.New("usage: testsum -suite NAME -record FILE [-note WHY] < go-test-json, or testsum -summary DIR")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(1)
	}
}

// filter reads test2json events from r, writes the lines a person wants to
// see to w, and counts.
func filter(r io.Reader, w io.Writer, name string) (Suite, error) {
	s := Suite{Name: name}
	held := map[string][]string{} // output of a running test, shown if it fails
	skipWhy := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintln(w, string(line)) // go vet, build errors: as they are
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "output":
			if e.Test == "" {
				if isPackageLine(e.Output) {
					fmt.Fprint(w, e.Output)
				}
				held[key] = append(held[key], e.Output)
				continue
			}
			held[key] = append(held[key], e.Output)
			if t := strings.TrimSpace(e.Output); !strings.HasPrefix(t, "---") && !strings.HasPrefix(t, "===") && t != "" {
				skipWhy[key] = t
			}
		case "pass":
			if e.Test != "" {
				s.Passed++
			}
			delete(held, key)
		case "skip":
			if e.Test != "" {
				s.Skipped = append(s.Skipped, fmt.Sprintf("%s (%s): %s", e.Test, e.Package, strings.TrimSpace(skipWhy[key])))
			}
			delete(held, key)
		case "fail":
			if e.Test != "" {
				s.Failed++
				for _, o := range held[key] {
					fmt.Fprint(w, o)
				}
			} else if s.Failed == 0 {
				// A package that failed without a failing test: a build
				// error, a panic in TestMain, a timeout.
				s.Broken = append(s.Broken, e.Package)
				for _, o := range held[key] {
					fmt.Fprint(w, o)
				}
			}
			delete(held, key)
		case "build-fail":
			s.Broken = append(s.Broken, e.Package)
		}
	}
	return s, sc.Err()
}

// isPackageLine reports go test's per-package verdict lines.
func isPackageLine(out string) bool {
	return strings.HasPrefix(out, "ok  \t") || strings.HasPrefix(out, "FAIL\t") || strings.HasPrefix(out, "?   \t") || strings.HasPrefix(out, "FAIL ")
}

func write(path string, s Suite) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func printSummary(w io.Writer, dir string, expect []string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	sort.Strings(files)
	var passed, failed int
	var skipped []string
	broken := false
	seen := map[string]bool{}
	fmt.Fprintln(w, "\n== summary")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var s Suite
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%s: %v", f, err)
		}
		seen[s.Name] = true
		if s.Note != "" {
			fmt.Fprintf(w, "%-12s %s\n", s.Name+":", s.Note)
			continue
		}
		line := fmt.Sprintf("%-12s %d passed, %d failed, %d skipped", s.Name+":", s.Passed, s.Failed, len(s.Skipped))
		if len(s.Broken) > 0 {
			line += fmt.Sprintf("; did not complete: %s", strings.Join(s.Broken, ", "))
			broken = true
		}
		fmt.Fprintln(w, line)
		passed += s.Passed
		failed += s.Failed
		skipped = append(skipped, s.Skipped...)
	}
	for _, name := range expect {
		if !seen[name] {
			fmt.Fprintf(w, "%-12s FAILED: it did not finish (see its output above)\n", name+":")
			broken = true
		}
	}
	for _, sk := range skipped {
		fmt.Fprintf(w, "  skipped: %s\n", sk)
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", passed, failed, len(skipped))
	if failed > 0 || broken {
		return errors.New("some tests failed")
	}
	return nil
}
