package installer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile/hostfiletest"
)

// Paths the tests wire, as the host sees them.
const (
	testConfig = "/etc/kubernetes/icr-credential-provider/config.yaml"
	testBinDir = "/opt/icr-credential-provider/bin"
)

// Units and files of each distribution's kubelet, as their packages lay
// them out.
const (
	kubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent

[Service]
ExecStart=/usr/bin/kubelet
Restart=always

[Install]
WantedBy=multi-user.target
`
	kubeadmDropinDeb = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
# This is a file that the user can use for overrides of the kubelet args as a last resort.
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`
	kubeadmFlags = `KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock --pod-infra-container-image=registry.k8s.io/pause:3.10"
`
	k3sUnit = `[Unit]
Description=Lightweight Kubernetes

[Service]
Type=notify
ExecStart=/usr/local/bin/k3s agent
`
	rke2Unit = `[Service]
Type=notify
ExecStart=/usr/local/bin/rke2 %s
`
)

// fakeHost is a host's root file system in a temporary directory.
type fakeHost struct {
	t    *testing.T
	root string
}

func newFakeHost(t *testing.T, files map[string]string) fakeHost {
	t.Helper()
	h := fakeHost{t, t.TempDir()}
	for _, d := range []string{"/etc/systemd/system", "/var/lib"} {
		h.mkdir(d)
	}
	for p, content := range files {
		h.write(p, content)
	}
	return h
}

func (h fakeHost) path(p string) string { return filepath.Join(h.root, p) }

func (h fakeHost) mkdir(p string) {
	h.t.Helper()
	if err := os.MkdirAll(h.path(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h fakeHost) write(p, content string) {
	h.t.Helper()
	h.mkdir(filepath.Dir(p))
	if err := os.WriteFile(h.path(p), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// snapshot is every file under the root (path → content); directories
// end with "/".
func (h fakeHost) snapshot() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	filepath.WalkDir(h.root, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == h.root {
			return err
		}
		rel := "/" + strings.TrimPrefix(p, h.root+"/")
		switch {
		case d.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "-> " + target
		case d.IsDir():
			out[rel+"/"] = ""
		default:
			b, _ := os.ReadFile(p)
			fi, _ := d.Info()
			out[rel] = fi.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	return out
}

func (h fakeHost) assertSnapshot(want map[string]string) {
	h.t.Helper()
	got := h.snapshot()
	for p, w := range want {
		if g, ok := got[p]; !ok {
			h.t.Errorf("%s is missing", p)
		} else if g != w {
			h.t.Errorf("%s differs:\n got %q\nwant %q", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			h.t.Errorf("%s is new", p)
		}
	}
}

func (h fakeHost) read(p string) string {
	h.t.Helper()
	b, err := os.ReadFile(h.path(p))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

// fakeSystemd records restarts; onRestart runs at each.
type fakeSystemd struct {
	mu        sync.Mutex
	restarts  []string
	err       error
	errOnce   bool // err only for the first restart
	onRestart func()
}

func (s *fakeSystemd) Restart(_ context.Context, unit string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		err := s.err
		if s.errOnce {
			s.err = nil
		}
		return err
	}
	s.restarts = append(s.restarts, unit)
	if s.onRestart != nil {
		s.onRestart()
	}
	return nil
}

func (s *fakeSystemd) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.restarts) }

// fakeKubelet is the kubelet's health endpoint; healthy decides each answer.
type fakeKubelet struct {
	*httptest.Server
	healthy func() bool
	probes  atomic.Int32
}

func newFakeKubelet(t *testing.T, healthy func() bool) *fakeKubelet {
	k := &fakeKubelet{healthy: healthy}
	k.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.probes.Add(1)
		if r.URL.Path != "/healthz" || !k.healthy() {
			http.Error(w, "[-]syncloop failed", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(k.Close)
	return k
}

func always(v bool) func() bool { return func() bool { return v } }

func (h fakeHost) wiring(layout Layout, sd Systemd, k *fakeKubelet) Wiring {
	return Wiring{
		Host: Host{Root: h.root}, Layout: layout, Config: testConfig, BinDir: testBinDir,
		ProcDir: "-", Systemd: sd,
		Health: Health{URL: k.URL + "/healthz", Timeout: 300 * time.Millisecond, Interval: 5 * time.Millisecond},
	}
}

func install(t *testing.T, w Wiring) (WiringResult, error) {
	t.Helper()
	p, err := PlanInstall(w)
	if err != nil {
		return WiringResult{}, err
	}
	return p.Apply(context.Background())
}

func uninstall(t *testing.T, w Wiring) (WiringResult, error) {
	t.Helper()
	p, err := PlanUninstall(w)
	if err != nil {
		return WiringResult{}, err
	}
	return p.Apply(context.Background())
}

const flagsWords = "--image-credential-provider-config=" + testConfig + " --image-credential-provider-bin-dir=" + testBinDir

const rancherWant = Marker + `; changes here are lost at the next install.
# The kubelet's image credential provider, as %s options; 'icr-credential-provider uninstall' removes this file.
image-credential-provider-bin-dir: ` + testBinDir + `
image-credential-provider-config: ` + testConfig + `
`

// layouts are fake hosts of each supported distribution, with the host
// file the wiring writes and its expected content.
var layouts = []struct {
	name   string
	layout Layout
	files  map[string]string
	unit   string
	path   string // the host file written
	want   string
}{
	{
		name: "kubeadm, Debian /etc/default/kubelet", layout: LayoutKubeadm,
		files: map[string]string{
			"/usr/lib/systemd/system/kubelet.service":                   kubeletUnit,
			"/usr/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": kubeadmDropinDeb,
			"/var/lib/kubelet/kubeadm-flags.env":                        kubeadmFlags,
			"/etc/default/kubelet":                                      "# managed by hand\nKUBELET_EXTRA_ARGS=\"--max-pods=150\"   \n",
		},
		unit: "kubelet.service", path: "/etc/default/kubelet",
		want: "# managed by hand\nKUBELET_EXTRA_ARGS=\"--max-pods=150 " + flagsWords + "\"   \n",
	},
	{
		name: "kubeadm, RHEL /etc/sysconfig/kubelet", layout: LayoutKubeadm,
		files: map[string]string{
			"/usr/lib/systemd/system/kubelet.service":                   kubeletUnit,
			"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf":     strings.ReplaceAll(kubeadmDropinDeb, "/etc/default/kubelet", "/etc/sysconfig/kubelet"),
			"/var/lib/kubelet/kubeadm-flags.env":                        kubeadmFlags,
			"/etc/sysconfig/kubelet":                                    "KUBELET_EXTRA_ARGS=",
			"/usr/lib/systemd/system/kubelet.service.d/05-other.conf":   "[Service]\nEnvironment=HOME=/root\n",
			"/etc/systemd/system/multi-user.target.wants/.placeholder":  "",
			"/etc/systemd/system/kubelet.service.d/20-cpu-manager.conf": "[Service]\nCPUAffinity=0-3\n",
		},
		unit: "kubelet.service", path: "/etc/sysconfig/kubelet",
		want: "KUBELET_EXTRA_ARGS=" + flagsWords,
	},
	{
		name: "kubeadm without the environment file", layout: LayoutAuto,
		files: map[string]string{
			"/lib/systemd/system/kubelet.service":                   kubeletUnit,
			"/lib/systemd/system/kubelet.service.d/10-kubeadm.conf": kubeadmDropinDeb,
		},
		unit: "kubelet.service", path: "/etc/default/kubelet",
		want: "KUBELET_EXTRA_ARGS=" + flagsWords + "\n",
	},
	{
		name: "k3s agent", layout: LayoutAuto,
		files: map[string]string{
			"/etc/systemd/system/k3s-agent.service": k3sUnit,
			"/etc/rancher/k3s/config.yaml":          "server: https://10.0.0.1:6443\nkubelet-arg:\n  - max-pods=150\n",
		},
		unit: "k3s-agent.service", path: "/etc/rancher/k3s/config.yaml.d/90-icr-credential-provider.yaml",
		want: strings.Replace(rancherWant, "%s", "k3s", 1),
	},
	{
		name: "k3s server with drop-ins", layout: LayoutK3s,
		files: map[string]string{
			"/etc/systemd/system/k3s.service":               k3sUnit,
			"/etc/rancher/k3s/config.yaml.d/10-node.yaml":   "node-label:\n  - pool=a\n",
			"/etc/rancher/k3s/config.yaml.d/99-extra.yml":   "kubelet-arg+:\n  - v=2\n",
			"/etc/rancher/k3s/config.yaml.d/README.txt":     "not read\n",
			"/var/lib/rancher/credentialprovider/README.md": "no default config here\n",
		},
		unit: "k3s.service", path: "/etc/rancher/k3s/config.yaml.d/90-icr-credential-provider.yaml",
		want: strings.Replace(rancherWant, "%s", "k3s", 1),
	},
	{
		name: "RKE2 agent (server unit installed too, agent enabled)", layout: LayoutAuto,
		files: map[string]string{
			"/usr/local/lib/systemd/system/rke2-server.service": strings.Replace(rke2Unit, "%s", "server", 1),
			"/usr/local/lib/systemd/system/rke2-agent.service":  strings.Replace(rke2Unit, "%s", "agent", 1),
			"/etc/rancher/rke2/config.yaml":                     "server: https://10.0.0.1:9345\n",
		},
		unit: "rke2-agent.service", path: "/etc/rancher/rke2/config.yaml.d/90-icr-credential-provider.yaml",
		want: strings.Replace(rancherWant, "%s", "rke2", 1),
	},
}

// setupLayout makes the fake host of layout i; RKE2's agent is enabled
// through an absolute link, as systemctl enable makes it.
func setupLayout(t *testing.T, i int) fakeHost {
	h := newFakeHost(t, layouts[i].files)
	if layouts[i].unit == "rke2-agent.service" {
		h.mkdir("/etc/systemd/system/multi-user.target.wants")
		os.Symlink("/usr/local/lib/systemd/system/rke2-agent.service", h.path("/etc/systemd/system/multi-user.target.wants/rke2-agent.service"))
	}
	return h
}

// The lifecycle on every layout: install wires and restarts once; again,
// nothing is rewritten or restarted; uninstall puts every byte back and
// restarts once; again, nothing to do.
func TestWiringLifecycle(t *testing.T) {
	for i, tc := range layouts {
		t.Run(tc.name, func(t *testing.T) {
			h := setupLayout(t, i)
			before := h.snapshot()
			sd := &fakeSystemd{}
			k := newFakeKubelet(t, always(true))
			w := h.wiring(tc.layout, sd, k)

			res, err := install(t, w)
			if err != nil {
				t.Fatal(err)
			}
			if got := h.read(tc.path); got != tc.want {
				t.Errorf("%s:\n%s\nwant:\n%s", tc.path, got, tc.want)
			}
			if sd.count() != 1 || sd.restarts[0] != tc.unit || !res.Restarted || res.Unit != tc.unit {
				t.Errorf("restarts %v, result %+v", sd.restarts, res)
			}
			if len(res.Files) != 1 || res.Files[0].Path != tc.path {
				t.Errorf("files %+v", res.Files)
			}
			fi, err := os.Stat(h.path(StatePath))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("state file: %v %v", fi, err)
			}
			var st wiringState
			json.Unmarshal([]byte(h.read(StatePath)), &st)
			if st.RestartPending || st.Unit != tc.unit || len(st.Files) != 1 {
				t.Errorf("state %+v", st)
			}

			// Again: nothing rewritten, no restart.
			wired := h.snapshot()
			mtime := modTime(t, h.path(tc.path))
			time.Sleep(10 * time.Millisecond)
			res, err = install(t, w)
			if err != nil || res.Restarted || len(res.Files) != 0 || sd.count() != 1 {
				t.Fatalf("second install: %+v %v (restarts %v)", res, err, sd.restarts)
			}
			if !modTime(t, h.path(tc.path)).Equal(mtime) {
				t.Error("an unchanged host file was rewritten")
			}
			h.assertSnapshot(wired)

			res, err = uninstall(t, w)
			if err != nil {
				t.Fatal(err)
			}
			if sd.count() != 2 || !res.Restarted {
				t.Errorf("uninstall: restarts %v, %+v", sd.restarts, res)
			}
			// Byte for byte (and mode for mode) as before install; the state
			// and the directories the wiring made are gone.
			h.assertSnapshot(before)

			res, err = uninstall(t, w)
			if err != nil || res.Restarted || sd.count() != 2 {
				t.Fatalf("second uninstall: %+v %v", res, err)
			}
		})
	}
}

func modTime(t *testing.T, p string) time.Time {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.ModTime()
}

// A kubelet that does not come back healthy with the flags: the host files
// go back byte for byte, the unit is restarted a second time, and the
// error is one line that says so.
func TestWiringRollback(t *testing.T) {
	for i, tc := range layouts {
		t.Run(tc.name, func(t *testing.T) {
			h := setupLayout(t, i)
			before := h.snapshot()
			sd := &fakeSystemd{}
			// The kubelet refuses to start whenever the flags are in its file.
			k := newFakeKubelet(t, func() bool {
				b, _ := os.ReadFile(h.path(tc.path))
				return !bytes.Contains(b, []byte(testConfig))
			})
			_, err := install(t, h.wiring(tc.layout, sd, k))
			var ie *Error
			if !errors.As(err, &ie) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %#v", err)
			}
			for _, want := range []string{"rolled back", tc.unit + " restarted, healthy again", "journalctl -u " + tc.unit, "not healthy within 300ms"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q: %v", want, err)
				}
			}
			if sd.count() != 2 {
				t.Errorf("restarts %v, want two", sd.restarts)
			}
			h.assertSnapshot(before)
		})
	}
}

// Uninstall that leaves the kubelet unhealthy puts the wiring back.
func TestUnwiringRollback(t *testing.T) {
	h := setupLayout(t, 0)
	sd := &fakeSystemd{}
	healthy := atomic.Bool{}
	healthy.Store(true)
	k := newFakeKubelet(t, healthy.Load)
	w := h.wiring(LayoutKubeadm, sd, k)
	if _, err := install(t, w); err != nil {
		t.Fatal(err)
	}
	wired := h.snapshot()
	// Unhealthy after the next restart, healthy after the one after.
	sd.onRestart = func() { healthy.Store(!healthy.Load()) }
	_, err := uninstall(t, w)
	if err == nil || !strings.Contains(err.Error(), "the wiring was put back and kubelet.service restarted, healthy again") || !strings.Contains(err.Error(), "run uninstall again") {
		t.Fatalf("err = %v", err)
	}
	h.assertSnapshot(wired)
}

func TestWiringKubeletUnhealthyBefore(t *testing.T) {
	h := setupLayout(t, 0)
	before := h.snapshot()
	sd := &fakeSystemd{}
	_, err := install(t, h.wiring(LayoutKubeadm, sd, newFakeKubelet(t, always(false))))
	if err == nil || !strings.Contains(err.Error(), "not healthy before any change") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	if sd.count() != 0 {
		t.Error("restarted")
	}
	h.assertSnapshot(before)
}

// A restart command that fails: the files go back, and the unit is
// restarted again in case the failed command restarted it all the same.
func TestWiringRestartFails(t *testing.T) {
	for _, once := range []bool{false, true} {
		h := setupLayout(t, 3)
		before := h.snapshot()
		sd := &fakeSystemd{err: errors.New("exit status 1: Job for k3s-agent.service failed"), errOnce: once}
		_, err := install(t, h.wiring(LayoutAuto, sd, newFakeKubelet(t, always(true))))
		want := "but restarting k3s-agent.service again failed"
		if once {
			want = "the wiring was rolled back and k3s-agent.service restarted, healthy again"
		}
		if err == nil || !strings.Contains(err.Error(), "restarting k3s-agent.service failed (exit status 1: Job for k3s-agent.service failed)") ||
			!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "check --systemctl") {
			t.Fatalf("err = %v", err)
		}
		h.assertSnapshot(before)
	}
}

// A run interrupted between its write and the restart restarts next time.
func TestWiringPendingRestart(t *testing.T) {
	h := setupLayout(t, 0)
	sd := &fakeSystemd{}
	w := h.wiring(LayoutKubeadm, sd, newFakeKubelet(t, always(true)))
	if _, err := install(t, w); err != nil {
		t.Fatal(err)
	}
	h.write(StatePath, strings.Replace(h.read(StatePath), `"binDir"`, `"restartPending": true, "binDir"`, 1))
	res, err := install(t, w)
	if err != nil || !res.Restarted || sd.count() != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	if strings.Contains(h.read(StatePath), "restartPending") {
		t.Error("the pending restart was not cleared")
	}
}

// New paths rewire from the file's content before install, not on top of
// the old flags; uninstall still restores the original.
func TestWiringNewPaths(t *testing.T) {
	h := setupLayout(t, 0)
	before := h.snapshot()
	sd := &fakeSystemd{}
	k := newFakeKubelet(t, always(true))
	w := h.wiring(LayoutKubeadm, sd, k)
	if _, err := install(t, w); err != nil {
		t.Fatal(err)
	}
	w.BinDir = "/var/lib/icr-credential-provider/bin"
	if _, err := install(t, w); err != nil {
		t.Fatal(err)
	}
	want := "# managed by hand\nKUBELET_EXTRA_ARGS=\"--max-pods=150 --image-credential-provider-config=" + testConfig + " --image-credential-provider-bin-dir=/var/lib/icr-credential-provider/bin\"   \n"
	if got := h.read("/etc/default/kubelet"); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if _, err := uninstall(t, w); err != nil {
		t.Fatal(err)
	}
	h.assertSnapshot(before)
}

// Wired by hand (no state): nothing to do, and uninstall leaves it alone.
func TestWiringByHand(t *testing.T) {
	h := setupLayout(t, 0)
	h.write("/etc/default/kubelet", "KUBELET_EXTRA_ARGS="+flagsWords+"\n")
	before := h.snapshot()
	sd := &fakeSystemd{}
	w := h.wiring(LayoutKubeadm, sd, newFakeKubelet(t, always(true)))
	for _, f := range []func(*testing.T, Wiring) (WiringResult, error){install, uninstall} {
		if res, err := f(t, w); err != nil || res.Restarted {
			t.Fatalf("%+v %v", res, err)
		}
	}
	h.assertSnapshot(before)
}

// A host file edited after install is not silently put back.
func TestUnwiringEditedFile(t *testing.T) {
	h := setupLayout(t, 0)
	sd := &fakeSystemd{}
	w := h.wiring(LayoutKubeadm, sd, newFakeKubelet(t, always(true)))
	if _, err := install(t, w); err != nil {
		t.Fatal(err)
	}
	h.write("/etc/default/kubelet", h.read("/etc/default/kubelet")+"OTHER=1\n")
	edited := h.snapshot()
	_, err := uninstall(t, w)
	if err == nil || !strings.Contains(err.Error(), "/etc/default/kubelet was changed since install wired it") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("err = %v", err)
	}
	h.assertSnapshot(edited)
	w.Force = true
	if _, err := uninstall(t, w); err != nil {
		t.Fatal(err)
	}
	if got := h.read("/etc/default/kubelet"); got != layouts[0].files["/etc/default/kubelet"] {
		t.Errorf("--force did not put back the original: %q", got)
	}
}

// Flags set elsewhere to other paths are reported, and overridden only
// with --force; settings that would win over the wiring are refused even
// with --force. Nothing changes on a refusal.
func TestWiringConflicts(t *testing.T) {
	tests := []struct {
		name   string
		layout int
		setup  func(h fakeHost)
		proc   []string // a running process's argv
		want   []string
		force  bool // still refused with --force
	}{
		{name: "kubeadm-flags.env", layout: 0, setup: func(h fakeHost) {
			h.write("/var/lib/kubelet/kubeadm-flags.env", "KUBELET_KUBEADM_ARGS=\"--image-credential-provider-config=/etc/ecr/config.yaml --image-credential-provider-bin-dir=/usr/libexec/ecr\"\n")
		}, want: []string{"/var/lib/kubelet/kubeadm-flags.env sets --image-credential-provider-config=/etc/ecr/config.yaml in KUBELET_KUBEADM_ARGS", "(and 1 more)", "--force"}},
		{name: "KUBELET_EXTRA_ARGS itself", layout: 0, setup: func(h fakeHost) {
			h.write("/etc/default/kubelet", "KUBELET_EXTRA_ARGS=--image-credential-provider-config /etc/other.yaml\n")
		}, want: []string{"/etc/default/kubelet sets --image-credential-provider-config=/etc/other.yaml in KUBELET_EXTRA_ARGS"}},
		{name: "another drop-in's Environment", layout: 1, setup: func(h fakeHost) {
			h.write("/etc/systemd/system/kubelet.service.d/30-ecr.conf", "[Service]\nEnvironment=\"KUBELET_ECR=--image-credential-provider-bin-dir=/opt/ecr\"\n")
		}, want: []string{"/etc/systemd/system/kubelet.service.d/30-ecr.conf sets --image-credential-provider-bin-dir=/opt/ecr in KUBELET_ECR"}},
		{name: "the running kubelet", layout: 0, proc: []string{"/usr/bin/kubelet", "--config=/var/lib/kubelet/config.yaml", "--image-credential-provider-config", "/etc/gcr.yaml"},
			want: []string{"the running kubelet has --image-credential-provider-config=/etc/gcr.yaml"}},
		{name: "k3s config.yaml", layout: 3, setup: func(h fakeHost) {
			h.write("/etc/rancher/k3s/config.yaml", "image-credential-provider-config: /etc/rancher/ecr.yaml\n")
		}, want: []string{"/etc/rancher/k3s/config.yaml sets image-credential-provider-config: /etc/rancher/ecr.yaml"}},
		{name: "k3s default provider in use", layout: 3, setup: func(h fakeHost) {
			h.mkdir("/var/lib/rancher/credentialprovider/bin")
			h.write("/var/lib/rancher/credentialprovider/config.yaml", "kind: CredentialProviderConfig\n")
		}, want: []string{"k3s passes its default /var/lib/rancher/credentialprovider/config.yaml"}},
		{name: "k3s later drop-in", layout: 3, force: true, setup: func(h fakeHost) {
			h.write("/etc/rancher/k3s/config.yaml.d/95-ecr.yaml", "image-credential-provider-bin-dir: /opt/ecr\n")
		}, want: []string{"95-ecr.yaml sets image-credential-provider-bin-dir: /opt/ecr after", "remove it"}},
		{name: "k3s kubelet-arg", layout: 3, force: true, setup: func(h fakeHost) {
			h.write("/etc/rancher/k3s/config.yaml", "kubelet-arg:\n  - image-credential-provider-config=/etc/x.yaml\n")
		}, want: []string{"sets kubelet-arg image-credential-provider-config=/etc/x.yaml, which wins over k3s's own option"}},
		{name: "k3s command line", layout: 3, force: true, proc: []string{"/usr/local/bin/k3s", "agent", "--kubelet-arg=image-credential-provider-bin-dir=/opt/x"},
			want: []string{"the running k3s has image-credential-provider-bin-dir=/opt/x on its command line"}},
		{name: "ExecStart after $KUBELET_EXTRA_ARGS", layout: 0, force: true, setup: func(h fakeHost) {
			h.write("/etc/systemd/system/kubelet.service.d/90-override.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS \\\n  --image-credential-provider-config=/etc/z.yaml\n")
		}, want: []string{"90-override.conf) sets --image-credential-provider-config=/etc/z.yaml after $KUBELET_EXTRA_ARGS"}},
		{name: "ExecStart before $KUBELET_EXTRA_ARGS", layout: 0, setup: func(h fakeHost) {
			h.write("/etc/systemd/system/kubelet.service.d/90-override.conf", "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet --image-credential-provider-config=/etc/y.yaml $KUBELET_EXTRA_ARGS\n")
		}, want: []string{"90-override.conf) sets --image-credential-provider-config=/etc/y.yaml: give --force"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := setupLayout(t, tc.layout)
			if tc.setup != nil {
				tc.setup(h)
			}
			w := h.wiring(LayoutAuto, &fakeSystemd{}, newFakeKubelet(t, always(true)))
			if tc.proc != nil {
				w.ProcDir = fakeProc(t, tc.proc)
			}
			before := h.snapshot()
			_, err := install(t, w)
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			h.assertSnapshot(before)

			w.Force = true
			res, err := install(t, w)
			if tc.force {
				if err == nil {
					t.Fatal("--force overrode a setting that wins over the wiring")
				}
				h.assertSnapshot(before)
				return
			}
			if err != nil || !res.Restarted || len(res.Notes) == 0 || !strings.Contains(res.Notes[0], "overridden (--force)") {
				t.Fatalf("--force: %+v %v", res, err)
			}
		})
	}
}

// fakeProc is a /proc with one process.
func fakeProc(t *testing.T, argv []string) string {
	dir := t.TempDir()
	exe, err := hostfiletest.Executable(filepath.Join(t.TempDir(), filepath.Base(argv[0])))
	if err != nil {
		t.Fatal(err)
	}
	if err := hostfiletest.Process(dir, 4242, 0, exe, argv...); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "self"), 0o755)
	return dir
}

// Hosts the wiring does not know: one line naming what it looked for, and
// nothing changed.
func TestWiringUnknownHosts(t *testing.T) {
	tests := []struct {
		name   string
		layout Layout
		files  map[string]string
		root   func(h fakeHost) string
		want   []string
	}{
		{name: "nothing known", layout: LayoutAuto, files: map[string]string{"/usr/lib/systemd/system/containerd.service": "[Service]\n"},
			want: []string{"no known kubelet layout", "10-kubeadm.conf", "/etc/rancher/k3s", "rke2-server", "--configure-kubelet=none"}},
		{name: "kubeadm asked, k3s found", layout: LayoutKubeadm, files: layouts[3].files,
			want: []string{"no kubeadm kubelet drop-in (10-kubeadm.conf)"}},
		{name: "k3s asked, nothing found", layout: LayoutK3s, files: map[string]string{"/etc/hostname": "n1\n"},
			want: []string{"/etc/rancher/k3s does not exist"}},
		{name: "rke2 without a unit", layout: LayoutRKE2, files: map[string]string{"/etc/rancher/rke2/config.yaml": ""},
			want: []string{"no rke2-server.service or rke2-agent.service unit"}},
		{name: "both RKE2 units, neither enabled", layout: LayoutRKE2, files: map[string]string{
			"/etc/rancher/rke2/config.yaml":               "",
			"/usr/lib/systemd/system/rke2-server.service": "",
			"/usr/lib/systemd/system/rke2-agent.service":  "",
		}, want: []string{"both rke2-server.service and rke2-agent.service are installed and neither is enabled"}},
		{name: "two layouts", layout: LayoutAuto, files: mergeFiles(layouts[0].files, layouts[3].files),
			want: []string{"more than one kubelet layout", "kubeadm, k3s"}},
		{name: "OpenShift", layout: LayoutAuto, files: map[string]string{
			"/etc/systemd/system/kubelet.service": "[Service]\nExecStart=/usr/local/bin/kubenswrapper /usr/bin/kubelet --config=/etc/kubernetes/kubelet.conf\n",
		}, want: []string{"OpenShift", "--print-machineconfig", "oc apply"}},
		{name: "braced variable", layout: LayoutKubeadm, files: map[string]string{
			"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": "[Service]\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/bin/kubelet ${KUBELET_EXTRA_ARGS}\n",
		}, want: []string{"expands ${KUBELET_EXTRA_ARGS} as one word"}},
		{name: "no KUBELET_EXTRA_ARGS", layout: LayoutKubeadm, files: map[string]string{
			"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": "[Service]\nEnvironmentFile=-/etc/default/kubelet\nExecStart=\nExecStart=/usr/bin/kubelet --config=/var/lib/kubelet/config.yaml\n",
		}, want: []string{"does not expand $KUBELET_EXTRA_ARGS"}},
		{name: "no environment file", layout: LayoutKubeadm, files: map[string]string{
			"/etc/systemd/system/kubelet.service.d/10-kubeadm.conf": "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_EXTRA_ARGS\n",
		}, want: []string{"reads no EnvironmentFile=/etc/default/kubelet or /etc/sysconfig/kubelet"}},
		{name: "export", layout: LayoutKubeadm, files: mergeFiles(layouts[0].files, map[string]string{"/etc/default/kubelet": "export KUBELET_EXTRA_ARGS=--v=2\n"}),
			want: []string{"assigned with 'export'", "by hand"}},
		{name: "host file is a link", layout: LayoutKubeadm, files: layouts[0].files, root: func(h fakeHost) string {
			os.Remove(h.path("/etc/default/kubelet"))
			os.Symlink("/etc/kubelet.env", h.path("/etc/default/kubelet"))
			return h.root
		}, want: []string{"/etc/default/kubelet on the host is a symbolic link"}},
		{name: "not a host root: no etc", layout: LayoutAuto, root: func(h fakeHost) string { return h.path("/var/lib") },
			want: []string{"is not a host's root file system (no etc/)", "hostPath"}},
		{name: "not a host root: no systemd", layout: LayoutAuto, root: func(h fakeHost) string {
			os.RemoveAll(h.path("/etc/systemd"))
			return h.root
		}, want: []string{"has no systemd unit directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newFakeHost(t, tc.files)
			w := h.wiring(tc.layout, &fakeSystemd{}, newFakeKubelet(t, always(true)))
			if tc.root != nil {
				w.Host.Root = tc.root(h)
			}
			before := h.snapshot()
			_, err := install(t, w)
			var ie *Error
			if !errors.As(err, &ie) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %#v", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not say %q:\n%v", want, err)
				}
			}
			h.assertSnapshot(before)
		})
	}
}

func mergeFiles(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestWiringPathsMustNeedNoQuoting(t *testing.T) {
	h := setupLayout(t, 0)
	w := h.wiring(LayoutKubeadm, &fakeSystemd{}, newFakeKubelet(t, always(true)))
	for _, bad := range []string{"relative/config.yaml", "/etc/my config.yaml", "/etc/$HOME/c.yaml", `/etc/"c".yaml`, "/etc/c%n.yaml"} {
		w.Config = bad
		if _, err := PlanInstall(w); err == nil || !strings.Contains(err.Error(), "--config") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// Uninstall of a kubelet that is failing anyway goes on: the flags may be
// why it fails, and there is no healthy state to go back to.
func TestUnwiringUnhealthyKubelet(t *testing.T) {
	for _, recovers := range []bool{true, false} {
		h := setupLayout(t, 3)
		before := h.snapshot()
		sd := &fakeSystemd{}
		healthy := atomic.Bool{}
		healthy.Store(true)
		w := h.wiring(LayoutAuto, sd, newFakeKubelet(t, healthy.Load))
		if _, err := install(t, w); err != nil {
			t.Fatal(err)
		}
		healthy.Store(false)
		sd.onRestart = func() { healthy.Store(recovers) }
		_, err := uninstall(t, w)
		if recovers && err != nil {
			t.Fatalf("recovers: %v", err)
		}
		if !recovers && (err == nil || !strings.Contains(err.Error(), "was not healthy before uninstall") || !strings.Contains(err.Error(), "the flags stay removed")) {
			t.Fatalf("does not recover: %v", err)
		}
		h.assertSnapshot(before)
	}
}
