// Command bench measures the plugin's start-up and cache behaviour against a
// minimal Go binary that prints a fixed CredentialProviderResponse, in the
// same run and interleaved, so that machine noise cancels out in the ratios:
//
//   - warm-cache invocation wall time (median, p90) and its ratio;
//   - two more reference binaries measured in the same interleaved warm
//     loop: the "required-deps floor" (a program that only imports the
//     packages the plugin must use and prints the same fixed response) and
//     the same without go-sdk-core, so the plugin can be read against what
//     its dependencies cost on their own; minor page faults of each;
//   - cold invocation (empty cache dir each run) against the in-process
//     emulator, and its ratio;
//   - IAM token grants when N invocations start at once on a cold cache;
//   - peak RSS (getrusage ru_maxrss) of warm invocations;
//   - binary sizes;
//   - the package init cost of a warm invocation (GODEBUG=inittrace=1);
//   - the kubelet's exec of the plugin at the token's refresh point with a
//     fixed latency on the emulator's token endpoints, without and with
//     icr-node-agent having refreshed ahead (see agent.go);
//   - icr-node-agent's memory (VmRSS, RssAnon, VmHWM) and CPU over a
//     steady run with a short check interval, against the emulator and a
//     fake API server, and its CPU while idle.
//
// It prints markdown. Figures are never pass/fail: `make bench` runs it,
// and a smoke test runs it with 3 runs to keep it working.
//
//	go run ./hack/bench [-runs 300] [-cold-runs 100] [-concurrency 64]
//	  [-agent-runs 50] [-service-latency 50ms] [-agent-time 30s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

	agentRuns          int           // plugin runs at the refresh point, each with and without the agent
	serviceLatency     time.Duration // latency of the emulator's token endpoints for those
	agentDuration      time.Duration // how long the agent's resources are sampled; 0: not
	agentCheckInterval time.Duration // the agent's --check-interval meanwhile
}

func main() {
	var c config
	flag.IntVar(&c.runs, "runs", 300, "warm invocations, interleaved with as many of the minimal binary")
	flag.IntVar(&c.coldRuns, "cold-runs", 100, "cold invocations (empty cache dir each), interleaved with the minimal binary")
	flag.IntVar(&c.concurrency, "concurrency", 64, "invocations started at once on a cold cache")
	flag.IntVar(&c.inittraceRuns, "inittrace-runs", 20, "warm invocations traced with GODEBUG=inittrace=1 (averaged)")
	flag.IntVar(&c.agentRuns, "agent-runs", 50, "plugin runs at the token's refresh point, each without and with the node agent")
	flag.DurationVar(&c.serviceLatency, "service-latency", 50*time.Millisecond, "latency of the emulator's token endpoints for the refresh-point runs")
	flag.DurationVar(&c.agentDuration, "agent-time", 30*time.Second, "how long the node agent's memory and CPU are sampled (0: not measured)")
	flag.DurationVar(&c.agentCheckInterval, "agent-check-interval", time.Second, "the node agent's --check-interval while its resources are sampled")
	flag.Parse()
	if err := run(c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// fixedSource is a Go program that reads the request and prints a fixed
// response; extra is spliced into its import block. With no extra imports it
// is the baseline, the least any exec credential plugin in Go does.
func fixedSource(extra ...string) string {
	var imports strings.Builder
	for _, p := range extra {
		fmt.Fprintf(&imports, "\t_ %q\n", p)
	}
	return `package main

import (
	"io"
	"os"
` + imports.String() + `)

const response = ` + "`" + `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Global","cacheDuration":"50m0s","auth":{"us.icr.io":{"username":"iambearer","password":"fixed"}}}` + "`" + `

func main() {
	io.Copy(io.Discard, os.Stdin)
	os.Stdout.WriteString(response)
}
`
}

// requiredDeps are the packages the plugin must use (issue 3: go-sdk-core and
// the kubelet types stay; go-cache is the cache the issue names; klog and
// component-base/version are the logging and version every k8s plugin
// carries). Importing them and doing nothing else is the floor the plugin's
// start-up cannot go under while it links them.
var requiredDeps = []string{
	"github.com/IBM/go-sdk-core/v5/core",
	"github.com/patrickmn/go-cache",
	"k8s.io/apimachinery/pkg/runtime/serializer",
	"k8s.io/component-base/version",
	"k8s.io/klog/v2",
	"k8s.io/kubelet/pkg/apis/credentialprovider/install",
}

// withoutSDK is requiredDeps minus go-sdk-core, plus net/http (which the
// plugin needs for IAM anyway and go-sdk-core would otherwise bring in).
func withoutSDK() []string {
	var out []string
	for _, p := range requiredDeps {
		if !strings.HasPrefix(p, "github.com/IBM/go-sdk-core/") {
			out = append(out, p)
		}
	}
	return append(out, "net/http")
}

const request = `{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/team/app"}`

// sample is one process run.
type sample struct {
	wall   time.Duration
	maxRSS int64 // KiB
	minflt int64 // minor page faults (ru_minflt)
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
	goLine := strings.Join(strings.SplitN(strings.TrimPrefix(runtime.Version(), "go"), ".", 3)[:2], ".")
	minimal, err := buildFixed(tmp, "minimal", []byte("module minimal\n\ngo "+goLine+"\n"), nil, nil)
	if err != nil {
		return fmt.Errorf("build the minimal binary: %w", err)
	}
	// The floors import the module's dependencies, so they are built in a
	// module with this repository's go.mod and go.sum (renamed): the same
	// versions the plugin links, nothing resolved anew.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return err
	}
	gosum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		return err
	}
	gomod = regexp.MustCompile(`(?m)^module .*$`).ReplaceAll(gomod, []byte("module floor"))
	floor, err := buildFixed(tmp, "deps-floor", gomod, gosum, requiredDeps)
	if err != nil {
		return fmt.Errorf("build the required-deps floor: %w", err)
	}
	floorNoSDK, err := buildFixed(tmp, "deps-floor-no-sdk", gomod, gosum, withoutSDK())
	if err != nil {
		return fmt.Errorf("build the floor without go-sdk-core: %w", err)
	}
	var agentBin string
	if c.agentRuns > 0 || c.agentDuration > 0 {
		agentBin = filepath.Join(tmp, "icr-node-agent")
		if err := goBuild(root, agentBin, "./cmd/icr-node-agent"); err != nil {
			return fmt.Errorf("build the node agent: %w", err)
		}
	}

	emu := iamtest.NewServer()
	defer emu.Close()
	base := []string{"--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(), "--profile-id", iamtest.DefaultProfileID}
	withCache := func(dir string) []string { return append(slices.Clone(base), "--cache-dir", dir) }

	// Warm: one run fills the cache, then the plugin and the three
	// reference binaries take turns, round-robin, the starting one rotating
	// each iteration so that no binary always follows the same other one.
	warmDir := filepath.Join(tmp, "warm")
	if s, err := runOnce(plugin, withCache(warmDir), nil); err != nil {
		return fmt.Errorf("priming the cache: %w: %s", err, s.stderr)
	}
	emu.Reset()
	warmBins := []struct {
		bin  string
		args []string
	}{{minimal, nil}, {floorNoSDK, nil}, {floor, nil}, {plugin, withCache(warmDir)}}
	warm := make([][]sample, len(warmBins)) // indexed like warmBins
	for i := range c.runs {
		for k := range warmBins {
			j := (i + k) % len(warmBins)
			s, err := runOnce(warmBins[j].bin, warmBins[j].args, nil)
			if err != nil {
				return fmt.Errorf("warm run of %s: %w: %s", filepath.Base(warmBins[j].bin), err, s.stderr)
			}
			warm[j] = append(warm[j], s)
		}
	}
	warmM, warmNoSDK, warmFloor, warmP := warm[0], warm[1], warm[2], warm[3]
	if g := emu.Grants(); g != 0 {
		return fmt.Errorf("%d IAM grants during warm runs: the cache was not used", g)
	}
	launcherHWM := selfHWM()

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
	var pull pullPathResult
	if c.agentRuns > 0 {
		if pull, err = pullPath(c, emu, plugin, agentBin, tmp, base); err != nil {
			return fmt.Errorf("pull path at the refresh point: %w", err)
		}
	}
	var usage agentUsage
	if c.agentDuration > 0 {
		if usage, err = agentResources(c, emu, agentBin, tmp); err != nil {
			return fmt.Errorf("node agent resources: %w", err)
		}
	}

	var top []initCost
	for _, p := range order {
		top = append(top, initCost{p, costs[p]})
	}
	sort.SliceStable(top, func(i, j int) bool { return top[i].clock > top[j].clock })

	pSize, mSize := fileSize(plugin), fileSize(minimal)
	ratio := func(a, b float64) string {
		if b == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2fx", a/b)
	}

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
	row(fmt.Sprintf("ru_maxrss of a warm invocation, median (floor: this launcher's %.1f MiB)", float64(launcherHWM)/1024), rssKiB(warmP)/1024, rssKiB(warmM)/1024, "MiB")
	row("binary size", float64(pSize)/(1<<20), float64(mSize)/(1<<20), "MiB")
	fmt.Fprintf(w, "| IAM grants, %d invocations at once on a cold cache | %d (%d of %d answered, %.0f ms wall) | – | – |\n",
		c.concurrency, grants, c.concurrency-failedN, c.concurrency, ms(concWall))

	fmt.Fprintf(w, "\nReference binaries, measured in the same warm loop (round-robin, %d runs each; each prints the same fixed response):\n\n", c.runs)
	fmt.Fprintf(w, "| binary | warm median | warm p90 | median / minimal | minor faults, median | size |\n|---|---:|---:|---:|---:|---:|\n")
	m50 := wallMs(warmM, 0.5)
	refRow := func(name string, ss []sample, bin string) {
		med := wallMs(ss, 0.5)
		fmt.Fprintf(w, "| %s | %.2f ms | %.2f ms | %s | %d | %.2f MiB |\n",
			name, med, wallMs(ss, 0.9), ratio(med, m50), medianInt(minflts(ss)), float64(fileSize(bin))/(1<<20))
	}
	refRow("minimal Go binary", warmM, minimal)
	refRow("floor without go-sdk-core", warmNoSDK, floorNoSDK)
	refRow("required-deps floor", warmFloor, floor)
	refRow("icr-credential-provider, warm", warmP, plugin)
	fmt.Fprintf(w, "\nRequired-deps floor: blank imports of %s. Without go-sdk-core: %s.\n", "`"+strings.Join(requiredDeps, "`, `")+"`", "`"+strings.Join(withoutSDK(), "`, `")+"`")
	fmt.Fprintf(w, "\nicr-credential-provider warm / required-deps floor (medians): **%s**; go-sdk-core's share (floor − floor without it): %.2f ms; plugin over the floor: %.2f ms.\n",
		ratio(wallMs(warmP, 0.5), wallMs(warmFloor, 0.5)), wallMs(warmFloor, 0.5)-wallMs(warmNoSDK, 0.5), wallMs(warmP, 0.5)-wallMs(warmFloor, 0.5))
	fmt.Fprintf(w, "\nPackage init of a warm invocation (GODEBUG=inittrace=1, mean of %d runs): %.2f ms clock in total; top 8:\n\n", c.inittraceRuns, initSum)
	fmt.Fprintf(w, "| package | init clock |\n|---|---:|\n")
	for i, t := range top {
		if i == 8 {
			break
		}
		fmt.Fprintf(w, "| %s | %.3f ms |\n", t.pkg, t.clock)
	}
	if c.agentRuns > 0 {
		reportPullPath(w, c, pull)
	}
	if c.agentDuration > 0 {
		idle := -1.0
		if pull.idleSeconds > 0 {
			idle = pull.idleCPU / pull.idleSeconds * 1000
		}
		reportAgentUsage(w, usage, idle, fileSize(agentBin))
	}
	if failedN > 0 {
		return fmt.Errorf("%d of %d concurrent invocations failed: %v", failedN, c.concurrency, firstErr(errs))
	}
	return nil
}

func reportPullPath(w io.Writer, c config, p pullPathResult) {
	wallMs := func(ss []sample, q float64) float64 { return ms(quantile(walls(ss), q)) }
	fmt.Fprintf(w, "\nPull path at the token's refresh point: the kubelet's exec of the plugin once the cacheDuration of its last answer has run out, the emulator's token endpoints answering after %s (interleaved, %d runs each):\n\n", p.latency, c.agentRuns)
	fmt.Fprintf(w, "| plugin exec at the refresh point | median | p90 | IAM grants per exec |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(w, "| without icr-node-agent (metadata service: identity token, then IAM token) | %.2f ms | %.2f ms | %.0f |\n",
		wallMs(p.without, 0.5), wallMs(p.without, 0.9), float64(p.grantsWithout)/float64(len(p.without)))
	fmt.Fprintf(w, "| with icr-node-agent (refreshed ahead: a fresh token in the cache) | %.2f ms | %.2f ms | %.0f |\n",
		wallMs(p.with, 0.5), wallMs(p.with, 0.9), float64(p.grants)/float64(len(p.with)))
	fmt.Fprintf(w, "\nThe agent takes **%.1f ms** (median) off the pull at the refresh point. From its start it took %.0f ms to refresh the token and finish its first health check, off the pull path; idle then (--check-interval 1h, no API server) during the runs, it used %.1f ms CPU in %.1f s and held %.1f MiB VmRSS at their end, %.1f MiB of it RssAnon.\n",
		wallMs(p.without, 0.5)-wallMs(p.with, 0.5), ms(p.agentReady), p.idleCPU*1000, p.idleSeconds, float64(p.idleRSS)/1024, float64(p.idleAnon)/1024)
}

// reportAgentUsage reports u; idle is the agent's idle CPU in millicores
// (from the pull-path runs), or -1 when not measured.
func reportAgentUsage(w io.Writer, u agentUsage, idle float64, size int64) {
	perCheck := 0.0
	if u.checks > 0 {
		perCheck = u.cpu / float64(u.checks) * 1000
	}
	fmt.Fprintf(w, "\nicr-node-agent resources: %.0f s sampled after a %.0f s warm-up, --check-interval %s (each check: doctor's checks, a token from the emulator, a Node status patch to a fake API server), no service latency:\n\n", u.seconds, u.warmupSeconds, u.interval)
	fmt.Fprintf(w, "| measure | value |\n|---|---:|\n")
	fmt.Fprintf(w, "| VmRSS, median of samples every 100 ms | %.1f MiB |\n", u.rssMedian/1024)
	fmt.Fprintf(w, "| of which RssAnon (heap, stacks; the rest is the binary's mapped pages), median | %.1f MiB |\n", u.anonMedian/1024)
	fmt.Fprintf(w, "| VmRSS, largest sample | %.1f MiB |\n", u.rssMax/1024)
	fmt.Fprintf(w, "| VmHWM (peak RSS) at the end | %.1f MiB |\n", float64(u.hwm)/1024)
	fmt.Fprintf(w, "| CPU of the warm-up (start, first refresh and checks) | %.0f ms |\n", u.cpuWarmup*1000)
	fmt.Fprintf(w, "| CPU while sampled | %.0f ms in %.0f s: %.1f millicores |\n", u.cpu*1000, u.seconds, u.cpu/u.seconds*1000)
	fmt.Fprintf(w, "| health checks while sampled | %d: %.1f ms CPU each |\n", u.checks, perCheck)
	if idle >= 0 {
		fmt.Fprintf(w, "| implied average at the default --check-interval (5m): idle + one check per 300 s | %.2f millicores |\n", idle+perCheck/300)
	}
	fmt.Fprintf(w, "| binary size | %.2f MiB |\n", float64(size)/(1<<20))
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
// stripped; then copies it to out with write(2), as an installed binary
// (what the kubelet runs) is written. A binary fresh from the linker, which
// writes through a shared mapping, ran ~7 % slower than a copy of it (wall
// and CPU, same page faults).
func goBuild(dir, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out+".link", pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	src, err := os.Open(out + ".link")
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	// Plain reads and writes: no copy_file_range, and not the whole binary
	// in this process's memory (its peak RSS is reported).
	_, err = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, make([]byte, 1<<20))
	return errors.Join(err, dst.Close(), os.Remove(out+".link"))
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
			s.minflt = ru.Minflt
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

func minflts(ss []sample) []int64 {
	v := make([]int64, len(ss))
	for i, s := range ss {
		v[i] = s.minflt
	}
	return v
}

func medianInt(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// buildFixed writes fixedSource(extra...) with the given go.mod (and go.sum,
// if any) into tmp/name and builds it to tmp/name-bin.
func buildFixed(tmp, name string, gomod, gosum []byte, extra []string) (string, error) {
	dir := filepath.Join(tmp, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	files := map[string][]byte{"go.mod": gomod, "main.go": []byte(fixedSource(extra...))}
	if gosum != nil {
		files["go.sum"] = gosum
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			return "", err
		}
	}
	out := filepath.Join(tmp, name+"-bin")
	if err := goBuild(dir, out, "."); err != nil {
		return "", err
	}
	return out, nil
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
