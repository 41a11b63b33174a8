// Command bench measures the plugin's start-up and cache behaviour against a
// minimal Go binary that prints a fixed CredentialProviderResponse, in the
// same run and interleaved, so that machine noise cancels out in the ratios:
//
//   - warm-cache invocation wall time (median, p90) and its ratio;
//   - cold invocation (empty cache dir each run) against the in-process
//     emulator, and its ratio;
//   - IAM token grants when N invocations start at once on a cold cache;
//   - peak RSS (getrusage ru_maxrss) of warm invocations;
//   - binary sizes;
//   - the package init cost of a warm invocation (GODEBUG=inittrace=1).
//
// It prints markdown. Figures are never pass/fail: `make bench` runs it,
// and a smoke test runs it with 3 runs to keep it working.
//
//	go run ./hack/bench [-runs 300] [-cold-runs 100] [-concurrency 64]
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

type config struct {
	runs          int // warm invocations (each also runs the minimal binary)
	coldRuns      int // cold invocations
	concurrency   int // processes started at once on a cold cache
	inittraceRuns int // warm invocations with GODEBUG=inittrace=1
}

func main() {
	var c config
	flag.IntVar(&c.runs, "runs", 300, "warm invocations, interleaved with as many of the minimal binary")
	flag.IntVar(&c.coldRuns, "cold-runs", 100, "cold invocations (empty cache dir each), interleaved with the minimal binary")
	flag.IntVar(&c.concurrency, "concurrency", 64, "invocations started at once on a cold cache")
	flag.IntVar(&c.inittraceRuns, "inittrace-runs", 20, "warm invocations traced with GODEBUG=inittrace=1 (averaged)")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// minimalSource is the baseline: a Go program that reads the request and
// prints a fixed response, the least any exec credential plugin in Go does.
const minimalSource = `package main

import (
	"io"
	"os"
)

const response = ` + "`" + `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Global","cacheDuration":"50m0s","auth":{"us.icr.io":{"username":"iambearer","password":"fixed"}}}` + "`" + `

func main() {
	io.Copy(io.Discard, os.Stdin)
	os.Stdout.WriteString(response)
}
`

const request = `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/team/app"}`

// sample is one process run.
type sample struct {
	wall   time.Duration
	maxRSS int64 // KiB
	stderr string
}

func run(c config, w io.Writer) error {
	tmp, err := os.MkdirTemp("", "icr-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	plugin := filepath.Join(tmp, "icr-credential-provider")
	if err := goBuild(root, plugin, "./cmd/icr-credential-provider"); err != nil {
		return fmt.Errorf("build the plugin: %w", err)
	}
	minDir := filepath.Join(tmp, "minimal")
	if err := os.Mkdir(minDir, 0o755); err != nil {
		return err
	}
	goLine := strings.Join(strings.SplitN(strings.TrimPrefix(runtime.Version(), "go"), ".", 3)[:2], ".")
	if err := os.WriteFile(filepath.Join(minDir, "go.mod"), []byte("module minimal\n\ngo "+goLine+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(minDir, "main.go"), []byte(minimalSource), 0o644); err != nil {
		return err
	}
	minimal := filepath.Join(tmp, "minimal-plugin")
	if err := goBuild(minDir, minimal, "."); err != nil {
		return fmt.Errorf("build the minimal binary: %w", err)
	}

	emu := iamtest.NewServer()
	defer emu.Close()
	base := []string{"--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(), "--profile-id", iamtest.DefaultProfileID}
	withCache := func(dir string) []string { return append(slices.Clone(base), "--cache-dir", dir) }

	// Warm: one run fills the cache, then plugin and minimal alternate.
	warmDir := filepath.Join(tmp, "warm")
	if s, err := runOnce(plugin, withCache(warmDir), nil); err != nil {
		return fmt.Errorf("priming the cache: %w: %s", err, s.stderr)
	}
	emu.Reset()
	var warmP, warmM []sample
	for range c.runs {
		m, err := runOnce(minimal, nil, nil)
		if err != nil {
			return err
		}
		p, err := runOnce(plugin, withCache(warmDir), nil)
		if err != nil {
			return fmt.Errorf("warm run: %w: %s", err, p.stderr)
		}
		warmM, warmP = append(warmM, m), append(warmP, p)
	}
	if g := emu.Grants(); g != 0 {
		return fmt.Errorf("%d IAM grants during warm runs: the cache was not used", g)
	}
	floor := selfHWM()

	// The children's own peak RSS (see rss_linux.go), interleaved too.
	reqFile := filepath.Join(tmp, "request.json")
	if err := os.WriteFile(reqFile, []byte(request), 0o644); err != nil {
		return err
	}
	var hwmP, hwmM []float64
	var hwmErr error
	for range min(c.runs, 50) {
		m, err := peakRSS(minimal, nil, reqFile)
		if err != nil {
			hwmErr = err
			break
		}
		p, err := peakRSS(plugin, withCache(warmDir), reqFile)
		if err != nil {
			hwmErr = err
			break
		}
		hwmM, hwmP = append(hwmM, float64(m)), append(hwmP, float64(p))
	}

	// Cold: an empty cache dir each time, so every run asks the emulator.
	var coldP, coldM []sample
	for i := range c.coldRuns {
		dir := filepath.Join(tmp, "cold-"+strconv.Itoa(i))
		m, err := runOnce(minimal, nil, nil)
		if err != nil {
			return err
		}
		p, err := runOnce(plugin, withCache(dir), nil)
		if err != nil {
			return fmt.Errorf("cold run: %w: %s", err, p.stderr)
		}
		os.RemoveAll(dir)
		coldM, coldP = append(coldM, m), append(coldP, p)
	}

	// Concurrency: N processes at once on a cold cache.
	emu.Reset()
	concDir := filepath.Join(tmp, "concurrent")
	var wg sync.WaitGroup
	errs := make([]error, c.concurrency)
	start := make(chan struct{})
	for i := range c.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = runOnce(plugin, withCache(concDir), nil)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	concWall := time.Since(t0)
	failedN := 0
	for _, e := range errs {
		if e != nil {
			failedN++
		}
	}
	grants := emu.Grants()

	// Init trace of warm runs.
	type initCost struct {
		pkg   string
		clock float64 // ms, mean over the traced runs
	}
	costs := map[string]float64{}
	var order []string
	var initSum float64
	for range c.inittraceRuns {
		s, err := runOnce(plugin, withCache(warmDir), []string{"GODEBUG=inittrace=1"})
		if err != nil {
			return fmt.Errorf("inittrace run: %w", err)
		}
		for _, it := range parseInittrace(s.stderr) {
			if _, ok := costs[it.pkg]; !ok {
				order = append(order, it.pkg)
			}
			costs[it.pkg] += it.clock / float64(c.inittraceRuns)
			initSum += it.clock / float64(c.inittraceRuns)
		}
	}
	var top []initCost
	for _, p := range order {
		top = append(top, initCost{p, costs[p]})
	}
	sort.SliceStable(top, func(i, j int) bool { return top[i].clock > top[j].clock })

	pSize, mSize := fileSize(plugin), fileSize(minimal)

	// Report.
	wallMs := func(ss []sample, q float64) float64 { return ms(quantile(walls(ss), q)) }
	rssKiB := func(ss []sample) float64 {
		v := make([]float64, len(ss))
		for i, s := range ss {
			v[i] = float64(s.maxRSS)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	fmt.Fprintf(w, "| measure | icr-credential-provider | minimal Go binary | ratio |\n|---|---:|---:|---:|\n")
	row := func(name string, p, m float64, unit string) {
		fmt.Fprintf(w, "| %s | %.2f %s | %.2f %s | %.2fx |\n", name, p, unit, m, unit, p/m)
	}
	row(fmt.Sprintf("warm invocation, median of %d", c.runs), wallMs(warmP, 0.5), wallMs(warmM, 0.5), "ms")
	row(fmt.Sprintf("warm invocation, p90 of %d", c.runs), wallMs(warmP, 0.9), wallMs(warmM, 0.9), "ms")
	row(fmt.Sprintf("cold invocation (emulator), median of %d", c.coldRuns), wallMs(coldP, 0.5), wallMs(coldM, 0.5), "ms")
	row(fmt.Sprintf("cold invocation (emulator), p90 of %d", c.coldRuns), wallMs(coldP, 0.9), wallMs(coldM, 0.9), "ms")
	if hwmErr == nil && len(hwmP) > 0 {
		row(fmt.Sprintf("peak RSS of a warm invocation (own VmHWM at exit, median of %d)", len(hwmP)), median(hwmP)/1024, median(hwmM)/1024, "MiB")
	} else {
		fmt.Fprintf(w, "| peak RSS of a warm invocation (own VmHWM at exit) | unavailable: %v | | |\n", hwmErr)
	}
	row(fmt.Sprintf("ru_maxrss of a warm invocation, median (floor: this launcher's %.1f MiB)", float64(floor)/1024), rssKiB(warmP)/1024, rssKiB(warmM)/1024, "MiB")
	row("binary size", float64(pSize)/(1<<20), float64(mSize)/(1<<20), "MiB")
	fmt.Fprintf(w, "| IAM grants, %d invocations at once on a cold cache | %d (%d of %d answered, %.0f ms wall) | – | – |\n",
		c.concurrency, grants, c.concurrency-failedN, c.concurrency, ms(concWall))
	fmt.Fprintf(w, "\nPackage init of a warm invocation (GODEBUG=inittrace=1, mean of %d runs): %.2f ms clock in total; top 8:\n\n", c.inittraceRuns, initSum)
	fmt.Fprintf(w, "| package | init clock |\n|---|---:|\n")
	for i, t := range top {
		if i == 8 {
			break
		}
		fmt.Fprintf(w, "| %s | %.3f ms |\n", t.pkg, t.clock)
	}
	if failedN > 0 {
		return fmt.Errorf("%d of %d concurrent invocations failed: %v", failedN, c.concurrency, firstErr(errs))
	}
	return nil
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module (run from the repository)")
	}
	return filepath.Dir(mod), nil
}

// goBuild builds pkg in dir the way releases are built: static, trimmed,
// stripped.
func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	return nil
}

// runOnce runs bin with the request on stdin in a minimal environment and
// measures it.
func runOnce(bin string, args, env []string) (sample, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	cmd.Stdin = strings.NewReader(request)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	s := sample{wall: time.Since(start), stderr: stderr.String()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.maxRSS = ru.Maxrss // KiB on Linux
		}
	}
	if err != nil {
		return s, err
	}
	if !bytes.Contains(stdout.Bytes(), []byte(`"CredentialProviderResponse"`)) {
		return s, fmt.Errorf("%s printed no response", filepath.Base(bin))
	}
	return s, nil
}

type initItem struct {
	pkg   string
	clock float64
}

var initLine = regexp.MustCompile(`^init (\S+) @[0-9.]+ ms, ([0-9.]+) ms clock`)

// parseInittrace extracts per-package init clock times from the runtime's
// inittrace output.
func parseInittrace(stderr string) []initItem {
	var items []initItem
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		if m := initLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			items = append(items, initItem{m[1], v})
		}
	}
	return items
}

func walls(ss []sample) []time.Duration {
	d := make([]time.Duration, len(ss))
	for i, s := range ss {
		d[i] = s.wall
	}
	return d
}

// quantile is the q-quantile (nearest rank) of d.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[min(i, len(s)-1)]
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
