package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestREADMEFlagsTable: every flag of kubelet mode's --help is in the
// README's flags table, and the table has no flag the plugin lacks; each
// row names the flag's ICR_ variable.
func TestREADMEFlagsTable(t *testing.T) {
	r := runPlugin(t, invocation{Args: []string{"--help"}})
	if r.Code != 0 {
		t.Fatalf("--help: exit %d: %s", r.Code, r.Stderr)
	}
	flagRe := regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z][a-z-]*)`)
	var help []string
	for _, m := range flagRe.FindAllStringSubmatch(r.Stdout, -1) {
		help = append(help, m[1])
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## Flags and environment")
	table, _, _ := strings.Cut(after, "\n## ")
	var documented []string
	for _, row := range strings.Split(table, "\n") {
		if !strings.HasPrefix(row, "| `-") {
			continue
		}
		cells := strings.Split(row, "|")
		for _, m := range regexp.MustCompile("`--([a-z][a-z-]*)`").FindAllStringSubmatch(cells[1], -1) {
			documented = append(documented, m[1])
			if env := "ICR_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_")); m[1] != "help" && !strings.Contains(cells[2], env) {
				t.Errorf("the README's row for --%s does not name %s", m[1], env)
			}
		}
	}
	slices.Sort(help)
	slices.Sort(documented)
	if !slices.Equal(help, documented) {
		t.Errorf("--help has %v\nthe README's table has %v", help, documented)
	}
}
