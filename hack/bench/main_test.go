package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestBenchSmoke runs the benchmark with a handful of runs so that `make
// bench` cannot rot. It checks that a table comes out; it never judges the
// figures.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin; skipped with -short")
	}
	var out bytes.Buffer
	c := config{runs: 3, coldRuns: 2, concurrency: 4, inittraceRuns: 1,
		agentRuns: 2, serviceLatency: 20 * time.Millisecond, agentDuration: 2 * time.Second, agentCheckInterval: 200 * time.Millisecond}
	if err := run(c, &out); err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	s := out.String()
	for _, want := range []string{
		"| warm invocation, median of 3 |",
		"| cold invocation (emulator), median of 2 |",
		"| peak RSS of a warm invocation",
		"| ru_maxrss of a warm invocation",
		"| binary size |",
		"| IAM grants, 4 invocations at once on a cold cache | 1 (4 of 4 answered",
		"GODEBUG=inittrace=1",
		"| package | init clock |",
		"| minimal Go binary |",
		"| floor without go-sdk-core",
		"| required-deps floor",
		"| icr-credential-provider, warm |",
		"icr-credential-provider warm / required-deps floor (medians): **",
		"| without icr-node-agent (metadata service: identity token, then IAM token) |",
		"| with icr-node-agent (refreshed ahead: a fresh token in the cache) |",
		"The agent takes **",
		"| VmRSS, median of samples every 100 ms |",
		"| of which RssAnon (",
		"| VmHWM (peak RSS) at the end |",
		"| health checks while sampled |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	t.Logf("\n%s", s)
}
