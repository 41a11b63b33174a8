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

// TestREADMESubcommands: the README's sub-commands table gives each
// command of the plugin exactly as --help's usage lines do, and misses
// none.
func TestREADMESubcommands(t *testing.T) {
	r := runPlugin(t, invocation{Args: []string{"--help"}})
	if r.Code != 0 {
		t.Fatalf("--help: exit %d: %s", r.Code, r.Stderr)
	}
	var help []string
	for _, l := range strings.Split(usageLines(t, r.Stdout), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, name) {
			help = append(help, l)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## Sub-commands")
	table, _, _ := strings.Cut(after, "\n## ")
	var documented []string
	for _, row := range strings.Split(table, "\n") {
		if !strings.HasPrefix(row, "| `"+name) {
			continue
		}
		cell, _, _ := strings.Cut(strings.ReplaceAll(strings.TrimPrefix(row, "| `"), `\|`, "|"), "` |")
		documented = append(documented, cell)
	}
	slices.Sort(help)
	slices.Sort(documented)
	if !slices.Equal(help, documented) {
		t.Errorf("--help's usage lines:\n  %s\nthe README's sub-commands table:\n  %s", strings.Join(help, "\n  "), strings.Join(documented, "\n  "))
	}
}

// TestREADMEKubernetesVersion: the version the README says is tested is
// the one test/go.mod pins (the kubelet code of make e2e, the kubelet of
// make e2e-node).
func TestREADMEKubernetesVersion(t *testing.T) {
	mod, err := os.ReadFile("../../test/go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/kubernetes (v\S+)$`).FindStringSubmatch(string(mod))
	if m == nil {
		t.Fatal("test/go.mod does not require k8s.io/kubernetes")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, _ := strings.Cut(string(readme), "## Kubernetes versions")
	section, _, _ := strings.Cut(after, "\n## ")
	if want := "`k8s.io/kubernetes` " + m[1]; !strings.Contains(section, want) || !strings.Contains(section, "| "+strings.TrimPrefix(m[1], "v")+" | **tested**") {
		t.Errorf("the README's Kubernetes versions do not name %s as the tested version (test/go.mod):\n%s", m[1], section)
	}
}
