package node

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

// marker starts the line the image program prints (hello.Marker).
const marker = "ICR-E2E-NODE-HELLO"

// The images on us.icr.io: one per pod, each with a layer of its own.
const (
	imageHello = "team/hello:1" // the first pod
	imageWorld = "team/world:1" // a second pod, another image: no second IAM grant
	imageLater = "team/later:1" // pulled while the profile is not linked, then after
)

// jwtShaped matches the emulator's tokens (IAM, instance identity,
// registry): JWT-shaped, base64url JSON header first.
var jwtShaped = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}`)

// redact shortens every JWT-shaped string, for anything the test prints.
func redact(s string) string {
	return jwtShaped.ReplaceAllStringFunc(s, func(m string) string { return m[:8] + "…(redacted)" })
}

func TestNode(t *testing.T) {
	if v := os.Getenv("ICR_E2E_NODE"); v != "1" {
		t.Skip("skipped: ICR_E2E_NODE is not 1; `make e2e-node` runs this test (a real kubelet and containerd, as root)")
	}
	if out, err := exec.Command("./prereqs.sh").Output(); err != nil {
		t.Fatalf("e2e-node: %s", strings.TrimSpace(string(out)))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// End well before go test's -timeout, which would panic and skip the
	// cleanup (run.sh's cleanup.sh would still run).
	limit := 40 * time.Minute
	if d, ok := t.Deadline(); ok {
		limit = time.Until(d) - 2*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	total := time.Now()

	n := newNode(t, ctx)
	n.bins = buildBinaries(t, ctx, n.path("bin"))
	hello, err := os.ReadFile(n.bins.hello)
	if err != nil {
		t.Fatal(err)
	}
	layers := map[string][]byte{}
	for _, ref := range []string{imageHello, imageWorld, imageLater} {
		if layers[ref], err = helloLayer(hello, registryHost+"/"+ref); err != nil {
			t.Fatal(err)
		}
	}
	if err := pauseArchive(n.path("images/pause.tar"), hello); err != nil {
		t.Fatal(err)
	}
	if err := writePKI(n.path("pki")); err != nil {
		t.Fatal(err)
	}
	setup := time.Now()
	n.createCgroupRoot()
	n.startNamespace()
	n.startEmulator(layers)
	n.startContainerd()
	providerConfig := n.install(t)
	t.Logf("node ready in %v (namespace, emulator, containerd, plugin installed)", time.Since(setup).Round(10*time.Millisecond))

	secrets := []string{iamtest.DefaultAPIKey}

	// 1. Two pods from two us.icr.io images, no pull secret: the plugin
	//    gets one IAM token from the node's identity, the kubelet reuses it.
	t.Log("== 1. pods from us.icr.io with the node's trusted profile")
	n.writePod(t, "hello", imageHello)
	k1 := n.startKubelet(t, "kubelet-1", providerConfig)
	took := n.waitFor(t, k1, 3*time.Minute, "the hello pod's output", func() bool { return n.containerRan("hello", imageHello) })
	t.Logf("hello pod: pulled and started %v after the kubelet", took.Round(10*time.Millisecond))
	grantsAfterFirst := n.stats().Grants
	n.writePod(t, "world", imageWorld)
	took = n.waitFor(t, k1, 3*time.Minute, "the world pod's output", func() bool { return n.containerRan("world", imageWorld) })
	t.Logf("world pod: pulled and started %v after its manifest", took.Round(10*time.Millisecond))

	st := n.stats()
	t.Logf("emulator: %d IAM grant(s), requests %v", st.Grants, st.Counts)
	if grantsAfterFirst != 1 || st.Grants != 1 {
		t.Errorf("IAM grants: %d after the first pod, %d after the second; want 1 and 1 (the second pull reuses the token)", grantsAfterFirst, st.Grants)
	}
	checkRegistryTokens(t, st.RegistryTokens, "repository:team/hello:pull", "repository:team/world:pull")
	for _, ref := range []string{imageHello, imageWorld} {
		if out, err := n.ctr("images", "ls", "-q"); err != nil || !strings.Contains(out, registryHost+"/"+ref) {
			t.Errorf("containerd has no image %s/%s: %v", registryHost, ref, err)
		}
	}
	n.checkNoPullSecret(t, providerConfig)
	execs := grepLines(k1.log, "Getting image credentials from external exec plugin")
	pulled := grepLines(k1.log, "Successfully pulled image")
	if len(execs) != 1 {
		t.Errorf("the kubelet ran the plugin %d times, want 1 (its cache holds the answer, cacheKeyType Global)", len(execs))
	}
	if len(pulled) != 2 {
		t.Errorf("%d 'Successfully pulled image' lines in the kubelet's log, want 2", len(pulled))
	}
	for _, l := range append(execs, pulled...) {
		t.Logf("kubelet: %s", abbreviate(redact(l)))
	}
	secrets = append(secrets, n.cachedTokens(t)...)
	n.checkNoSecrets(t, secrets, k1.log, n.path("logs/containerd.log"), n.path("logs/emulator.log"))

	// 2. The node's trusted profile is not linked to the instance: the
	//    pod does not start, the kubelet's log has the plugin's cause and
	//    fix, and no secret. Then the profile is linked: the kubelet's
	//    retry pulls and starts it, nothing restarted.
	t.Log("== 2. the profile is not linked to the instance")
	for _, p := range []string{"hello", "world"} {
		if err := os.Remove(n.path("kubelet/manifests", p+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
	n.waitFor(t, k1, 2*time.Minute, "the pods to stop", func() bool { return n.runningTasks() == 0 })
	k1.stop(30 * time.Second)
	n.fault(iamtest.EndpointMetadataIAMToken.String(), url.Values{"kind": {"api-error"}, "status": {"403"}, "code": {"trusted_profile_not_linked"},
		"message": {"Trusted profile `" + iamtest.DefaultProfileID + "` is not linked to this instance."}})
	n.resetEmulator(t)
	// A node that has no token yet: the plugin's cache is empty.
	if err := os.RemoveAll(n.path("plugin/cache")); err != nil {
		t.Fatal(err)
	}
	n.writePod(t, "later", imageLater)
	k2 := n.startKubelet(t, "kubelet-2", providerConfig)
	n.waitFor(t, k2, 3*time.Minute, "the kubelet to back off pulling "+imageLater, func() bool {
		return len(grepLines(k2.log, "Back-off pulling image")) > 0
	})
	entry, inner := logEntry(k2.log, "Failed to provide credentials for image")
	if entry == "" {
		t.Fatalf("no 'Failed to provide credentials' entry in the kubelet's log")
	}
	t.Logf("kubelet: %s", abbreviate(redact(entry)))
	// The plugin's stderr follows the exec error ("exit status 1: ") and
	// must be one line: cause and fix.
	var cause string
	for _, l := range inner {
		if _, after, ok := strings.Cut(l, "exit status 1: "); ok {
			cause = after
		}
	}
	t.Logf("the plugin's line, as the kubelet logged it: %s", redact(cause))
	if len(inner) != 1 || !strings.HasPrefix(cause, "icr-credential-provider: ") {
		t.Errorf("the plugin's stderr is not one line starting with icr-credential-provider: %q", redact(strings.Join(inner, "\n")))
	}
	for _, want := range []string{iamtest.DefaultProfileID, "trusted_profile_not_linked", "trusted-profile-link-create"} {
		if !strings.Contains(cause, want) {
			t.Errorf("the plugin's line lacks %q (cause and fix)", want)
		}
	}
	if n.containerRan("later", imageLater) || n.containerCreated("later") {
		t.Errorf("the later pod's container was created although its image could not be pulled")
	}
	st = n.stats()
	if st.Grants != 0 || len(st.RegistryTokens) != 0 {
		t.Errorf("with the profile not linked: %d IAM grants, registry tokens %+v; want none", st.Grants, st.RegistryTokens)
	}
	n.checkNoSecrets(t, secrets, k2.log)

	n.fault(iamtest.EndpointMetadataIAMToken.String(), url.Values{"kind": {"none"}})
	took = n.waitFor(t, k2, 3*time.Minute, "the later pod after the profile is linked", func() bool { return n.containerRan("later", imageLater) })
	t.Logf("later pod: started %v after the profile was linked (the kubelet's image pull back-off)", took.Round(100*time.Millisecond))
	st = n.stats()
	if st.Grants != 1 {
		t.Errorf("%d IAM grants after the profile was linked, want 1", st.Grants)
	}
	checkRegistryTokens(t, st.RegistryTokens, "repository:team/later:pull")
	secrets = append(secrets, n.cachedTokens(t)...)
	n.checkNoSecrets(t, secrets, k1.log, k2.log, n.path("logs/containerd.log"), n.path("logs/emulator.log"))
	t.Logf("scenario done in %v (total with builds %v); cleaning up", time.Since(setup).Round(100*time.Millisecond), time.Since(total).Round(time.Second))
}

// install runs `icr-credential-provider install` as the DaemonSet does: the
// binary into the kubelet's credential-provider bin dir, the config for
// --image-credential-provider-config, the node identity through the
// emulated VPC metadata service and the emulator's default profile.
func (n *node) install(t *testing.T) string {
	cfg := n.path("plugin/config.yaml")
	cmd := exec.CommandContext(n.ctx, n.bins.plugin, "install", "--bin-dir", n.path("plugin/bin"), "--config", cfg,
		"--metadata-url", n.emuURL, "--iam-url", n.emuURL, "--profile-id", iamtest.DefaultProfileID, "--cache-dir", n.path("plugin/cache"))
	cmd.Env = []string{daemonPath}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install: %v: %s", err, out)
	}
	return cfg
}

// startKubelet writes the kubelet's configuration (once) and starts it,
// standalone: no API server, static pods from kubelet/manifests.
func (n *node) startKubelet(t *testing.T, name, providerConfig string) *daemon {
	cfg := n.path("kubelet/config.yaml")
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine runs cgroup v1, which the kubelet refuses since 1.35 unless
# failCgroupV1 is false. Set explicitly for this test; a cgroup v2 node
# needs no such line.
failCgroupV1: false
cgroupDriver: cgroupfs
# A cgroup root of the test's own, created and removed by it.
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
fileCheckFrequency: 1s
# Standalone: no API server, so no webhook authentication or authorization
# and no node registration; the kubelet's own server is not needed.
enableServer: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
# Check the kernel defaults instead of writing them (inside the test's
# mount namespace they are files with the expected values anyway).
protectKernelDefaults: true
volumePluginDir: %s
podLogsDir: %s
failSwapOn: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
`, n.cgroup, n.containerdSocket(), n.path("kubelet/manifests"), n.path("kubelet/volume-plugins"), n.path("kubelet/pod-logs"))
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return n.start(name, n.bins.kubelet, "--config", cfg, "--root-dir", n.path("kubelet/root"), "--hostname-override", nodeName,
		"--image-credential-provider-config", providerConfig, "--image-credential-provider-bin-dir", n.path("plugin/bin"),
		// v=3 logs the kubelet's events (Pulled, BackOff); plugin.go at
		// v=5 logs each exec of the plugin.
		"--v=3", "--vmodule=plugin=5")
}

// writePod writes a static pod: one container, hostNetwork (no CNI here),
// no imagePullSecrets.
func (n *node) writePod(t *testing.T, name, ref string) {
	pod := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: default
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  containers:
  - name: %s
    image: %s/%s
    imagePullPolicy: IfNotPresent
`, name, name, registryHost, ref)
	tmp := n.path("kubelet", name+".yaml.tmp")
	if err := os.WriteFile(tmp, []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, n.path("kubelet/manifests", name+".yaml")); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, the kubelet exits, the time is up or
// the test is interrupted; it returns how long it took.
func (n *node) waitFor(t *testing.T, kubelet *daemon, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if !kubelet.running() {
			t.Fatalf("e2e-node: the kubelet exited (%v) while waiting for %s; its log ends:\n%s", kubelet.err, what, redact(lastLines(kubelet.log, 15)))
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s; the kubelet's log ends:\n%s", timeout, what, redact(lastLines(kubelet.log, 25)))
		}
		select {
		case <-n.ctx.Done():
			t.Fatalf("stopped while waiting for %s: %v", what, context.Cause(n.ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// containerRan reports whether the pod's container printed the image
// program's marker naming ref.
func (n *node) containerRan(pod, ref string) bool {
	logs, _ := filepath.Glob(n.path("kubelet/pod-logs", "default_"+pod+"-"+nodeName+"_*", pod, "*.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil && strings.Contains(string(b), marker+" from "+registryHost+"/"+ref) {
			return true
		}
	}
	return false
}

// containerCreated reports whether containerd has a (non-sandbox)
// container of the pod.
func (n *node) containerCreated(pod string) bool {
	out, err := n.ctr("containers", "ls", "-q", `labels."io.kubernetes.pod.name"==`+pod+"-"+nodeName+`,labels."io.cri-containerd.kind"==container`)
	return err != nil || strings.TrimSpace(out) != ""
}

// runningTasks counts containerd's running tasks (containers and
// sandboxes).
func (n *node) runningTasks() int {
	out, err := n.ctr("tasks", "ls")
	if err != nil {
		return -1
	}
	return strings.Count(out, "RUNNING")
}

func (n *node) resetEmulator(t *testing.T) {
	resp, err := n.client.Post(n.emuURL+"/_emulator/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// checkRegistryTokens: every registry token went to iambearer with an IAM
// token the emulator minted for the node's trusted profile through the VPC
// metadata service (cr-token grant), all from one grant, and the scopes
// wanted were granted.
func checkRegistryTokens(t *testing.T, rts []iamtest.RegistryToken, scopes ...string) {
	t.Helper()
	if len(rts) == 0 {
		t.Errorf("the registry issued no token")
		return
	}
	var got []string
	for _, rt := range rts {
		t.Logf("registry token for %s as %s (IAM token id %s, %s): %v", rt.Username, rt.IAMID, rt.IAMTokenID, rt.GrantType, rt.Scopes)
		if rt.Username != "iambearer" || rt.IAMID != "iam-"+iamtest.DefaultProfileID || rt.GrantType != iamtest.GrantTypeCRToken {
			t.Errorf("registry token for %s as %s (%s); want iambearer with the trusted profile's IAM token", rt.Username, rt.IAMID, rt.GrantType)
		}
		if rt.IAMTokenID != rts[0].IAMTokenID {
			t.Errorf("registry tokens from two IAM tokens (%s, %s); want one", rts[0].IAMTokenID, rt.IAMTokenID)
		}
		got = append(got, rt.Scopes...)
	}
	for _, s := range scopes {
		if !slices.Contains(got, s) {
			t.Errorf("no registry token with scope %s (got %v)", s, got)
		}
	}
}

// checkNoPullSecret: the pods name no imagePullSecrets, the kubelet has no
// API server to read a Secret from (no --kubeconfig), and the provider
// config that install wrote carries no credential.
func (n *node) checkNoPullSecret(t *testing.T, providerConfig string) {
	t.Helper()
	pods, _ := filepath.Glob(n.path("kubelet/manifests/*.yaml"))
	for _, p := range pods {
		if b, _ := os.ReadFile(p); strings.Contains(string(b), "imagePullSecrets") {
			t.Errorf("%s has imagePullSecrets", filepath.Base(p))
		}
	}
	for _, d := range n.daemons {
		if strings.HasPrefix(d.name, "kubelet") && slices.ContainsFunc(d.cmd.Args, func(a string) bool { return strings.HasPrefix(a, "--kubeconfig") }) {
			t.Errorf("the kubelet was given a kubeconfig")
		}
	}
	b, err := os.ReadFile(providerConfig)
	if err != nil {
		t.Fatal(err)
	}
	if jwtShaped.Match(b) || strings.Contains(string(b), iamtest.DefaultAPIKey) {
		t.Errorf("the provider config carries a credential")
	}
}

// cachedTokens are the tokens in the plugin's disk cache: the IAM tokens
// the emulator minted for this node, which must not appear in any log.
func (n *node) cachedTokens(t *testing.T) []string {
	var toks []string
	files, _ := filepath.Glob(n.path("plugin/cache/*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		toks = append(toks, jwtShaped.FindAllString(string(b), -1)...)
	}
	if len(toks) == 0 {
		t.Errorf("no token in the plugin's cache (%d files)", len(files))
	}
	return toks
}

// checkNoSecrets: no log holds a secret the test knows of, nor anything
// JWT-shaped (every token the emulator mints is).
func (n *node) checkNoSecrets(t *testing.T, secrets []string, logs ...string) {
	t.Helper()
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Errorf("%s contains a secret (%s)", filepath.Base(l), redact(s)[:8]+"…")
			}
		}
		if m := jwtShaped.FindString(string(b)); m != "" {
			t.Errorf("%s contains a token: %s", filepath.Base(l), redact(m))
		}
	}
}

// grepLines returns the lines of a file that contain s.
func grepLines(path, s string) []string {
	b, _ := os.ReadFile(path)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// logEntry finds the first klog entry of a file that contains s and
// returns its first line and, when the entry spans lines (klog writes a
// value with a newline as "key=<", the value's lines indented by a tab,
// then " >"), the value's non-empty lines without the tab.
func logEntry(path, s string) (first string, inner []string) {
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		if !strings.Contains(l, s) {
			continue
		}
		if !strings.HasSuffix(l, "=<") {
			return l, nil
		}
		for _, m := range lines[i+1:] {
			if strings.HasPrefix(m, " >") || !strings.HasPrefix(m, "\t") {
				break
			}
			if v := strings.TrimPrefix(m, "\t"); strings.TrimSpace(v) != "" {
				inner = append(inner, v)
			}
		}
		return l, inner
	}
	return "", nil
}

// abbreviate shortens a kubelet log line for the test's output.
func abbreviate(l string) string {
	if len(l) > 400 {
		return l[:400] + " …"
	}
	return l
}
