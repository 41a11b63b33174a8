package node

// The node: a private network + mount namespace held by one process, with
// the emulator, containerd and the kubelet started inside it, and the
// cleanup that stops and removes all of it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

const (
	// nodeName is the kubelet's node name; static pods are named
	// POD-nodeName.
	nodeName = "icr-e2e-node"
	// registryHost is the registry the pods pull from; it resolves to
	// 127.0.0.1 inside the namespace only.
	registryHost = "us.icr.io"
	// daemonPath is the PATH of everything started in the namespace (the
	// plugin inherits the kubelet's environment): nothing of the test's
	// environment (proxies, Go settings) leaks in.
	daemonPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// kernelDefaults are the sysctls the kubelet checks with
// protectKernelDefaults (and would write without it). Inside the namespace
// each is a bind-mounted file with the value the kubelet expects, so the
// machine's own settings are neither needed nor touched.
var kernelDefaults = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// daemon is a process started inside the namespace.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func (d *daemon) running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, then SIGKILL after grace.
func (d *daemon) stop(grace time.Duration) {
	if !d.running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// node is the test's node. Every path is under dir, a fresh temporary
// directory; the namespace adds a tmpfs on /run, overlays on /var/lib and
// /var/log (the kubelet writes there whatever its flags say), the hosts
// file and the kernel defaults.
type node struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	bins   binaries
	state  string // the state file cleanup.sh reads
	cgroup string // the kubelet's cgroupRoot, without the leading slash

	holder     *exec.Cmd
	holderDone chan struct{}
	netns      string // "net:[INODE]" of the namespace

	// cgroupsBefore are the kubelet-like cgroups (kubepods*, k8s.io*)
	// that existed before the test, so that cleanup can tell what it made.
	cgroupsBefore []string

	daemons []*daemon
	emuURL  string
	client  *http.Client // dials inside the namespace
}

func (n *node) path(p ...string) string { return filepath.Join(append([]string{n.dir}, p...)...) }

// newNode creates the work directory and the namespace; t.Cleanup removes
// everything again.
func newNode(t *testing.T, ctx context.Context) *node {
	dir, err := os.MkdirTemp("", "icr-e2e-node-")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, ctx: ctx, dir: dir, cgroup: filepath.Base(dir), cgroupsBefore: kubeletCgroups()}
	// A unix socket path has at most 107 bytes; containerd adds ".ttrpc".
	if len(n.containerdSocket())+len(".ttrpc") > 107 {
		os.Remove(dir)
		t.Fatalf("e2e-node: the work directory %s is too long a path for containerd's socket: set TMPDIR to a short directory (e.g. /tmp)", dir)
	}
	n.state = os.Getenv("ICR_E2E_NODE_STATE")
	if n.state == "" {
		n.state = dir + ".state"
	}
	t.Cleanup(n.cleanup)
	n.writeState()
	for _, d := range []string{"bin", "images", "pki", "logs", "etc", "sysctl", "overlay/varlib/upper", "overlay/varlib/work",
		"overlay/varlog/upper", "overlay/varlog/work", "containerd/root", "containerd/opt", "containerd/certs.d/" + registryHost,
		"kubelet/root", "kubelet/manifests", "kubelet/volume-plugins", "kubelet/pod-logs", "plugin/bin", "plugin/cache"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// writeState records what cleanup.sh needs should this process die
// without cleaning up.
func (n *node) writeState() {
	s := fmt.Sprintf("workdir=%s\ncgroup=%s\nnetns=%s\n", n.dir, n.cgroup, n.netns)
	tmp := n.state + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err == nil {
		_ = os.Rename(tmp, n.state)
	}
}

// startNamespace starts the holder (`unshare --mount --net --propagation
// private sleep infinity`) and sets up the namespace: loopback up, us.icr.io
// at 127.0.0.1, a tmpfs on /run, overlays on /var/lib and /var/log, the
// kernel defaults.
func (n *node) startNamespace() {
	t := n.t
	hosts := "127.0.0.1 localhost " + registryHost + "\n::1 localhost ip6-localhost ip6-loopback\n"
	if err := os.WriteFile(n.path("etc/hosts"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	script := []string{"set -eu", "ip link set lo up",
		"mount -t tmpfs -o mode=0755,size=512m icr-e2e-node-run /run", "mkdir -p /run/icr-e2e-node",
		fmt.Sprintf("mount -t overlay icr-e2e-node-varlib -o lowerdir=/var/lib,upperdir=%s,workdir=%s /var/lib", n.path("overlay/varlib/upper"), n.path("overlay/varlib/work")),
		fmt.Sprintf("mount -t overlay icr-e2e-node-varlog -o lowerdir=/var/log,upperdir=%s,workdir=%s /var/log", n.path("overlay/varlog/upper"), n.path("overlay/varlog/work")),
		"mount --bind " + n.path("etc/hosts") + " /etc/hosts",
	}
	keys := make([]string, 0, len(kernelDefaults))
	for k := range kernelDefaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f := n.path("sysctl", strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(f, []byte(kernelDefaults[k]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		script = append(script, "mount --bind "+f+" /proc/sys/"+k)
	}

	n.holder = exec.Command("unshare", "--mount", "--net", "--propagation", "private", "--", "sleep", "infinity")
	n.holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.holder.Start(); err != nil {
		t.Fatalf("e2e-node: cannot start the namespace holder (unshare): %v", err)
	}
	n.holderDone = make(chan struct{})
	go func() { _ = n.holder.Wait(); close(n.holderDone) }()
	self, _ := os.Readlink("/proc/self/ns/net")
	pid := n.holder.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if ns != "" && ns != self && strings.TrimSpace(string(comm)) == "sleep" {
			n.netns = ns
			break
		}
		select {
		case <-n.holderDone:
			t.Fatal("e2e-node: unshare --mount --net exited at once: cannot create namespaces here (run as root on the host)")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("e2e-node: the namespace holder did not enter its namespaces within 10s")
		}
	}
	n.writeState()
	if out, err := n.nsenter("sh", "-c", strings.Join(script, "\n")).CombinedOutput(); err != nil {
		t.Fatalf("e2e-node: setting up the namespace failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	n.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DialContext: n.dialInNamespace, DisableKeepAlives: true}}
	t.Logf("namespace: holder pid %d, %s, us.icr.io -> 127.0.0.1, work dir %s", pid, n.netns, n.dir)
}

// nsenter is a command run inside the namespace.
func (n *node) nsenter(args ...string) *exec.Cmd {
	cmd := exec.CommandContext(n.ctx, "nsenter", append([]string{"-t", strconv.Itoa(n.holder.Process.Pid), "-m", "-n", "--"}, args...)...)
	cmd.Env = []string{daemonPath, "HOME=/root"}
	return cmd
}

// dialInNamespace dials from inside the namespace: a socket belongs to the
// network namespace of the thread that creates it.
func (n *node) dialInNamespace(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", n.holder.Process.Pid))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		// Back to the test's namespace; if that fails the thread stays
		// locked and ends with this goroutine.
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// start starts a daemon inside the namespace, its output in logs/NAME.log.
func (n *node) start(name string, args ...string) *daemon {
	t := n.t
	d := &daemon{name: name, log: n.path("logs", name+".log"), done: make(chan struct{})}
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d.cmd = exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.holder.Process.Pid), "-m", "-n", "--"}, args...)...)
	d.cmd.Env = []string{daemonPath, "HOME=/root"}
	d.cmd.Stdout, d.cmd.Stderr = f, f
	// Its own process group: a ^C reaches the test, which stops it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	n.daemons = append(n.daemons, d)
	return d
}

// lastLines is the end of a log, for failure messages.
func lastLines(path string, k int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > k {
		lines = lines[len(lines)-k:]
	}
	return strings.Join(lines, "\n")
}

// startEmulator starts the IBM Cloud emulator: IAM and VPC metadata on
// http://127.0.0.1:PORT, the registry also on https://127.0.0.1:443 with
// the test CA's certificate for us.icr.io, serving the images.
func (n *node) startEmulator(images map[string][]byte) {
	t := n.t
	urlFile := n.path("emulator.url")
	args := []string{n.bins.emulator, "--listen", "127.0.0.1:0", "--url-file", urlFile, "--log-requests",
		"--tls-listen", "127.0.0.1:443", "--tls-cert", n.path("pki/tls.crt"), "--tls-key", n.path("pki/tls.key")}
	refs := make([]string, 0, len(images))
	for ref := range images {
		refs = append(refs, ref)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		f := n.path("images", strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar.gz")
		if err := os.WriteFile(f, images[ref], 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--image-layer", ref+"="+f, "--image-entrypoint", ref+"=/hello")
	}
	d := n.start("emulator", args...)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(urlFile); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if u, ok := strings.CutPrefix(l, "ICR_EMULATOR_URL="); ok {
					n.emuURL = u
				}
			}
			if n.emuURL != "" {
				break
			}
		}
		if !d.running() || time.Now().After(deadline) {
			t.Fatalf("e2e-node: the emulator did not start: %s", lastLines(d.log, 3))
		}
	}
	t.Logf("emulator: IAM and VPC metadata at %s, registry at https://%s (127.0.0.1:443)", n.emuURL, registryHost)
}

// stats reads the emulator's counters and registry-token records.
func (n *node) stats() iamtest.Stats {
	n.t.Helper()
	var st iamtest.Stats
	resp, err := n.client.Get(n.emuURL + "/_emulator/stats")
	if err != nil {
		n.t.Fatalf("emulator stats: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		n.t.Fatalf("emulator stats: %v", err)
	}
	return st
}

// fault installs a fault through the emulator's control endpoint.
func (n *node) fault(endpoint string, params url.Values) {
	n.t.Helper()
	params.Set("endpoint", endpoint)
	resp, err := n.client.Post(n.emuURL+"/_emulator/fault?"+params.Encode(), "", nil)
	if err != nil {
		n.t.Fatalf("emulator fault: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.t.Fatalf("emulator fault %s %v: %s", endpoint, params, resp.Status)
	}
}

func (n *node) containerdSocket() string { return n.path("containerd.sock") }

// ctr runs ctr against the test's containerd (its socket is a file on the
// host's file system, reachable from outside the namespace).
func (n *node) ctr(args ...string) (string, error) {
	cmd := exec.CommandContext(n.ctx, "ctr", append([]string{"--address", n.containerdSocket(), "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// startContainerd writes containerd's config and starts it: its own root,
// state, socket and runc root; the pause image imported; us.icr.io trusted
// through hosts.toml with the test CA.
func (n *node) startContainerd() *daemon {
	t := n.t
	ca := n.path("pki/ca.pem")
	// containerd 1.6.20 rejects a hosts.toml with only top-level server and
	// ca ("invalid host tree"): a [host] table is needed, and the ca goes
	// in both places.
	hostsTOML := fmt.Sprintf("server = %q\nca = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
		"https://"+registryHost, ca, "https://"+registryHost, ca)
	if err := os.WriteFile(n.path("containerd/certs.d", registryHost, "hosts.toml"), []byte(hostsTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = "/run/icr-e2e-node/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # Processes here lack CAP_SYS_RESOURCE: lowering oom_score_adj is refused
  # and sandboxes fail ("can't get final child's PID from pipe: EOF").
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "/run/icr-e2e-node/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %q
`, n.path("containerd/root"), n.containerdSocket(), n.path("containerd/opt"), pauseImage,
		n.path("containerd/cni-bin"), n.path("containerd/cni-conf"), n.path("containerd/certs.d"))
	cfg := n.path("containerd/config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	d := n.start("containerd", "containerd", "--config", cfg)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(n.containerdSocket()); err == nil {
			if _, err := n.ctr("version"); err == nil {
				break
			}
		}
		if !d.running() || time.Now().After(deadline) {
			t.Fatalf("e2e-node: containerd did not start: %s (is another containerd holding its files, or is overlayfs unavailable? apt-get install -y containerd runc)",
				strings.ReplaceAll(lastLines(d.log, 2), "\n", " | "))
		}
	}
	if _, err := n.ctr("images", "import", "--all-platforms", n.path("images/pause.tar")); err != nil {
		t.Fatalf("e2e-node: importing the pause image: %v", err)
	}
	v, _ := exec.Command("containerd", "--version").Output()
	r, _ := exec.Command("runc", "--version").Output()
	t.Logf("containerd: %s; %s; pause image %s imported", strings.TrimSpace(string(v)), strings.SplitN(string(r), "\n", 2)[0], pauseImage)
	return d
}

// createCgroupRoot makes the kubelet's cgroupRoot in every cgroup
// hierarchy (the kubelet checks that it exists); cpuset needs its cpus and
// mems filled in before anything can join it.
func (n *node) createCgroupRoot() {
	for _, mnt := range cgroupMounts() {
		dir := filepath.Join(mnt, n.cgroup)
		if err := os.Mkdir(dir, 0o755); err != nil {
			n.t.Fatalf("e2e-node: cannot create cgroup %s: %v (are cgroups writable here?)", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, err := os.ReadFile(filepath.Join(mnt, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					n.t.Fatalf("cgroup %s: %v", filepath.Join(dir, f), err)
				}
			}
		}
	}
}

// cgroupMounts lists the mount points of cgroup hierarchies.
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var mnts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2") && !slices.Contains(mnts, fields[1]) {
			mnts = append(mnts, fields[1])
		}
	}
	return mnts
}

// kubeletCgroups lists the top-level cgroups a kubelet or containerd
// would create outside a cgroupRoot (kubepods, kubepods.slice, k8s.io)
// and the test's own roots, in every hierarchy.
func kubeletCgroups() []string {
	var found []string
	for _, mnt := range cgroupMounts() {
		for _, pat := range []string{"kubepods*", "k8s.io*", "icr-e2e-node-*"} {
			m, _ := filepath.Glob(filepath.Join(mnt, pat))
			found = append(found, m...)
		}
	}
	return found
}

// processesInNamespace lists the processes in the test's network
// namespace: the holder, the daemons, the shims and the (hostNetwork)
// containers.
func (n *node) processesInNamespace() []int {
	if n.netns == "" {
		return nil
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	if n.netns == self {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); ns == n.netns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cleanup stops everything and removes what the test created, in order:
// the kubelet, containerd and the emulator (SIGTERM), every other process
// left in the namespace (shims, containers: SIGKILL), the mounts under the
// work directory and those the test made (unmounted inside the namespace,
// deepest first), the namespace holder, the cgroups, the work directory.
// Every step runs even if an earlier one failed; what is left is reported
// as an error.
func (n *node) cleanup() {
	t := n.t
	start := time.Now()
	var problems []string
	if keep := os.Getenv("ICR_E2E_NODE_LOGS"); keep != "" {
		// The logs hold no secret (the test checks that); copied before
		// anything is stopped, so a failed run can be looked into.
		if err := os.MkdirAll(keep, 0o755); err == nil {
			files, _ := filepath.Glob(n.path("logs", "*.log"))
			for _, f := range files {
				if b, err := os.ReadFile(f); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), []byte(redact(string(b))), 0o644)
				}
			}
			t.Logf("logs copied to %s", keep)
		}
	}
	for i := len(n.daemons) - 1; i >= 0; i-- {
		n.daemons[i].stop(15 * time.Second)
	}
	var killed []int
	if n.holder != nil && n.holder.Process != nil {
		holder := n.holder.Process.Pid
		for i := 0; i < 100; i++ {
			var others []int
			for _, p := range n.processesInNamespace() {
				if p != holder {
					others = append(others, p)
				}
			}
			if len(others) == 0 {
				break
			}
			for _, p := range others {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			killed = append(killed, others...)
			time.Sleep(50 * time.Millisecond)
		}
		select {
		case <-n.holderDone:
		default:
			if mps := n.mountsToUndo(holder); len(mps) > 0 {
				// A fresh context: n.ctx may be the one that was cancelled.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				args := append([]string{"-t", strconv.Itoa(holder), "-m", "--", "umount"}, mps...)
				// Not fatal: the namespace, and whatever is still mounted in
				// it, goes away with the holder below.
				if out, err := exec.CommandContext(ctx, "nsenter", args...).CombinedOutput(); err != nil {
					t.Logf("cleanup: umount inside the namespace: %v: %s", err, strings.TrimSpace(string(out)))
				}
				cancel()
			}
			_ = n.holder.Process.Kill()
			<-n.holderDone
		}
		if left := n.processesInNamespace(); len(left) > 0 {
			problems = append(problems, fmt.Sprintf("processes left in the namespace: %v", left))
		}
		// The shims were daemonized (their parent is init): wait until init
		// has reaped them and their containers, so that nothing, not even
		// a zombie, is left when the test ends.
		for i := 0; i < 100 && slices.ContainsFunc(killed, func(p int) bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); return err == nil }); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, mnt := range cgroupMounts() {
		root := filepath.Join(mnt, n.cgroup)
		for i := 0; i < 50; i++ {
			if err := removeCgroupTree(root); err == nil {
				break
			} else if i == 49 {
				problems = append(problems, err.Error())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, c := range kubeletCgroups() {
		if !slices.Contains(n.cgroupsBefore, c) {
			problems = append(problems, "cgroup left outside the test's cgroup root: "+c)
		}
	}
	if mps := hostMountsUnder(n.dir); len(mps) > 0 {
		problems = append(problems, fmt.Sprintf("mounts left under the work directory: %v", mps))
	} else if err := os.RemoveAll(n.dir); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) == 0 {
		_ = os.Remove(n.state)
		t.Logf("cleanup: processes, mounts, namespace, cgroups and %s removed in %v", n.dir, time.Since(start).Round(10*time.Millisecond))
		return
	}
	t.Errorf("e2e-node cleanup incomplete (run test/node/cleanup.sh %s): %s", n.state, strings.Join(problems, "; "))
}

// mountsToUndo lists, deepest first, the mount points inside the holder's
// mount namespace that the test's setup or its daemons made: everything
// under the work directory (the kubelet's bind mount of its root dir onto
// itself, containerd's) and the namespace's own mounts.
func (n *node) mountsToUndo(holder int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mounts", holder))
	if err != nil {
		return nil
	}
	ours := []string{"/run", "/var/lib", "/var/log", "/etc/hosts"}
	for k := range kernelDefaults {
		ours = append(ours, "/proc/sys/"+k)
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		mp := unescapeMount(f[1])
		if mp == n.dir || strings.HasPrefix(mp, n.dir+"/") || slices.Contains(ours, mp) || strings.HasPrefix(mp, "/run/") ||
			strings.HasPrefix(mp, "/var/lib/") || strings.HasPrefix(mp, "/var/log/") {
			mps = append(mps, mp)
		}
	}
	// Reverse mount order: a mount made later sits on top of, or under,
	// the earlier ones.
	slices.Reverse(mps)
	return mps
}

// unescapeMount undoes /proc/mounts' octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// hostMountsUnder lists the test process's mounts at or under dir (there
// should be none: the test's mounts live in its own namespace).
func hostMountsUnder(dir string) []string {
	b, _ := os.ReadFile("/proc/self/mounts")
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			if mp := unescapeMount(f[1]); mp == dir || strings.HasPrefix(mp, dir+"/") {
				mps = append(mps, mp)
			}
		}
	}
	return mps
}

// removeCgroupTree removes a cgroup directory and its children, deepest
// first (cgroup directories hold only pseudo-files: rmdir, not RemoveAll).
func removeCgroupTree(root string) error {
	if _, err := os.Stat(root); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	var firstErr error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) && firstErr == nil {
			firstErr = fmt.Errorf("cgroup %s: %v", d, err)
		}
	}
	return firstErr
}
