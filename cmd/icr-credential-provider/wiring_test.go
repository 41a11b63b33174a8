package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile/hostfiletest"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

// node is a fake host root with kubeadm's kubelet (Debian layout), a
// stand-in systemctl that logs its arguments, and a stand-in kubelet
// health endpoint that answers as the kubelet would: unhealthy whenever
// the text set with breakWith is in /etc/default/kubelet.
type node struct {
	t                 *testing.T
	root, bin, cfgDir string
	systemctl, log    string
	healthz           *httptest.Server
	brokenWith        atomic.Pointer[string] // read by the health endpoint's goroutines
}

const defaultKubelet = "# Options for the kubelet, kept by hand\nKUBELET_EXTRA_ARGS=--max-pods=150\n"

func newNode(t *testing.T) *node {
	t.Helper()
	n := &node{t: t, root: t.TempDir()}
	n.bin = filepath.Join(n.root, "opt/icr-credential-provider/bin")
	n.cfgDir = filepath.Join(n.root, "etc/kubernetes/icr-credential-provider")
	for p, c := range map[string]string{
		"/usr/lib/systemd/system/kubelet.service":                   "[Service]\nExecStart=/usr/bin/kubelet\n",
		"/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": "[Service]\nEnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS\n",
		"/etc/default/kubelet":                                      defaultKubelet,
	} {
		n.write(p, c)
	}
	for _, d := range []string{n.bin, n.cfgDir, filepath.Join(n.root, "etc/systemd/system")} {
		os.MkdirAll(d, 0o755)
	}
	tools := t.TempDir()
	n.log = filepath.Join(tools, "systemctl.log")
	n.systemctl = filepath.Join(tools, "systemctl")
	os.WriteFile(n.systemctl, []byte("#!/bin/sh\necho \"$@\" >> "+n.log+"\n"), 0o755)
	n.healthz = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := os.ReadFile(n.path("/etc/default/kubelet"))
		if s := n.brokenWith.Load(); s != nil && bytes.Contains(b, []byte(*s)) {
			http.Error(w, "[-]ping failed", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(n.healthz.Close)
	return n
}

// breakWith makes the kubelet unhealthy whenever /etc/default/kubelet
// contains s.
func (n *node) breakWith(s string) { n.brokenWith.Store(&s) }

func (n *node) path(p string) string { return filepath.Join(n.root, p) }

func (n *node) write(p, c string) {
	os.MkdirAll(filepath.Dir(n.path(p)), 0o755)
	if err := os.WriteFile(n.path(p), []byte(c), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) read(p string) string {
	b, _ := os.ReadFile(n.path(p))
	return string(b)
}

func (n *node) restarts() []string {
	b, _ := os.ReadFile(n.log)
	return strings.Fields(strings.ReplaceAll(string(b), "restart", ""))
}

// args are install's or uninstall's arguments on this node. A healthy
// kubelet answers its first probe, so the timeout is only a bound (a
// loaded machine must not fail the test); a test that waits for an
// unhealthy kubelet sets a short one with unhealthyTimeout.
func (n *node) args(cmd string, extra ...string) []string {
	return append([]string{cmd, "--host-root", n.root, "--bin-dir", n.bin, "--config", filepath.Join(n.cfgDir, "config.yaml"),
		"--systemctl", n.systemctl, "--kubelet-healthz", n.healthz.URL + "/healthz", "--kubelet-timeout", "30s"}, extra...)
}

// unhealthyTimeout is how long a test waits for a kubelet it made
// unhealthy (the flag given last wins).
var unhealthyTimeout = []string{"--kubelet-timeout", "2s"}

const wiredFlags = "--image-credential-provider-config=/etc/kubernetes/icr-credential-provider/config.yaml --image-credential-provider-bin-dir=/opt/icr-credential-provider/bin"

// The whole hands-off path on one node: install wires the kubelet and
// restarts it once; again changes nothing; uninstall puts the node back as
// it was, byte for byte; again finds nothing to do.
func TestInstallWiringLifecycle(t *testing.T) {
	n := newNode(t)
	r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--configure-kubelet=auto", "--profile-id", "Profile-1")})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{
		"binary " + filepath.Join(n.bin, "icr-credential-provider") + ": created",
		"kubelet wiring (kubeadm): /etc/default/kubelet: updated",
		"kubelet wiring (kubeadm): kubelet.service restarted, healthy",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("stdout does not say %q:\n%s", want, r.Stdout)
		}
	}
	if got, want := n.read("/etc/default/kubelet"), "# Options for the kubelet, kept by hand\nKUBELET_EXTRA_ARGS=--max-pods=150 "+wiredFlags+"\n"; got != want {
		t.Errorf("/etc/default/kubelet:\n%q\nwant\n%q", got, want)
	}
	if got := n.restarts(); strings.Join(got, " ") != "kubelet.service" {
		t.Errorf("restarts %v", got)
	}

	r = runPlugin(t, invocation{Process: true, Args: n.args("install", "--configure-kubelet=auto", "--profile-id", "Profile-1")})
	if r.Code != 0 || !strings.Contains(r.Stdout, "kubelet wiring (kubeadm): unchanged") || strings.Count(r.Stdout, ": unchanged") != 3 {
		t.Fatalf("second install: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if len(n.restarts()) != 1 {
		t.Errorf("the second install restarted the kubelet: %v", n.restarts())
	}

	r = runPlugin(t, invocation{Process: true, Args: n.args("uninstall")})
	if r.Code != 0 {
		t.Fatalf("uninstall: exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{"/etc/default/kubelet: restored", "kubelet.service restarted, healthy", "config " + filepath.Join(n.cfgDir, "config.yaml") + ": removed", "binary " + filepath.Join(n.bin, "icr-credential-provider") + ": removed"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("uninstall does not say %q:\n%s", want, r.Stdout)
		}
	}
	if n.read("/etc/default/kubelet") != defaultKubelet {
		t.Errorf("not restored: %q", n.read("/etc/default/kubelet"))
	}
	for _, p := range []string{installer.StatePath, "/var/lib/icr-credential-provider", "/opt/icr-credential-provider/bin/icr-credential-provider", "/etc/kubernetes/icr-credential-provider/config.yaml"} {
		if _, err := os.Lstat(n.path(p)); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if len(n.restarts()) != 2 {
		t.Errorf("restarts %v", n.restarts())
	}
	r = runPlugin(t, invocation{Process: true, Args: n.args("uninstall")})
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "nothing to do") || len(n.restarts()) != 2 {
		t.Fatalf("second uninstall: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// A kubelet that does not come back: one line, the host file back as it
// was, a second restart.
func TestInstallWiringRollback(t *testing.T) {
	n := newNode(t)
	n.breakWith("image-credential-provider")
	r := runPlugin(t, invocation{Process: true, Args: n.args("install", append([]string{"--configure-kubelet=kubeadm"}, unhealthyTimeout...)...)})
	if r.Code == 0 {
		t.Fatal("exit 0")
	}
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "rolled back and kubelet.service restarted, healthy again") || !strings.Contains(lines[0], "journalctl -u kubelet.service") {
		t.Errorf("stderr:\n%s", r.Stderr)
	}
	if n.read("/etc/default/kubelet") != defaultKubelet {
		t.Errorf("not rolled back: %q", n.read("/etc/default/kubelet"))
	}
	if _, err := os.Stat(n.path(installer.StatePath)); err == nil {
		t.Error("state file left")
	}
	if got := n.restarts(); len(got) != 2 {
		t.Errorf("restarts %v", got)
	}
}

// Bad input on the node: one line each, nothing on the node changed.
func TestInstallWiringBadInput(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *node) []string
		want  []string
	}{
		{"not a host root", func(n *node) []string {
			os.RemoveAll(n.path("/usr/lib/systemd"))
			os.RemoveAll(n.path("/etc/systemd"))
			return n.args("install", "--configure-kubelet=auto")
		}, []string{"has no systemd unit directory"}},
		{"bin dir outside the host root", func(n *node) []string {
			return append(n.args("install", "--configure-kubelet=auto"), "--bin-dir", t.TempDir())
		}, []string{"is not under --host-root"}},
		{"unknown layout", func(n *node) []string {
			os.RemoveAll(n.path("/usr/lib/systemd/system/kubelet.service.d"))
			return n.args("install", "--configure-kubelet=auto")
		}, []string{"no known kubelet layout", "10-kubeadm.conf"}},
		{"flags set elsewhere", func(n *node) []string {
			n.write("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS=--image-credential-provider-config=/etc/ecr.yaml\n")
			return n.args("install", "--configure-kubelet=auto")
		}, []string{"kubeadm-flags.env sets --image-credential-provider-config=/etc/ecr.yaml", "--force"}},
		{"kubelet never healthy", func(n *node) []string {
			n.breakWith("max-pods")
			return n.args("install", append([]string{"--configure-kubelet=auto"}, unhealthyTimeout...)...)
		}, []string{"not healthy before any change", "nothing was changed"}},
		{"bad layout name", func(n *node) []string { return n.args("install", "--configure-kubelet=microk8s") }, []string{"not one of auto, kubeadm, k3s, rke2, none"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			args := tc.setup(n)
			before := n.read("/etc/default/kubelet")
			r := runPlugin(t, invocation{Process: true, Args: args})
			assertFailure(t, r, tc.want...)
			if n.read("/etc/default/kubelet") != before || len(n.restarts()) != 0 {
				t.Error("the node changed")
			}
			if _, err := os.Lstat(filepath.Join(n.bin, "icr-credential-provider")); err == nil {
				t.Error("binary installed although install failed")
			}
		})
	}
}

// A host file the installer cannot write: one line, nothing changed. Root
// writes anything here, so as root the installer runs as nobody.
func TestInstallWiringReadOnlyHostFile(t *testing.T) {
	n := newNode(t)
	os.Chmod(n.path("/etc/default"), 0o555)
	args := n.args("install", "--configure-kubelet=auto")
	var r result
	if os.Geteuid() != 0 {
		r = runPlugin(t, invocation{Process: true, Args: args})
	} else {
		r = runAsNobody(t, n, args)
	}
	assertFailure(t, r, "cannot write to "+n.path("/etc/default"), "permission denied")
	if n.read("/etc/default/kubelet") != defaultKubelet || len(n.restarts()) != 0 {
		t.Error("the node changed")
	}
	if _, err := os.Lstat(filepath.Join(n.bin, "icr-credential-provider")); err == nil {
		t.Error("binary installed")
	}
}

// runAsNobody runs the plugin as uid 65534 on a node it can read, whose
// install directories it owns and can write (but not /etc/default, root's).
func runAsNobody(t *testing.T, n *node, args []string) result {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "icr-credential-provider")
	b, _ := os.ReadFile(pluginBin)
	os.WriteFile(bin, b, 0o755)
	for _, d := range []string{dir, filepath.Dir(dir), n.root, filepath.Dir(n.root), filepath.Dir(n.systemctl), filepath.Dir(filepath.Dir(n.systemctl))} {
		os.Chmod(d, 0o755)
	}
	filepath.WalkDir(n.root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != n.path("/etc/default") {
			os.Chown(p, 65534, 65534)
		}
		return nil
	})
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Skipf("cannot run as nobody: %v", err)
	}
	return r
}

// --api-key-from: the key from a mounted Secret ends up in a root-only
// file on the node, the config names the file, and the key is nowhere
// else; uninstall removes the file.
func TestInstallAPIKeyFrom(t *testing.T) {
	const key = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCd"
	n := newNode(t)
	secretDir := t.TempDir()
	os.Mkdir(filepath.Join(secretDir, "..2026_01_01"), 0o755)
	os.WriteFile(filepath.Join(secretDir, "..2026_01_01", "apikey"), []byte(key+"\n"), 0o644)
	os.Symlink("..2026_01_01", filepath.Join(secretDir, "..data"))
	os.Symlink("..data/apikey", filepath.Join(secretDir, "apikey"))

	r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--api-key-from", filepath.Join(secretDir, "apikey"), "--v=3")})
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	keyFile := filepath.Join(n.cfgDir, "apikey")
	if !strings.Contains(r.Stdout, "API key file "+keyFile+": created") {
		t.Errorf("stdout:\n%s", r.Stdout)
	}
	fi, err := os.Stat(keyFile)
	if err != nil || fi.Mode().Perm() != 0o600 || n.read("/etc/kubernetes/icr-credential-provider/apikey") != key+"\n" {
		t.Fatalf("key file: %v %v", fi, err)
	}
	cfg := n.read("/etc/kubernetes/icr-credential-provider/config.yaml")
	dec, err := installer.DecodeConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	env := dec.Providers[0].Env
	if len(env) != 1 || env[0].Name != "ICR_API_KEY_FILE" || env[0].Value != "/etc/kubernetes/icr-credential-provider/apikey" {
		t.Errorf("env %+v", env)
	}
	for what, s := range map[string]string{"config": cfg, "stdout": r.Stdout, "stderr": r.Stderr} {
		if strings.Contains(s, key) {
			t.Errorf("the key is in the %s", what)
		}
	}
	// Again: unchanged.
	r = runPlugin(t, invocation{Process: true, Args: n.args("install", "--api-key-from", filepath.Join(secretDir, "apikey"), "--v=3")})
	if r.Code != 0 || !strings.Contains(r.Stdout, "API key file "+keyFile+": unchanged") {
		t.Fatalf("again: %s%s", r.Stdout, r.Stderr)
	}
	r = runPlugin(t, invocation{Process: true, Args: n.args("uninstall")})
	if r.Code != 0 || !strings.Contains(r.Stdout, "API key file "+keyFile+": removed") {
		t.Fatalf("uninstall: %s%s", r.Stdout, r.Stderr)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Error("key file left")
	}
}

func TestInstallAPIKeyFromBadSecret(t *testing.T) {
	for name, content := range map[string]string{"empty": "", "not a key": "this is not-a-key at all", "JSON without a key": `{"name":"x"}`} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t)
			src := filepath.Join(t.TempDir(), "apikey")
			os.WriteFile(src, []byte(content), 0o600)
			r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--api-key-from", src)})
			assertFailure(t, r, "--api-key-from: API key file "+src)
			if content != "" && strings.Contains(r.Stderr, content) {
				t.Error("the file's content is in the error")
			}
			ents, _ := os.ReadDir(n.cfgDir)
			bins, _ := os.ReadDir(n.bin)
			if len(ents)+len(bins) != 0 {
				t.Errorf("files written: %v %v", ents, bins)
			}
		})
	}
	n := newNode(t)
	r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--api-key-from", "/x", "--api-key-file", "/y")})
	assertFailure(t, r, "--api-key-from and --api-key-file are both given")
}

// Uninstall removes only what install wrote; anything else stops it, with
// nothing removed, unless --force.
func TestUninstallRefusesForeignFiles(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *node, helper string)
		want  string
	}{
		{"a config written by someone else", func(n *node, _ string) {
			n.write("/etc/kubernetes/icr-credential-provider/config.yaml", "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n")
		}, "config " + "%root/etc/kubernetes/icr-credential-provider/config.yaml was not written by icr-credential-provider install"},
		{"a binary that is not ours", func(n *node, _ string) {
			n.write("/opt/icr-credential-provider/bin/icr-credential-provider", "#!/bin/sh\necho someone else's\n")
		}, "is not a build of icr-credential-provider"},
		{"a link elsewhere", func(n *node, helper string) {
			os.Symlink("/usr/bin/docker-credential-other", filepath.Join(helper, "docker-credential-icr"))
		}, "points at /usr/bin/docker-credential-other, not at the installed binary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t)
			helper := t.TempDir()
			if r := runPlugin(t, invocation{Process: true, Args: n.args("install", "--configure-kubelet=auto")}); r.Code != 0 {
				t.Fatal(r.Stderr)
			}
			tc.setup(n, helper)
			wired := n.read("/etc/default/kubelet")
			r := runPlugin(t, invocation{Process: true, Args: n.args("uninstall", "--credential-helper", helper)})
			assertFailure(t, r, strings.ReplaceAll(tc.want, "%root", n.root), "--force")
			if n.read("/etc/default/kubelet") != wired || len(n.restarts()) != 1 {
				t.Error("uninstall changed the node although it refused")
			}
			r = runPlugin(t, invocation{Process: true, Args: n.args("uninstall", "--credential-helper", helper, "--force")})
			if r.Code != 0 {
				t.Fatalf("--force: %s", r.Stderr)
			}
			if n.read("/etc/default/kubelet") != defaultKubelet {
				t.Error("not restored")
			}
			for _, p := range []string{filepath.Join(n.bin, "icr-credential-provider"), filepath.Join(n.cfgDir, "config.yaml"), filepath.Join(helper, "docker-credential-icr")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s left with --force", p)
				}
			}
		})
	}
}

// A kubelet told to use the config by something install did not write
// keeps its files: without the binary it would not start again.
func TestUninstallKubeletStillUsesTheConfig(t *testing.T) {
	n := newNode(t)
	if r := runPlugin(t, invocation{Process: true, Args: n.args("install")}); r.Code != 0 {
		t.Fatal(r.Stderr)
	}
	exe, err := hostfiletest.Executable(n.path("/usr/bin/kubelet"))
	if err != nil {
		t.Fatal(err)
	}
	if err := hostfiletest.Process(n.path("/proc"), 812, 0, exe, "/usr/bin/kubelet", "--image-credential-provider-config=/etc/kubernetes/icr-credential-provider/config.yaml"); err != nil {
		t.Fatal(err)
	}
	r := runPlugin(t, invocation{Process: true, Args: n.args("uninstall")})
	assertFailure(t, r, "the running kubelet has --image-credential-provider-config=/etc/kubernetes/icr-credential-provider/config.yaml", "set by something other than 'install --configure-kubelet'")
	if _, err := os.Stat(filepath.Join(n.bin, "icr-credential-provider")); err != nil {
		t.Error("binary removed")
	}
}

func TestInstallPrintMachineConfig(t *testing.T) {
	r := runPlugin(t, invocation{Args: []string{"install", "--print-machineconfig", "--machineconfig-pool", "master",
		"--bin-dir", "/var/lib/icr-credential-provider/bin", "--config", "/etc/kubernetes/icr-credential-provider/config.yaml"}})
	if r.Code != 0 || r.Stderr != "" {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{"kind: MachineConfig", "name: 99-master-icr-credential-provider", "machineconfiguration.openshift.io/role: master", "path: /usr/local/bin/kubenswrapper",
		"--image-credential-provider-bin-dir=/var/lib/icr-credential-provider/bin"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("no %q in\n%s", want, r.Stdout)
		}
	}
}

func TestInstallAndUninstallHelp(t *testing.T) {
	for cmd, wants := range map[string][]string{
		"install":   {"--configure-kubelet", "--host-root", "--api-key-from", "--print-machineconfig", "--systemctl", "--kubelet-healthz", "--kubelet-timeout", installer.StatePath},
		"uninstall": {"--bin-dir", "--credential-helper", "--force", "--host-root", installer.StatePath},
	} {
		r := runPlugin(t, invocation{Args: []string{cmd, "--help"}})
		if r.Code != 0 {
			t.Fatal(r.Stderr)
		}
		for _, w := range wants {
			if !strings.Contains(r.Stdout, w) {
				t.Errorf("%s --help does not mention %s", cmd, w)
			}
		}
	}
}
