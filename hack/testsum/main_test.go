package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const stream = `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"run","Package":"p","Test":"TestB"}
{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:9: needs root\n"}
{"Action":"output","Package":"p","Test":"TestB","Output":"--- SKIP: TestB (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"run","Package":"p","Test":"TestC/sub"}
{"Action":"output","Package":"p","Test":"TestC/sub","Output":"    c_test.go:3: got 1, want 2\n"}
{"Action":"fail","Package":"p","Test":"TestC/sub"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p"}
{"Action":"output","Package":"q","Output":"ok  \tq\t0.02s\n"}
{"Action":"pass","Package":"q"}
`

func TestFilterAndSummary(t *testing.T) {
	var out bytes.Buffer
	s, err := filter(strings.NewReader(stream), &out, "unit")
	if err != nil {
		t.Fatal(err)
	}
	if s.Passed != 1 || s.Failed != 1 || len(s.Skipped) != 1 || len(s.Broken) != 0 {
		t.Fatalf("counts %+v", s)
	}
	if !strings.Contains(s.Skipped[0], "TestB (p): b_test.go:9: needs root") {
		t.Errorf("skip reason %q", s.Skipped[0])
	}
	for _, want := range []string{"got 1, want 2", "FAIL\tp", "ok  \tq"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "=== RUN") {
		t.Errorf("passing tests' output shown:\n%s", out.String())
	}
	dir := t.TempDir()
	if err := write(filepath.Join(dir, "1-unit.json"), s); err != nil {
		t.Fatal(err)
	}
	if err := write(filepath.Join(dir, "2-node.json"), Suite{Name: "e2e-node", Note: "skipped: not root"}); err != nil {
		t.Fatal(err)
	}
	var sum bytes.Buffer
	if err := printSummary(&sum, dir, []string{"unit", "e2e-node", "lint"}); err == nil {
		t.Error("a failure did not fail the summary")
	}
	lines := strings.Split(strings.TrimSpace(sum.String()), "\n")
	if last := lines[len(lines)-1]; last != "1 passed, 1 failed, 1 skipped" {
		t.Errorf("last line %q", last)
	}
	if !strings.Contains(sum.String(), "e2e-node:    skipped: not root") || !strings.Contains(sum.String(), "skipped: TestB (p)") ||
		!strings.Contains(sum.String(), "lint:        FAILED: it did not finish") {
		t.Errorf("summary:\n%s", sum.String())
	}
}

func TestBuildFailureIsBroken(t *testing.T) {
	in := `{"Action":"build-fail","Package":"p"}` + "\n" + `{"Action":"output","Package":"p","Output":"FAIL\tp [build failed]\n"}` + "\n" + `{"Action":"fail","Package":"p"}` + "\n"
	s, _ := filter(strings.NewReader(in), os.Stderr, "unit")
	if len(s.Broken) == 0 {
		t.Fatalf("a build failure is not counted: %+v", s)
	}
}
