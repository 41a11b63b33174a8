package main

// The output shown in README.md and docs/*.md is generated: each block
// marked with a line
//
//	<!-- sample: NAME -->
//
// right before its fence is what the generator NAME below prints when it
// runs the real command (the built binary, or run in this process) against
// the emulator (iam/iamtest) with the fault that produces it. Only the
// parts that change from run to run are normalised, each by a named rule
// (ports, temporary directories, dates); everything else is the output as
// it is. TestDocSamples fails when a block differs, with a diff;
//
//	make docs        (UPDATE_DOCS=1 go test -run TestDocSamples ./cmd/icr-credential-provider)
//
// rewrites the blocks. Output of other programs (docker, crane, kubectl,
// the kubelet's journal) is not ours to generate: the docs label it with
// where it comes from and carry no marker.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/jsonpath"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/agent"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

// docsRoot is the repository root, seen from this package.
const docsRoot = "../.."

// Stable stand-ins for what changes from run to run.
const (
	// sampleEmulator is the emulator's address in the samples, the one
	// docs/troubleshooting.md starts it on.
	sampleEmulator = "127.0.0.1:18790"
	// sampleMetadataURL is the VPC metadata service as a node reaches it.
	sampleMetadataURL = "http://169.254.169.254"
	// sampleTmp stands for a test's temporary directory.
	sampleTmp = "/tmp/dr"
	// sampleTime is every RFC 3339 time in a sample; sampleUnix the same
	// instant as Prometheus prints a Unix time.
	sampleTime = "2026-11-25T20:33:18Z"
	sampleUnix = "1.795638798e+09"
	// sampleRepo is the checkout make run-emulator runs in.
	sampleRepo = "/src/icr-credential-provider"
)

// docSamples are the generators, by the name their blocks are marked with.
var docSamples = map[string]func(t *testing.T) string{
	"plugin-failure-metadata-hang":  samplePluginFailure,
	"run-emulator":                  sampleRunEmulator,
	"doctor-readme-missing-policy":  sampleDoctorREADME,
	"doctor-metadata-disabled":      doctorSample("metadata-disabled", "text"),
	"doctor-metadata-disabled-json": doctorSample("metadata-disabled", "json"),
	"doctor-missing-policy":         doctorSample("missing-policy", "text"),
	"doctor-match-images":           doctorSample("match-images", "text"),
	"doctor-clock-skew":             doctorSample("clock-skew", "text"),
	"doctor-unknown-api-key":        doctorSample("unknown-api-key", "text"),
	"help-usage":                    sampleHelpUsage,
	"install-usage":                 usageOf("install"),
	"uninstall-usage":               usageOf("uninstall"),
	"install-by-hand":               sampleInstall("output"),
	"install-by-hand-config":        sampleInstall("config"),
	"install-logging-config":        sampleInstallLogging,
	"uninstall-by-hand":             sampleUninstall,
	"wiring-kubeadm-install":        sampleWiring("install"),
	"wiring-kubeadm-file":           sampleWiring("file"),
	"wiring-kubeadm-uninstall":      sampleWiring("uninstall"),
	"wiring-rollback":               sampleWiringRollback,
	"wiring-k3s-install":            sampleK3s("install"),
	"wiring-k3s-file":               sampleK3s("file"),
	"credhelper-get":                sampleHelperGet,
	"credhelper-not-found":          sampleHelperNotFound,
	"credhelper-error":              sampleHelperError,
	"credhelper-config":             sampleHelperConfig,
	"agent-help":                    sampleAgentHelp,
	"agent-metrics":                 sampleAgentMetrics,
	"agent-condition":               sampleAgentCondition("condition"),
	"agent-event":                   sampleAgentCondition("event"),
}

// docBlock is one marked block: the lines between its fences.
type docBlock struct {
	name       string
	line       int // the marker's line number (1-based), for messages
	indent     string
	start, end int // content is lines[start:end]
}

var markerRe = regexp.MustCompile(`^(\s*)<!-- sample: ([a-z0-9-]+) -->\s*$`)

// readBlocks finds the marked blocks of a markdown file.
func readBlocks(t *testing.T, path string) ([]string, []docBlock) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []docBlock
	for i := 0; i < len(lines); i++ {
		m := markerRe.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		bl := docBlock{name: m[2], line: i + 1, indent: m[1]}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], m[1]+"```") {
			t.Fatalf("%s:%d: the sample marker %s is not right before a fenced block (at the same indentation)", path, i+1, m[2])
		}
		bl.start = i + 2
		bl.end = -1
		for j := bl.start; j < len(lines); j++ {
			if strings.TrimRight(lines[j], " ") == m[1]+"```" {
				bl.end = j
				break
			}
		}
		if bl.end < 0 {
			t.Fatalf("%s:%d: the block of sample %s has no closing fence", path, i+1, m[2])
		}
		blocks = append(blocks, bl)
		i = bl.end
	}
	return lines, blocks
}

// TestDocSamples: every marked block is the output of its generator; every
// generator has a block.
func TestDocSamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(docsRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(docsRoot, "README.md")}, files...)
	update := os.Getenv("UPDATE_DOCS") == "1"

	type fileBlocks struct {
		lines  []string
		blocks []docBlock
	}
	docs := map[string]*fileBlocks{}
	used := map[string]bool{}
	for _, f := range files {
		lines, blocks := readBlocks(t, f)
		docs[f] = &fileBlocks{lines, blocks}
		for _, b := range blocks {
			if docSamples[b.name] == nil {
				t.Errorf("%s:%d: no generator for sample %q (docsamples_test.go)", f, b.line, b.name)
			}
			used[b.name] = true
		}
	}
	for name := range docSamples {
		if !used[name] {
			t.Errorf("sample %q is generated but no document marks a block with it", name)
		}
	}
	if t.Failed() {
		return
	}

	// Each generator runs once, its subtests in parallel.
	var mu sync.Mutex
	got := map[string]string{}
	t.Run("generate", func(t *testing.T) {
		for name, gen := range docSamples {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := strings.TrimRight(gen(t), "\n")
				mu.Lock()
				got[name] = s
				mu.Unlock()
			})
		}
	})
	if t.Failed() {
		return
	}

	for _, f := range files {
		d := docs[f]
		changed := false
		// From the last block up, so that earlier line numbers stay valid.
		for i := len(d.blocks) - 1; i >= 0; i-- {
			b := d.blocks[i]
			if _, ok := got[b.name]; !ok {
				continue // not generated in this run (go test -run …/generate/NAME)
			}
			var want []string
			for _, l := range strings.Split(got[b.name], "\n") {
				if l == "" {
					want = append(want, "")
				} else {
					want = append(want, b.indent+l)
				}
			}
			have := d.lines[b.start:b.end]
			if slices.Equal(have, want) {
				continue
			}
			if update {
				d.lines = slices.Concat(d.lines[:b.start], want, d.lines[b.end:])
				changed = true
				continue
			}
			rel, _ := filepath.Rel(docsRoot, f)
			t.Errorf("%s:%d: sample %s is not what the command prints now (- in the document, + generated):\n%s\nRegenerate the samples with 'make docs' (UPDATE_DOCS=1 go test -run TestDocSamples ./cmd/icr-credential-provider) and review the diff.",
				rel, b.line, b.name, lineDiff(have, want))
		}
		if changed {
			if err := os.WriteFile(f, []byte(strings.Join(d.lines, "\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote the samples in %s", f)
		}
	}
}

// lineDiff renders the differences between a and b, a line per change
// with two lines of context (a longest-common-subsequence diff).
func lineDiff(a, b []string) string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		kind byte
		line string
	}
	var ops []op
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, op{' ', a[i]})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i]})
			i++
		default:
			ops = append(ops, op{'+', b[j]})
			j++
		}
	}
	var out strings.Builder
	last := -10
	for k, o := range ops {
		near := false
		for d := -2; d <= 2; d++ {
			if k+d >= 0 && k+d < len(ops) && ops[k+d].kind != ' ' {
				near = true
			}
		}
		if !near {
			continue
		}
		if k > 0 && k > last+1 {
			out.WriteString("  …\n")
		}
		fmt.Fprintf(&out, "%c %s\n", o.kind, o.line)
		last = k
	}
	return out.String()
}

// normaliser replaces what changes from run to run, in the order added.
type normaliser []string

func (n *normaliser) add(old, new string) {
	if old != "" {
		*n = append(*n, old, new)
	}
}

var (
	rfc3339Re = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	// A token obtained a moment ago expires in its lifetime, give or take
	// a second of a slow test machine.
	expiresInRe     = regexp.MustCompile(`\(in (59m5\ds|1h0m0s)\)`)
	expiresInJSONRe = regexp.MustCompile(`"expires_in": "(59m5\ds|1h0m0s)"`)
	// Doctor's clock check on loopback: no skew, unless a loaded test
	// machine takes a second for the round trip.
	skewJSONRe = regexp.MustCompile(`"skew": "-?1s"`)
	// The clock-skew sample's 9 minutes, measured over a slow round trip.
	skew9mRe = regexp.MustCompile(`\b(8m59s|9m1s)\b`)
	// The samples show a root run, as on a node: a key file created by a
	// developer's test run is owned by their uid.
	ownerRe     = regexp.MustCompile(`, owned by uid [1-9]\d*`)
	ownerJSONRe = regexp.MustCompile(`"owner_uid": "[1-9]\d*"`)
)

func (n normaliser) apply(s string) string {
	for i := 0; i < len(n); i += 2 {
		s = strings.ReplaceAll(s, n[i], n[i+1])
	}
	s = rfc3339Re.ReplaceAllString(s, sampleTime)
	s = expiresInRe.ReplaceAllString(s, "(in 1h0m0s)")
	s = expiresInJSONRe.ReplaceAllString(s, `"expires_in": "1h0m0s"`)
	s = skewJSONRe.ReplaceAllString(s, `"skew": "0s"`)
	s = skew9mRe.ReplaceAllString(s, "9m0s")
	s = ownerRe.ReplaceAllString(s, "")
	s = ownerJSONRe.ReplaceAllString(s, `"owner_uid": "0"`)
	return s
}

// emulatorNorm shows emu at sampleEmulator and tmp at sampleTmp.
func emulatorNorm(emu *iamtest.Server, tmp string) normaliser {
	var n normaliser
	n.add(tmp, sampleTmp)
	n.add(emu.RegistryHost(), sampleEmulator)
	return n
}

// emulatorEnv points the plugin at emu, the way the docs' runs do with
// flags, and keeps the token cache out of the way.
func emulatorEnv(emu *iamtest.Server) []string {
	return []string{"ICR_IAM_URL=" + emu.IAMURL(), "ICR_METADATA_URL=" + emu.MetadataURL(), "ICR_CACHE_DIR=none"}
}

// newEmulator starts an emulator that the test closes.
func newEmulator(t *testing.T, opts ...iamtest.Option) *iamtest.Server {
	t.Helper()
	emu := iamtest.NewServer(opts...)
	t.Cleanup(emu.Close)
	return emu
}

// profile1234 is the README's trusted profile: linked to the instance, no
// policy of its own.
func profile1234(linked bool) iamtest.Option {
	return iamtest.WithTrustedProfile(iamtest.Profile{ID: "Profile-1234", Name: "icr-node-pull", LinkedToInstance: linked})
}

// samplePluginFailure: the README's one line on stderr, the metadata
// service switched off (it never answers), shown at its real address.
func samplePluginFailure(t *testing.T) string {
	emu := newEmulator(t, iamtest.WithFault(iamtest.EndpointMetadataToken, iamtest.Hang()), profile1234(true))
	r := runPlugin(t, invocation{Process: true, Args: append(emulatorArgs(emu, "none"), "--profile-id", "Profile-1234"), Stdin: requestJSON("v1", "us.icr.io/team/app")})
	assertFailure(t, r, "no answer within")
	var n normaliser
	n.add(emu.MetadataURL(), sampleMetadataURL)
	return n.apply(r.Stderr)
}

// sampleRunEmulator: what make run-emulator prints, hack/run-emulator.sh
// run in a copy of the checkout's layout (the script, bin/ with the two
// binaries) so that it writes nothing into the real one; stopped with
// SIGTERM once it has printed everything.
func sampleRunEmulator(t *testing.T) string {
	root := t.TempDir()
	for _, d := range []string{"hack", "bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile(filepath.Join(docsRoot, "hack", "run-emulator.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "hack", "run-emulator.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(pluginBin, filepath.Join(root, "bin", "icr-credential-provider")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(buildOnce(t, "icr-emulator", "../../hack/icr-emulator"), filepath.Join(root, "bin", "icr-emulator")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "run-emulator.sh"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	done := false
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "endpoint=all&kind=none") {
			done = true
			break
		}
	}
	if !done {
		t.Fatalf("make run-emulator's script did not print its commands:\n%s%s", out.String(), stderr.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_, _ = io.Copy(io.Discard, stdout)
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(root, "_output", "emulator")); err == nil {
		t.Error("run-emulator.sh left _output/emulator behind after SIGTERM")
	}
	s := out.String()
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+`).FindString(s)
	if url == "" {
		t.Fatalf("no emulator URL in:\n%s", s)
	}
	root, _ = filepath.EvalSymlinks(root)
	var n normaliser
	n.add(url, "http://"+sampleEmulator)
	n.add(root, sampleRepo)
	return n.apply(s)
}

// builds holds the binaries built for the samples, by name.
var builds struct {
	sync.Mutex
	dir  string
	bins map[string]string
}

// buildOnce builds the main package pkg (relative to this package) as name,
// once per test run.
func buildOnce(t *testing.T, name, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if p, ok := builds.bins[name]; ok {
		return p
	}
	if builds.dir == "" {
		builds.dir = filepath.Dir(pluginBin)
		builds.bins = map[string]string{}
	}
	p := filepath.Join(builds.dir, name)
	build := exec.Command("go", "build", "-o", p, pkg)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	builds.bins[name] = p
	return p
}

// sampleDoctorREADME: the README's doctor excerpt, from a pull of
// us.icr.io/team/app:1.4 that the registry denies. The registry is the
// emulator's over TLS with a certificate for us.icr.io, reached through
// an HTTPS proxy (HTTPS_PROXY, as the plugin honours it) that connects
// us.icr.io:443 to it: doctor runs unchanged, on loopback only.
func sampleDoctorREADME(t *testing.T) string {
	caFile, cert := testCertificate(t, "us.icr.io")
	emu := newEmulator(t, iamtest.WithTLS("127.0.0.1:0", cert), profile1234(true),
		iamtest.WithImage("team/app", "1.4"), iamtest.AllowPull("iam-ServiceId-someone-else", "team"))
	proxy := connectProxy(t, map[string]string{"us.icr.io:443": strings.TrimPrefix(emu.TLSURL, "https://")})
	dir := t.TempDir()
	cfg, bin := writeNodeFiles(t, dir, true)
	r := runPlugin(t, invocation{Process: true, Timeout: 60 * time.Second,
		Args: append(append([]string{"doctor"}, emulatorArgs(emu, "none")...), "--profile-id", "Profile-1234", "--image", "us.icr.io/team/app:1.4", "--kubelet-config", cfg, "--bin-dir", bin),
		Env:  []string{"HTTPS_PROXY=" + proxy, "SSL_CERT_FILE=" + caFile}})
	var excerpt []string
	lines := strings.Split(r.Stdout, "\n")
	for i, l := range lines {
		for _, id := range []string{"token.iam ", "registry.token ", "registry.manifest "} {
			if strings.Contains(l, "] "+id) {
				excerpt = append(excerpt, l)
				if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "       fix: ") && strings.HasPrefix(l, "[FAIL]") {
					excerpt = append(excerpt, lines[i+1])
				}
			}
		}
	}
	if len(excerpt) != 4 || !strings.Contains(r.Stdout, "[FAIL] registry.manifest (us.icr.io/team/app:1.4)") {
		t.Fatalf("doctor did not find the missing policy on us.icr.io:\n%s%s", r.Stdout, r.Stderr)
	}
	return emulatorNorm(emu, dir).apply(strings.Join(excerpt, "\n"))
}

// testCertificate makes a CA (written to a PEM file) and a certificate
// for host signed by it.
func testCertificate(t *testing.T, host string) (caFile string, cert tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "docs sample CA"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return caFile, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// connectProxy is an HTTPS proxy (HTTP CONNECT) that connects each host:port
// in routes to its loopback address and refuses everything else.
func connectProxy(t *testing.T, routes map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to, ok := routes[r.Host]
		if r.Method != http.MethodConnect || !ok {
			http.Error(w, "not routed by the test proxy", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", to)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { _, _ = io.Copy(up, c); up.Close() }()
		_, _ = io.Copy(c, up)
		c.Close()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// writeNodeFiles writes, under dir/node, the kubelet config docs use
// (cfg-good.yaml with every matchImages pattern, or cfg-missing.yaml
// without "icr.io") and a bin dir holding the plugin.
func writeNodeFiles(t *testing.T, dir string, good bool, extraMatch ...string) (cfg, binDir string) {
	t.Helper()
	node := filepath.Join(dir, "node")
	binDir = filepath.Join(node, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	match := []string{"icr.io", "*.icr.io", "private.*.icr.io", "registry.bluemix.net", "registry.*.bluemix.net"}
	cfg = filepath.Join(node, "cfg-good.yaml")
	if !good {
		match = match[1:]
		cfg = filepath.Join(node, "cfg-missing.yaml")
	}
	var b strings.Builder
	b.WriteString("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: icr-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    defaultCacheDuration: \"10m\"\n    matchImages:\n")
	for _, m := range append(match, extraMatch...) {
		b.WriteString("      - \"" + m + "\"\n")
	}
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, binDir
}

// doctorSample runs one of docs/troubleshooting.md's cases, with the
// command line that page gives:
//
//	icr-credential-provider doctor --iam-url $E --metadata-url $E --cache-dir none \
//	    --registries 127.0.0.1:18790 --bin-dir /tmp/dr/node/bin \
//	    --kubelet-config /tmp/dr/node/cfg-good.yaml --image 127.0.0.1:18790/team/app[:tag] [identity flags]
func doctorSample(c, output string) func(t *testing.T) string {
	return func(t *testing.T) string {
		var opts []iamtest.Option
		good, tag := true, ":latest"
		var identity []string
		switch c {
		case "metadata-disabled":
			opts, tag = append(opts, iamtest.WithFault(iamtest.EndpointMetadataToken, iamtest.Hang())), ":1.4"
		case "missing-policy":
			opts = append(opts, iamtest.AllowPull("iam-ServiceId-other", "team"))
			identity = []string{"--profile-id", iamtest.DefaultProfileID}
		case "match-images":
			good = false
		case "clock-skew":
			opts = append(opts, iamtest.WithClockSkew(9*time.Minute))
		case "unknown-api-key":
		default:
			t.Fatalf("no doctor case %q", c)
		}
		emu := newEmulator(t, opts...)
		dir := t.TempDir()
		cfg, bin := writeNodeFiles(t, dir, good, emu.RegistryHost())
		if c == "unknown-api-key" {
			key := filepath.Join(dir, "node", "apikey")
			// A key IAM does not know (the emulator knows iamtest.DefaultAPIKey).
			if err := os.WriteFile(key, []byte("Wq3nV8xKp2LmR7tY5bZc0dHf9JsA4uEg6iO1-deleted\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			identity = []string{"--api-key-file", key}
		}
		args := append([]string{"doctor", "--iam-url", emu.IAMURL(), "--metadata-url", emu.MetadataURL(), "--cache-dir", "none",
			"--registries", emu.RegistryHost(), "--bin-dir", bin, "--kubelet-config", cfg, "--image", emu.RegistryHost() + "/team/app" + tag}, identity...)
		if output == "json" {
			args = append(args, "--output", "json")
		}
		r := runPlugin(t, invocation{Args: args})
		if r.Code != 1 || r.Stderr != "" {
			t.Fatalf("doctor: exit %d, want 1 (one failed check)\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		return emulatorNorm(emu, dir).apply(r.Stdout)
	}
}

// usageLines is the "Usage:" paragraph of a --help text, without its
// heading.
func usageLines(t *testing.T, help string) string {
	t.Helper()
	_, after, ok := strings.Cut(help, "Usage:\n")
	if !ok {
		t.Fatalf("no Usage: in\n%s", help)
	}
	usage, _, _ := strings.Cut(after, "\n\n")
	return usage
}

// sampleHelpUsage: the usage lines of kubelet mode's --help (README).
func sampleHelpUsage(t *testing.T) string {
	r := runPlugin(t, invocation{Args: []string{"--help"}})
	if r.Code != 0 {
		t.Fatalf("--help: exit %d: %s", r.Code, r.Stderr)
	}
	return "Usage:\n" + usageLines(t, r.Stdout)
}

// usageOf: the usage lines of a sub-command's --help.
func usageOf(cmd string) func(t *testing.T) string {
	return func(t *testing.T) string {
		r := runPlugin(t, invocation{Args: []string{cmd, "--help"}})
		if r.Code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd, r.Code, r.Stderr)
		}
		return "Usage:\n" + usageLines(t, r.Stdout)
	}
}

// installRoot is a host's / with the two directories install needs (and
// a systemd unit directory, which --host-root requires).
func installRoot(t *testing.T) (root, binDir, cfg string) {
	t.Helper()
	root = t.TempDir()
	binDir = filepath.Join(root, "opt/icr-credential-provider/bin")
	cfgDir := filepath.Join(root, "etc/kubernetes/icr-credential-provider")
	for _, d := range []string{binDir, cfgDir, filepath.Join(root, "etc/systemd/system")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root, binDir, filepath.Join(cfgDir, "config.yaml")
}

// sampleInstall: docs/install.md's install by hand, its output or the
// config it writes; the host's / is a temporary directory, shown as /.
func sampleInstall(what string) func(t *testing.T) string {
	return func(t *testing.T) string {
		root, binDir, cfg := installRoot(t)
		r := runPlugin(t, invocation{Process: true, Args: []string{"install", "--host-root", root, "--bin-dir", binDir, "--config", cfg, "--profile-id", "Profile-00000000-0000-0000-0000-000000000000"}})
		if r.Code != 0 {
			t.Fatalf("install: exit %d: %s", r.Code, r.Stderr)
		}
		var n normaliser
		n.add(root+"/", "/")
		if what == "config" {
			b, err := os.ReadFile(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return n.apply(string(b))
		}
		return n.apply(r.Stdout)
	}
}

// sampleInstallLogging: which flags become env entries and which args.
func sampleInstallLogging(t *testing.T) string {
	root, binDir, cfg := installRoot(t)
	r := runPlugin(t, invocation{Process: true, Args: []string{"install", "--host-root", root, "--bin-dir", binDir, "--config", cfg,
		"--profile-name", "icr-node-pull", "--private-endpoints", "--registries", "registry.example.com:5000", "-v", "4", "--logging-format", "json"},
		Env: []string{"ICR_CACHE_DIR=/run/icr-credential-provider"}})
	if r.Code != 0 {
		t.Fatalf("install: exit %d: %s", r.Code, r.Stderr)
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var n normaliser
	n.add(root+"/", "/")
	return n.apply(string(b))
}

// sampleUninstall: uninstall after install, on the same host.
func sampleUninstall(t *testing.T) string {
	root, binDir, cfg := installRoot(t)
	// --host-root: uninstall reads the wiring state under it, never this
	// machine's.
	if r := runPlugin(t, invocation{Process: true, Args: []string{"install", "--host-root", root, "--bin-dir", binDir, "--config", cfg}}); r.Code != 0 {
		t.Fatalf("install: exit %d: %s", r.Code, r.Stderr)
	}
	r := runPlugin(t, invocation{Process: true, Args: []string{"uninstall", "--host-root", root, "--bin-dir", binDir, "--config", cfg}})
	if r.Code != 0 {
		t.Fatalf("uninstall: exit %d: %s", r.Code, r.Stderr)
	}
	again := runPlugin(t, invocation{Process: true, Args: []string{"uninstall", "--host-root", root, "--bin-dir", binDir, "--config", cfg}})
	if again.Code != 0 {
		t.Fatalf("second uninstall: exit %d: %s", again.Code, again.Stderr)
	}
	var n normaliser
	n.add(root+"/", "/")
	return n.apply(r.Stdout + again.Stdout)
}

// sampleWiring: docs/kubelet-wiring.md's kubeadm node, as the installer's
// pod sees it (the host's / at /host): install's output, the environment
// file after it, uninstall's output.
func sampleWiring(what string) func(t *testing.T) string {
	return func(t *testing.T) string {
		n := newNode(t)
		r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--configure-kubelet=auto")})
		if r.Code != 0 {
			t.Fatalf("install: exit %d: %s", r.Code, r.Stderr)
		}
		var norm normaliser
		norm.add(n.root, "/host")
		switch what {
		case "install":
			return norm.apply(r.Stdout)
		case "file":
			return n.read("/etc/default/kubelet")
		}
		u := runPlugin(t, invocation{Process: true, Args: n.args("uninstall")})
		if u.Code != 0 {
			t.Fatalf("uninstall: exit %d: %s", u.Code, u.Stderr)
		}
		return norm.apply(u.Stdout)
	}
}

// sampleK3s: docs/kubelet-wiring.md's k3s server (the same fake host, its
// kubelet a k3s unit): install's output and the file it writes.
func sampleK3s(what string) func(t *testing.T) string {
	return func(t *testing.T) string {
		n := newNode(t)
		for _, p := range []string{"/usr/lib/systemd/system/kubelet.service", "/usr/lib/systemd/system/kubelet.service.d", "/etc/default/kubelet"} {
			if err := os.RemoveAll(n.path(p)); err != nil {
				t.Fatal(err)
			}
		}
		n.write("/etc/systemd/system/k3s.service", "[Unit]\nDescription=Lightweight Kubernetes\n\n[Service]\nType=notify\nExecStart=/usr/local/bin/k3s server\n")
		n.write("/etc/rancher/k3s/config.yaml", "write-kubeconfig-mode: \"0600\"\n")
		r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--configure-kubelet=auto")})
		if r.Code != 0 {
			t.Fatalf("install: exit %d: %s", r.Code, r.Stderr)
		}
		if what == "file" {
			return n.read("/etc/rancher/k3s/config.yaml.d/90-icr-credential-provider.yaml")
		}
		var norm normaliser
		norm.add(n.root, "/host")
		return norm.apply(r.Stdout)
	}
}

// sampleWiringRollback: install's line when the kubelet does not come back
// (its health endpoint answers 500 while the flags are set).
func sampleWiringRollback(t *testing.T) string {
	n := newNode(t)
	n.breakWith("image-credential-provider")
	args := n.args("install", "--configure-kubelet=kubeadm")
	args[slices.Index(args, "--kubelet-timeout")+1] = "2s"
	r := runPlugin(t, invocation{Process: true, Args: args})
	if r.Code == 0 || strings.Count(r.Stderr, "\n") != 1 || !strings.Contains(r.Stderr, "rolled back") {
		t.Fatalf("install with a kubelet that does not come back: exit %d\n%s", r.Code, r.Stderr)
	}
	var norm normaliser
	norm.add(n.healthz.URL, "http://127.0.0.1:10248")
	return norm.apply(r.Stderr)
}

// sampleHelperGet: a served host's answer, the token left out.
func sampleHelperGet(t *testing.T) string {
	emu := newEmulator(t)
	r := runPlugin(t, invocation{Args: []string{"credential-helper", "get"}, Stdin: "us.icr.io\n", Env: append(emulatorEnv(emu), "ICR_PROFILE_ID="+iamtest.DefaultProfileID)})
	if r.Code != 0 {
		t.Fatalf("get: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	var c struct{ ServerURL, Username, Secret string }
	if err := json.Unmarshal([]byte(r.Stdout), &c); err != nil || c.Secret == "" {
		t.Fatalf("get: %v: %s", err, r.Stdout)
	}
	return strings.Replace(r.Stdout, c.Secret, "<IAM token>", 1)
}

// sampleHelperNotFound: a host that is not served.
func sampleHelperNotFound(t *testing.T) string {
	r := runPlugin(t, invocation{Args: []string{"credential-helper", "get"}, Stdin: "cp.icr.io\n"})
	if r.Code != 1 || r.Stderr != "" {
		t.Fatalf("get cp.icr.io: exit %d, stderr %q", r.Code, r.Stderr)
	}
	return r.Stdout
}

// sampleHelperError: a trusted profile that is not linked to the instance;
// the same line on stderr and stdout.
func sampleHelperError(t *testing.T) string {
	emu := newEmulator(t, profile1234(false))
	r := runPlugin(t, invocation{Args: []string{"credential-helper", "get"}, Stdin: "us.icr.io\n", Env: append(emulatorEnv(emu), "ICR_PROFILE_ID=Profile-1234")})
	if r.Code != 1 || r.Stdout != r.Stderr || strings.Count(r.Stderr, "\n") != 1 {
		t.Fatalf("get: exit %d\nstdout %q\nstderr %q", r.Code, r.Stdout, r.Stderr)
	}
	var n normaliser
	n.add(emu.MetadataURL(), sampleMetadataURL)
	return n.apply(r.Stderr)
}

// sampleHelperConfig: a docker config with a credHelpers entry for every
// host 'list' prints (what docs/credential-helper.md's jq line makes).
func sampleHelperConfig(t *testing.T) string {
	r := runPlugin(t, invocation{Args: []string{"credential-helper", "list"}})
	if r.Code != 0 {
		t.Fatalf("list: exit %d: %s", r.Code, r.Stderr)
	}
	var hosts map[string]string
	if err := json.Unmarshal([]byte(r.Stdout), &hosts); err != nil {
		t.Fatal(err)
	}
	helpers := map[string]string{}
	for h := range hosts {
		helpers[h] = "icr"
	}
	b, err := json.MarshalIndent(map[string]any{"credHelpers": helpers}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sampleAgentHelp: icr-node-agent --help, as it prints it (on stderr).
func sampleAgentHelp(t *testing.T) string {
	bin := buildOnce(t, "icr-node-agent", "../icr-node-agent")
	cmd := exec.Command(bin, "--help")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String() + stderr.String() + "(exit status " + strconv.Itoa(code) + ")"
}

// agentConfig writes the kubelet config install writes, for the emulator.
func agentConfig(t *testing.T, emu *iamtest.Server, profile string) string {
	t.Helper()
	cfg, err := installer.Config(installer.Provider{Env: []kubeletv1.ExecEnvVar{
		{Name: "ICR_IAM_URL", Value: emu.IAMURL()}, {Name: "ICR_METADATA_URL", Value: emu.MetadataURL()},
		{Name: "ICR_PROFILE_ID", Value: profile}, {Name: "ICR_CACHE_DIR", Value: filepath.Join(t.TempDir(), "cache")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The agent has refreshed the token and run its checks, all passed.
var (
	metricsReadyRe     = regexp.MustCompile(`(?m)^icr_credential_provider_credentials_ready 1$`)
	metricsRefreshedRe = regexp.MustCompile(`(?m)^icr_credential_provider_token_refreshes_total 1$`)
)

var unixTimeRe = regexp.MustCompile(`(_timestamp_seconds(\{[^}]*\})?) \d(\.\d+)?e\+09`)

// sampleAgentMetrics: a scrape of the agent's /metrics, the agent run as
// the DaemonSet runs it (without an API server here: it says so and
// carries on), once it has refreshed the token and run its checks.
func sampleAgentMetrics(t *testing.T) string {
	bin := buildOnce(t, "icr-node-agent", "../icr-node-agent")
	emu := newEmulator(t)
	_, binDir, _ := installRoot(t)
	if err := os.WriteFile(filepath.Join(binDir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--kubelet-config", agentConfig(t, emu, iamtest.DefaultProfileID), "--bin-dir", binDir,
		"--node-name", "node-1", "--kubeconfig", filepath.Join(t.TempDir(), "none"), "--metrics-address", addr)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := string(b)
		if metricsReadyRe.MatchString(s) && metricsRefreshedRe.MatchString(s) {
			return unixTimeRe.ReplaceAllString(s, "$1 "+sampleUnix)
		}
	}
	t.Fatalf("no metrics after a refresh and a healthy check:\n%s", stderr.String())
	return ""
}

// sampleAgentCondition: what the agent writes to the API server for a
// node whose trusted profile is not linked: the Node's condition and the
// Event (with the real agent code and a fake API server).
func sampleAgentCondition(what string) func(t *testing.T) string {
	return func(t *testing.T) string {
		emu := newEmulator(t, profile1234(false))
		client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
		at, _ := time.Parse(time.RFC3339, sampleTime)
		a := agent.New(agent.Options{KubeletConfig: agentConfig(t, emu, "Profile-1234"), NodeName: "node-1", BinDir: t.TempDir(),
			Publisher: &agent.NodeStatus{Client: client, NodeName: "node-1"}, Now: func() time.Time { return at }, IAM: iam.Options{Now: func() time.Time { return at }},
			Log: funcr.New(func(string, string) {}, funcr.Options{})}) // quiet (agent.New replaces logr.Discard(), whose sink is nil, with klog)
		ctx := context.Background()
		// The checks log through klog too, whose output is global: hold the
		// lock of the in-process runs (runInProcess).
		inProcess.Lock()
		h := a.Check(ctx)
		inProcess.Unlock()
		if h.OK {
			t.Fatal("an unlinked profile passed the checks")
		}
		var n normaliser
		n.add(emu.MetadataURL(), sampleMetadataURL)
		if what == "event" {
			evs, err := client.CoreV1().Events(agent.EventNamespace).List(ctx, metav1.ListOptions{})
			if err != nil || len(evs.Items) != 1 {
				t.Fatalf("events: %v %v", err, evs)
			}
			ev := evs.Items[0]
			// What the agent sent: without what the API server adds.
			ev.ResourceVersion, ev.ManagedFields = "", nil
			b, err := yaml.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			return n.apply(string(b))
		}
		node, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(map[string]any{"status": map[string]any{"conditions": node.Status.Conditions}})
		if err != nil {
			t.Fatal(err)
		}
		checkHealthColumns(t, node)
		return n.apply(string(b))
	}
}

// checkHealthColumns: the docs' 'kubectl get nodes -o custom-columns=…'
// works as kubectl evaluates it, on a Node the agent wrote: the spec split
// at commas and colons, each expression made a {…} template
// (RelaxedJSONPathExpression) and run with client-go's JSONPath, missing
// keys allowed (k8s.io/kubectl/pkg/cmd/get/customcolumn.go), on the object
// as the API server's JSON.
func checkHealthColumns(t *testing.T, node *corev1.Node) {
	t.Helper()
	raw, err := json.Marshal(node)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	specRe := regexp.MustCompile(`kubectl get nodes -o 'custom-columns=([^']*)'`)
	for _, f := range []string{"README.md", "docs/node-agent.md"} {
		b, err := os.ReadFile(filepath.Join(docsRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		m := specRe.FindStringSubmatch(string(b))
		if m == nil {
			t.Errorf("%s gives no kubectl get nodes -o 'custom-columns=…' command", f)
			continue
		}
		got := map[string]string{}
		for _, col := range strings.Split(m[1], ",") {
			header, expr, ok := strings.Cut(col, ":")
			if !ok {
				t.Fatalf("%s: column %q has no header", f, col)
			}
			if !strings.HasPrefix(expr, "{") {
				expr = "{." + strings.TrimPrefix(expr, ".") + "}"
			}
			jp := jsonpath.New(header).AllowMissingKeys(true)
			if err := jp.Parse(expr); err != nil {
				t.Fatalf("%s: column %s does not parse: %v", f, header, err)
			}
			var out bytes.Buffer
			if err := jp.Execute(&out, obj); err != nil {
				t.Fatalf("%s: column %s: %v", f, header, err)
			}
			got[header] = out.String()
		}
		if got["NAME"] != "node-1" || got["ICR"] != "False" {
			t.Errorf("%s: the columns give %v on a node whose credentials are not ready, want NAME node-1, ICR False", f, got)
		}
	}
}

func TestLineDiff(t *testing.T) {
	got := lineDiff([]string{"a", "b", "c", "d", "e", "f", "g"}, []string{"a", "b", "c", "D", "e", "f", "g", "h"})
	want := "  …\n  b\n  c\n- d\n+ D\n  e\n  f\n  g\n+ h\n"
	if got != want {
		t.Errorf("lineDiff:\n%s\nwant\n%s", got, want)
	}
}
