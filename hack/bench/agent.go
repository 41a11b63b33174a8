package main

// The node agent's figures: the kubelet's exec of the plugin at the token's
// refresh point with and without icr-node-agent (issue 15), and the
// agent's own memory and CPU.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	plugincfg "github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// tokenEndpoints are where a token refresh waits for the service: the
// metadata service's two calls, and IAM's (API keys).
var tokenEndpoints = []iamtest.Endpoint{iamtest.EndpointMetadataToken, iamtest.EndpointMetadataIAMToken, iamtest.EndpointIAMToken}

// pullPathResult is the plugin's exec at the refresh point, without and
// with the agent.
type pullPathResult struct {
	latency               time.Duration
	without, with         []sample
	grantsWithout, grants int           // IAM grants during the measured runs
	agentReady            time.Duration // from the agent's start to its refresh and first check done
	idleCPU, idleSeconds  float64       // the agent's CPU seconds while idle during the runs, and their length
	idleRSS, idleAnon     int64         // KiB, its VmRSS and RssAnon at their end
}

// pullPath measures the kubelet's exec of the plugin at the moment the
// cacheDuration of its last answer ran out, every token endpoint of the
// emulator answering after latency:
//
//   - without the agent, the cache holds the token the plugin last served,
//     now at its refresh point: the plugin calls the metadata service
//     (instance identity token, then IAM token), two round trips;
//   - with the agent, the agent has refreshed that token ahead of the
//     refresh point: the plugin finds a fresh token.
//
// Runs alternate, each without-agent run on a new cache directory holding a
// token at its refresh point; the agent (the real binary, without an API
// server) starts on such a directory and the with-agent runs use it once it
// has refreshed.
func pullPath(c config, emu *iamtest.Server, plugin, agentBin, tmp string, base []string) (pullPathResult, error) {
	res := pullPathResult{latency: c.serviceLatency}
	for _, ep := range tokenEndpoints {
		emu.SetFault(ep, iamtest.Slow(c.serviceLatency))
	}
	defer emu.ClearFaults()

	agentDir := filepath.Join(tmp, "agent-cache")
	if err := primeDue(emu, agentDir); err != nil {
		return res, err
	}
	primed := snapshot(agentDir)
	kcfg, err := kubeletConfig(emu, agentDir, tmp)
	if err != nil {
		return res, err
	}
	agent, stderr, err := startAgent(agentBin, kcfg, tmp, "/nonexistent", time.Hour)
	if err != nil {
		return res, err
	}
	defer stopAgent(agent)
	// Wait for the agent's refresh (a new cache entry) and the end of its
	// first health check (it logs the result): with --check-interval 1h it
	// is idle from then on. The runs with the agent check that the token
	// is fresh: they make no grant.
	t0 := time.Now()
	for snapshot(agentDir) == primed || !strings.Contains(stderr.String(), "Pull credentials health") {
		if time.Since(t0) > time.Minute {
			return res, fmt.Errorf("the agent did not refresh the token and check within a minute: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.agentReady = time.Since(t0)
	cpu0, err := procCPU(agent.Process.Pid)
	if err != nil {
		return res, err
	}
	idleStart := time.Now()

	withArgs := slices.Concat(base, []string{"--cache-dir", agentDir})
	for i := range c.agentRuns {
		dir := filepath.Join(tmp, "due-"+strconv.Itoa(i))
		if err := primeDue(emu, dir); err != nil {
			return res, err
		}
		without := func() error {
			g := emu.Grants()
			s, err := runOnce(plugin, slices.Concat(base, []string{"--cache-dir", dir}), nil)
			if err != nil {
				return fmt.Errorf("at the refresh point without the agent: %w: %s", err, s.stderr)
			}
			res.grantsWithout += emu.Grants() - g
			res.without = append(res.without, s)
			return nil
		}
		with := func() error {
			g := emu.Grants()
			s, err := runOnce(plugin, withArgs, nil)
			if err != nil {
				return fmt.Errorf("at the refresh point with the agent: %w: %s", err, s.stderr)
			}
			res.grants += emu.Grants() - g
			res.with = append(res.with, s)
			return nil
		}
		first, second := without, with
		if i%2 == 1 {
			first, second = with, without
		}
		if err := first(); err != nil {
			return res, err
		}
		if err := second(); err != nil {
			return res, err
		}
		os.RemoveAll(dir)
	}
	cpu1, err := procCPU(agent.Process.Pid)
	if err != nil {
		return res, err
	}
	res.idleCPU, res.idleSeconds = cpu1-cpu0, time.Since(idleStart).Seconds()
	st, err := procStatus(agent.Process.Pid)
	if err != nil {
		return res, err
	}
	res.idleRSS, res.idleAnon = st["VmRSS"], st["RssAnon"]
	if res.grantsWithout != c.agentRuns {
		return res, fmt.Errorf("%d IAM grants in %d runs at the refresh point without the agent, want one each", res.grantsWithout, c.agentRuns)
	}
	if res.grants != 0 {
		return res, fmt.Errorf("%d IAM grants in the runs with the agent, want none: %s", res.grants, stderr.String())
	}
	return res, nil
}

// nodeKey is the plugin's cache key for the emulator's default trusted
// profile through the metadata service, as the plugin computes it.
func nodeKey(emu *iamtest.Server, dir string) (string, error) {
	cfg := plugincfg.Config{IAMURL: emu.IAMURL(), MetadataURL: emu.MetadataURL(), ProfileID: iamtest.DefaultProfileID, CacheDir: dir}
	id, err := cfg.Node(nil, iam.Options{})
	if err != nil {
		return "", err
	}
	return id.Key, nil
}

// primeDue stores in dir, through the plugin's own cache code, a token an
// hour long that has reached its refresh point a second ago: what the cache
// holds when the kubelet's cacheDuration for it has run out.
func primeDue(emu *iamtest.Server, dir string) error {
	key, err := nodeKey(emu, dir)
	if err != nil {
		return err
	}
	now := time.Now()
	tok := token.Token{AccessToken: "bench-token-at-its-refresh-point", IssuedAt: now.Add(-50*time.Minute - time.Second)}
	tok.Expiry = tok.IssuedAt.Add(time.Hour)
	src := token.SourceFunc(func(context.Context) (token.Token, error) { return tok, nil })
	if _, err := cache.New(src, key, cache.Options{Dir: dir, Memory: cache.NewMemory()}).Token(context.Background()); err != nil {
		return fmt.Errorf("priming %s: %w", dir, err)
	}
	return nil
}

// snapshot is the content of the cache entries in dir.
func snapshot(dir string) string {
	names, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	var b strings.Builder
	for _, n := range names {
		data, _ := os.ReadFile(n)
		b.Write(data)
	}
	return b.String()
}

// kubeletConfig writes the CredentialProviderConfig install would write for
// the plugin on the emulator with cache directory dir, as the agent reads it.
func kubeletConfig(emu *iamtest.Server, dir, tmp string) (string, error) {
	b, err := installer.Config(installer.Provider{Env: []kubeletv1.ExecEnvVar{
		{Name: "ICR_IAM_URL", Value: emu.IAMURL()}, {Name: "ICR_METADATA_URL", Value: emu.MetadataURL()},
		{Name: "ICR_PROFILE_ID", Value: iamtest.DefaultProfileID}, {Name: "ICR_CACHE_DIR", Value: dir},
	}})
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(tmp, "kubelet-config-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(b)
	return f.Name(), err
}

// syncBuffer is a bytes.Buffer that a child's stderr writes while the
// bench reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAgent starts icr-node-agent on the kubelet config kcfg.
func startAgent(bin, kcfg, tmp, kubeconfig string, checkInterval time.Duration) (*exec.Cmd, *syncBuffer, error) {
	binDir, err := os.MkdirTemp(tmp, "bin-")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--kubelet-config", kcfg, "--bin-dir", binDir, "--node-name", "bench-node",
		"--kubeconfig", kubeconfig, "--metrics-address", "", "--check-interval", checkInterval.String())
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, stderr, nil
}

func stopAgent(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// agentUsage is the agent's memory and CPU over a steady run.
type agentUsage struct {
	seconds       float64 // measured, after the warm-up
	interval      time.Duration
	checks        int     // health checks (node status patches) measured
	rssMedian     float64 // KiB, VmRSS samples
	anonMedian    float64 // KiB, RssAnon samples (the heap and stacks; the rest of VmRSS is the binary's mapped pages)
	rssMax        float64 // KiB
	hwm           int64   // KiB, VmHWM at the end
	cpu           float64 // CPU seconds measured
	cpuWarmup     float64 // CPU seconds of the warm-up: start, first refresh and checks
	warmupSeconds float64
}

// agentResources runs the agent against the emulator and a fake API server
// with a short check interval, and samples its /proc/PID/status (VmRSS,
// RssAnon) every 100 ms; VmHWM and its CPU time (procCPU) at the ends.
func agentResources(c config, emu *iamtest.Server, agentBin, tmp string) (agentUsage, error) {
	u := agentUsage{interval: c.agentCheckInterval}
	api, err := startFakeAPIServer()
	if err != nil {
		return u, err
	}
	defer api.Close()
	kubeconfig := filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(api.kubeconfig()), 0o600); err != nil {
		return u, err
	}
	dir := filepath.Join(tmp, "agent-usage-cache")
	kcfg, err := kubeletConfig(emu, dir, tmp)
	if err != nil {
		return u, err
	}
	agent, stderr, err := startAgent(agentBin, kcfg, tmp, kubeconfig, c.agentCheckInterval)
	if err != nil {
		return u, err
	}
	defer stopAgent(agent)
	pid := agent.Process.Pid
	start := time.Now()
	warmup := min(5*time.Second, c.agentDuration/4)
	for api.patches.Load() == 0 && time.Since(start) < time.Minute {
		time.Sleep(10 * time.Millisecond)
	}
	if api.patches.Load() == 0 {
		return u, fmt.Errorf("the agent published no health to the fake API server within a minute: %s", stderr.String())
	}
	time.Sleep(max(0, warmup-time.Since(start)))
	cpu0, err := procCPU(pid)
	if err != nil {
		return u, err
	}
	u.cpuWarmup, u.warmupSeconds = cpu0, time.Since(start).Seconds()
	p0, t0 := api.patches.Load(), time.Now()
	var rss, anon []float64
	for time.Since(t0) < c.agentDuration-warmup {
		st, err := procStatus(pid)
		if err != nil {
			return u, fmt.Errorf("the agent: %w: %s", err, stderr.String())
		}
		rss, anon = append(rss, float64(st["VmRSS"])), append(anon, float64(st["RssAnon"]))
		time.Sleep(100 * time.Millisecond)
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return u, err
	}
	st, err := procStatus(pid)
	if err != nil {
		return u, err
	}
	u.seconds = time.Since(t0).Seconds()
	u.checks = int(api.patches.Load() - p0)
	u.cpu = cpu1 - cpu0
	u.hwm = st["VmHWM"]
	if len(rss) > 0 {
		u.rssMedian, u.anonMedian, u.rssMax = median(rss), median(anon), slices.Max(rss)
	}
	return u, nil
}

// procStatus reads the "Name: N kB" fields of /proc/PID/status, in KiB.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	fields := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		name, v, _ := strings.Cut(line, ":")
		if kb, ok := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok {
			fields[name], _ = strconv.ParseInt(kb, 10, 64)
		}
	}
	if fields["VmRSS"] == 0 {
		return nil, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return fields, nil
}

// procCPU is the CPU time (seconds) pid's threads have run: the sum of the
// run times in their /proc/PID/task/TID/schedstat, in nanoseconds (the
// clock ticks of /proc/PID/stat, 10 ms, are too coarse for an idle agent).
// A thread that exits takes its time with it; Go's runtime keeps its
// threads.
func procCPU(pid int) (float64, error) {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if len(tasks) == 0 {
		return 0, fmt.Errorf("process %d has no threads", pid)
	}
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited meanwhile
		}
		run, _, _ := strings.Cut(string(b), " ")
		v, err := strconv.ParseInt(run, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		ns += v
	}
	return float64(ns) / 1e9, nil
}

// fakeAPIServer answers the agent's only API calls: the Node status patch
// and Event creation.
type fakeAPIServer struct {
	srv     *http.Server
	url     string
	patches atomic.Int64
}

func startFakeAPIServer() (*fakeAPIServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &fakeAPIServer{url: "http://" + l.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("PATCH /api/v1/nodes/{name}/status", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a.patches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"kind":"Node","apiVersion":"v1","metadata":{"name":%q}}`, r.PathValue("name"))
	})
	mux.HandleFunc("POST /api/v1/namespaces/{ns}/events", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(b)
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = a.srv.Serve(l) }()
	return a, nil
}

func (a *fakeAPIServer) kubeconfig() string {
	return `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ` + a.url + `
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
current-context: fake
users:
- name: fake
  user:
    token: fake
`
}

func (a *fakeAPIServer) Close() { _ = a.srv.Close() }
