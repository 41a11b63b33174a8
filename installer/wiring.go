package installer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// Layout is how a node starts its kubelet: where the kubelet flags go.
type Layout string

// Layouts.
const (
	LayoutNone    Layout = "none"
	LayoutAuto    Layout = "auto"
	LayoutKubeadm Layout = "kubeadm"
	LayoutK3s     Layout = "k3s"
	LayoutRKE2    Layout = "rke2"
)

// ParseLayout parses --configure-kubelet.
func ParseLayout(s string) (Layout, error) {
	switch l := Layout(strings.ToLower(strings.TrimSpace(s))); l {
	case "":
		return LayoutNone, nil
	case LayoutNone, LayoutAuto, LayoutKubeadm, LayoutK3s, LayoutRKE2:
		return l, nil
	}
	return "", errorf("--configure-kubelet %q is not one of auto, kubeadm, k3s, rke2, none", s)
}

// The kubelet flags the wiring sets.
const (
	FlagConfig = "image-credential-provider-config"
	FlagBinDir = "image-credential-provider-bin-dir"
)

var kubeletFlags = []string{FlagConfig, FlagBinDir}

// Wiring is one change of how the kubelet starts: the two flags added
// (install) or the host files put back as they were (uninstall).
type Wiring struct {
	Host           Host
	Layout         Layout // auto: detected
	Config, BinDir string // the flags' values, as the host sees them
	// Force overrides the flags set elsewhere to other paths, and restores
	// a host file changed since install wired it.
	Force bool
	// ProcDir is the host's /proc, where a running kubelet's flags are read
	// ("": Host.Path("/proc"); "-": not read).
	ProcDir string
	Systemd Systemd
	Health  Health
}

// Plan is what a Wiring changes on this host, found before anything
// changes; Apply changes it.
type Plan struct {
	w           Wiring
	Layout      Layout
	Unit        string
	Notes       []string // findings that do not stop the wiring
	changes     []change
	restart     bool // a restart is due even without a change
	state       *wiringState
	stateBefore []byte // the state file's content before (nil: none), for a rollback
	uninstall   bool
}

// change is one host file's content before and after.
type change struct {
	Path             string // as the host sees it
	local            string
	before, after    []byte // nil: absent
	beforeMode, mode fs.FileMode
}

// FileResult is what happened to one host file.
type FileResult struct {
	Path   string
	Action Action
}

// WiringResult says what Apply did.
type WiringResult struct {
	Layout    Layout
	Unit      string
	Files     []FileResult
	Restarted bool
	Notes     []string
}

// layoutPlan is what a layout wants: one host file's content (its
// directory created if missing), and what stands in the way.
type layoutPlan struct {
	unit  string
	path  string                            // the host file the layout writes
	wired bool                              // the flags are in force from the files already
	after func(base []byte) ([]byte, error) // the file's content given its content before install
	// conflicts are settings of the flags to other paths, which the wiring
	// overrides only with Force; overrides would win over the wiring's
	// settings, refused always.
	conflicts, overrides []string
}

// PlanInstall finds the layout and what adding the flags takes, and
// checks everything that can be checked without changing anything.
func PlanInstall(w Wiring) (*Plan, error) {
	if err := w.Host.Check(); err != nil {
		return nil, err
	}
	if err := kubeletFlagPaths(w.Config, w.BinDir); err != nil {
		return nil, err
	}
	st, raw, err := readState(w.Host)
	if err != nil {
		return nil, err
	}
	layout := w.Layout
	if layout == LayoutAuto || layout == "" {
		if layout, err = detectLayout(w.Host); err != nil {
			return nil, err
		}
	}
	var lp layoutPlan
	switch layout {
	case LayoutKubeadm:
		lp, err = planKubeadm(w, st)
	case LayoutK3s, LayoutRKE2:
		lp, err = planRancher(w, layout, st)
	default:
		return nil, errorf("--configure-kubelet %s: nothing to wire", layout)
	}
	if err != nil {
		return nil, err
	}
	p := &Plan{w: w, Layout: layout, Unit: lp.unit, state: st, stateBefore: raw}
	if len(lp.overrides) > 0 {
		return nil, errorf("%s%s: the kubelet would not use the installer's flags; remove it, then run install again", lp.overrides[0], more(lp.overrides))
	}
	local, cur, curMode, err := w.Host.readWritable(lp.path)
	if err != nil {
		return nil, err
	}
	// A pending restart is ours only for the same unit.
	p.restart = st.RestartPending && st.Unit == lp.unit
	rec := st.record(lp.path)
	if lp.wired {
		if rec != nil {
			if written, _ := rec.unchangedSince(cur); !written {
				p.Notes = append(p.Notes, lp.path+" was changed since install wired it; the flags are still in force, so it is left alone")
			}
		}
		return p, p.prepare()
	}
	base := cur
	if rec != nil {
		written, previous := rec.unchangedSince(cur)
		switch {
		case written || previous:
			base = rec.previous()
		case !w.Force:
			return nil, errorf("%s was changed since install wired it: check it, then give --force to wire it again from its current content", lp.path)
		default:
			rec.Existed, rec.Previous, rec.Mode = cur != nil, cur, curMode
		}
	}
	after, err := lp.after(base)
	if err != nil {
		return nil, err
	}
	if cur != nil && bytes.Equal(after, cur) {
		return p, p.prepare()
	}
	if len(lp.conflicts) > 0 && !w.Force {
		return nil, errorf("%s%s: give --force to override it with the installer's paths, or remove it", lp.conflicts[0], more(lp.conflicts))
	}
	for _, c := range lp.conflicts {
		p.Notes = append(p.Notes, c+": overridden (--force)")
	}
	if rec == nil {
		st.Files = append(st.Files, fileRecord{Path: lp.path, Existed: cur != nil, Previous: cur, Mode: curMode})
		rec = &st.Files[len(st.Files)-1]
	}
	rec.Written = digest(after)
	if dir := path.Dir(lp.path); !w.Host.exists(dir) && !slices.Contains(st.Dirs, dir) {
		st.Dirs = append(st.Dirs, dir)
	}
	st.Layout, st.Unit, st.Config, st.BinDir = layout, lp.unit, w.Config, w.BinDir
	// A new file's mode, 0, is putHost's 0644.
	p.changes = []change{{Path: lp.path, local: local, before: cur, beforeMode: curMode, after: after, mode: curMode}}
	return p, p.prepare()
}

func more(list []string) string {
	if len(list) > 1 {
		return fmt.Sprintf(" (and %d more)", len(list)-1)
	}
	return ""
}

// kubeletFlagPaths requires paths for --config and --bin-dir that the
// kubelet's command line, an environment file and a YAML value carry
// without quoting.
func kubeletFlagPaths(config, binDir string) error {
	for _, f := range [][2]string{{"--config", config}, {"--bin-dir", binDir}} {
		flag, p := f[0], f[1]
		if !path.IsAbs(p) {
			return errorf("%s %q: the kubelet needs an absolute path", flag, p)
		}
		for _, r := range p {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+@", r)) {
				return errorf("%s %q has %q, which the kubelet's command line would need quoted: choose a path of letters, digits and / . _ - + @", flag, p, r)
			}
		}
	}
	return nil
}

// prepare checks that every directory Apply writes can be written, so that
// it fails as little as can be (writablePath and readState checked that
// only root can change them).
func (p *Plan) prepare() error {
	for _, t := range p.Targets() {
		d := filepath.Dir(t.Path)
		// A directory Apply creates: its parent must be writable.
		for _, err := os.Stat(d); err != nil && d != p.w.Host.Root; _, err = os.Stat(d) {
			d = filepath.Dir(d)
		}
		dir, err := openDir(d, "directory")
		if err != nil {
			return err
		}
		err = probeWritable(dir)
		dir.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Targets are the files Apply writes, as this process sees them.
func (p *Plan) Targets() []Target {
	if len(p.changes) == 0 {
		return nil
	}
	ts := []Target{{"the kubelet wiring's state file", p.w.Host.Path(StatePath)}}
	for _, c := range p.changes {
		ts = append(ts, Target{"the kubelet's " + c.Path, c.local})
	}
	return ts
}

// Changed reports whether Apply would change a file or restart the kubelet.
func (p *Plan) Changed() bool { return len(p.changes) > 0 || p.restart }

// Apply writes the plan's files, restarts the kubelet's unit if anything
// changed (or a restart is pending from an interrupted run) and waits for
// it to be healthy. If it is not, every file is put back as it was, the
// unit restarted again, and the error says so in one line.
func (p *Plan) Apply(ctx context.Context) (WiringResult, error) {
	res := WiringResult{Layout: p.Layout, Unit: p.Unit, Notes: p.Notes}
	if !p.Changed() {
		if p.uninstall && p.stateBefore != nil {
			// Every file is as before install already: only the state goes.
			return res, p.finish()
		}
		return res, nil
	}
	if p.w.Systemd == nil {
		return res, errorf("no way to restart %s on the host: give --systemctl", p.Unit)
	}
	// A kubelet already failing would make a good change look bad: install
	// refuses it; uninstall goes on (the wiring may be why it fails), and
	// then has no healthy state to go back to.
	healthyBefore := p.w.Health.Wait(ctx)
	if ctx.Err() != nil {
		return res, interrupted(ctx) // nothing changed yet
	}
	if healthyBefore != nil && !p.uninstall {
		return res, p.unhealthy(healthyBefore)
	}
	var created []string
	if len(p.changes) > 0 {
		var err error
		if created, err = p.write(); err != nil {
			return res, err
		}
	}
	cmd, what, undone := "install", "the credential provider flags were added", "the wiring was rolled back"
	if p.uninstall {
		cmd, what, undone = "uninstall", "the credential provider flags were removed", "the wiring was put back"
	}
	if len(p.changes) == 0 {
		what = "a restart left pending by an interrupted run"
	}
	// A failed restart command may have restarted the unit all the same
	// (systemctl fails when a notify unit does not come up): it is handled
	// as an unhealthy kubelet.
	var cause string
	hint := fmt.Sprintf("see 'journalctl -u %s' for why", p.Unit)
	if err := p.w.Systemd.Restart(ctx, p.Unit); err != nil {
		cause = fmt.Sprintf("restarting %s failed (%v)", p.Unit, err)
		hint = fmt.Sprintf("check --systemctl (the default needs hostPID and nsenter) and 'journalctl -u %s'", p.Unit)
	} else if err := p.w.Health.Wait(ctx); err != nil {
		cause = fmt.Sprintf("the kubelet was %v after %s restarted", err, p.Unit)
	}
	if cause != "" && healthyBefore != nil {
		_ = p.finish()
		return res, errorf("the kubelet was not healthy before uninstall (%v), and %s (%s); the flags stay removed: see 'journalctl -u %s'", healthyBefore, cause, what, p.Unit)
	}
	if cause != "" {
		if ctx.Err() != nil {
			// Interrupted (a signal): the kubelet still gets its previous
			// wiring back and a restart, within the kill's grace if it can.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), interruptedRollback)
			defer cancel()
		}
		if err := p.rollback(p.changes, created); err != nil {
			undone += ", but not completely (" + err.Error() + ")"
		} else if err := p.w.Systemd.Restart(ctx, p.Unit); err != nil {
			undone += fmt.Sprintf(" but restarting %s again failed (%v)", p.Unit, err)
		} else if err := p.w.Health.Wait(ctx); err != nil {
			undone += fmt.Sprintf(" and %s restarted, but it is still not healthy (%v)", p.Unit, err)
		} else {
			undone += fmt.Sprintf(" and %s restarted, healthy again", p.Unit)
		}
		return res, errorf("%s (%s); %s: %s, then run %s again", cause, what, undone, hint, cmd)
	}
	res.Restarted = true
	for _, c := range p.changes {
		a := Updated
		switch {
		case c.after == nil:
			a = Removed
		case p.uninstall:
			a = Restored
		case c.before == nil:
			a = Created
		}
		res.Files = append(res.Files, FileResult{c.Path, a})
	}
	return res, p.finish()
}

// CheckHealthy returns Apply's error for a kubelet not healthy before any
// change, for an installer to check before it writes its own files.
func (p *Plan) CheckHealthy(ctx context.Context) error {
	if !p.Changed() || p.uninstall {
		return nil
	}
	if err := p.w.Health.Wait(ctx); err != nil {
		if ctx.Err() != nil {
			return interrupted(ctx)
		}
		return p.unhealthy(err)
	}
	return nil
}

// interruptedRollback bounds the rollback of an interrupted restart: the
// kubelet deletes a pod 30 s after SIGTERM by default.
const interruptedRollback = 20 * time.Second

func (p *Plan) unhealthy(err error) error {
	return errorf("the kubelet is not healthy before any change (%v): the wiring restarts only a healthy kubelet; fix it first (journalctl -u %s), nothing was changed", err, p.Unit)
}

// write records the state (restart pending), then changes the files; on
// error it puts them back. It returns the directories created.
func (p *Plan) write() ([]string, error) {
	var created []string
	for _, d := range p.state.Dirs {
		local := p.w.Host.Path(d)
		if _, err := os.Stat(local); errors.Is(err, fs.ErrNotExist) {
			if err := os.Mkdir(local, 0o755); err != nil {
				p.removeDirs(created)
				return nil, writeError(filepath.Dir(local), err)
			}
			created = append(created, local)
		}
	}
	p.state.RestartPending = true
	if err := p.writeState(p.state.encode()); err != nil {
		p.removeDirs(created)
		return nil, err
	}
	for i, c := range p.changes {
		if err := putHost(c.local, c.after, c.mode); err != nil {
			_ = p.rollback(p.changes[:i], created)
			return nil, err
		}
	}
	return created, nil
}

// rollback puts changes and the state back as before Apply, and removes
// the directories created.
func (p *Plan) rollback(changes []change, created []string) error {
	var errs []error
	for _, c := range slices.Backward(changes) {
		if err := putHost(c.local, c.before, c.beforeMode); err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.writeState(p.stateBefore); err != nil {
		errs = append(errs, err)
	}
	p.removeDirs(created)
	return errors.Join(errs...)
}

// finish records a healthy restart: install clears the pending restart,
// uninstall removes the state and the directories the wiring created.
func (p *Plan) finish() error {
	if !p.uninstall {
		p.state.RestartPending = false
		return p.writeState(p.state.encode())
	}
	for _, d := range slices.Backward(p.state.Dirs) {
		_ = os.Remove(p.w.Host.Path(d)) // only if empty
	}
	return p.writeState(nil)
}

func (p *Plan) removeDirs(dirs []string) {
	for _, d := range slices.Backward(dirs) {
		_ = os.Remove(d) // only if empty
	}
}

// writeState writes (nil: removes) the state file.
func (p *Plan) writeState(b []byte) error {
	local := p.w.Host.Path(StatePath)
	if b == nil {
		err := putHost(local, nil, 0)
		_ = os.Remove(filepath.Dir(local)) // only if empty
		return err
	}
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		return writeError(filepath.Dir(local), err)
	}
	return putHost(local, b, 0o600)
}

// putHost writes data (nil: removes the file) atomically, mode (0: 0644)
// fixed also when the content is there already.
func putHost(local string, data []byte, mode fs.FileMode) error {
	if data == nil {
		return removeFile(local)
	}
	_, err := writeFile(local, data, cmp.Or(mode, 0o644), putOptions{fixMode: true})
	return err
}

// PlanUninstall puts each host file recorded in the state back to its
// content before install, or away if it did not exist. A file changed
// since install wired it is refused unless Force.
func PlanUninstall(w Wiring) (*Plan, error) {
	if w.Host.Root != "/" {
		if err := w.Host.Check(); err != nil {
			return nil, err
		}
	}
	st, raw, err := readState(w.Host)
	if err != nil {
		return nil, err
	}
	p := &Plan{w: w, Layout: st.Layout, Unit: st.Unit, state: st, stateBefore: raw, uninstall: true}
	if raw == nil {
		return p, nil
	}
	for _, rec := range st.Files {
		local, cur, curMode, err := w.Host.readWritable(rec.Path)
		if err != nil {
			return nil, err
		}
		written, previous := rec.unchangedSince(cur)
		switch {
		case previous:
			continue
		case !written && !w.Force:
			return nil, errorf("%s was changed since install wired it: remove the two --image-credential-provider flags from it by hand, or give --force to put back its content from before install (later changes to it are lost)", rec.Path)
		}
		p.changes = append(p.changes, change{Path: rec.Path, local: local, before: cur, beforeMode: curMode, after: rec.previous(), mode: rec.Mode})
	}
	p.restart = st.RestartPending
	return p, p.prepare()
}

func detectLayout(h Host) (Layout, error) {
	if h.exists("/etc/machine-config-daemon") || kubensWrapped(h) {
		return "", errorf("this is an OpenShift node: the Machine Config Operator owns kubelet.service and reverts changes to it; use 'install --print-machineconfig' and 'oc apply' instead (docs/kubelet-wiring.md)")
	}
	var found []string
	if kubeadmDropin(h) != "" {
		found = append(found, string(LayoutKubeadm))
	}
	for _, l := range []Layout{LayoutK3s, LayoutRKE2} {
		// rancherUnit's error (both units, not one enabled) is planRancher's to report.
		if u, err := rancherUnit(h, l); h.exists(rancherDir(l)) && (u != "" || err != nil) {
			found = append(found, string(l))
		}
	}
	switch len(found) {
	case 1:
		return Layout(found[0]), nil
	case 0:
		return "", errorf("no known kubelet layout under --host-root %s: looked for kubeadm's 10-kubeadm.conf in %s, /etc/rancher/k3s with a k3s or k3s-agent unit, /etc/rancher/rke2 with an rke2-server or rke2-agent unit; wire the kubelet by hand (docs/kubelet-wiring.md) or give --configure-kubelet=none", h.Root, strings.Join(kubeletDropinDirs(), ", "))
	}
	return "", errorf("more than one kubelet layout under --host-root %s (%s): give --configure-kubelet with the one that starts this node's kubelet", h.Root, strings.Join(found, ", "))
}

func kubensWrapped(h Host) bool {
	b, err := h.read("/etc/systemd/system/kubelet.service")
	return err == nil && bytes.Contains(b, []byte("kubenswrapper"))
}

// ProcArgs are the command lines of the trusted processes under dir whose
// executable is one of names (hostfile.Processes): a user's process named
// kubelet is not the kubelet.
func ProcArgs(dir string, names ...string) [][]string {
	var out [][]string
	for _, p := range hostfile.Processes(dir, names...) {
		if p.Untrusted == "" {
			out = append(out, p.Argv)
		}
	}
	return out
}

func (w Wiring) procDir() string { return cmp.Or(w.ProcDir, w.Host.Path("/proc")) }

// flagValues returns the values of flag name in args (--name=v, -name=v,
// --name v), in order.
func flagValues(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		k, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if k != name {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			v = args[i]
		}
		out = append(out, v)
	}
	return out
}

func (w Wiring) want(flag string) string {
	if flag == FlagConfig {
		return w.Config
	}
	return w.BinDir
}

// ours reports whether v is the wiring's value of flag, now or as wired before.
func (w Wiring) ours(st *wiringState, flag, v string) bool {
	wired := Wiring{Config: st.Config, BinDir: st.BinDir}
	return v == w.want(flag) || v != "" && v == wired.want(flag)
}

// foreign returns the values of flag in args that are not ours.
func (w Wiring) foreign(st *wiringState, args []string, flag string) []string {
	return slices.DeleteFunc(flagValues(args, flag), func(v string) bool { return w.ours(st, flag, v) })
}

// runningKubelet reports a running kubelet's flags set to other paths.
func (w Wiring) runningKubelet(st *wiringState) []string {
	var out []string
	for _, argv := range ProcArgs(w.procDir(), "kubelet") {
		for _, f := range kubeletFlags {
			for _, v := range w.foreign(st, argv[1:], f) {
				out = append(out, fmt.Sprintf("the running kubelet has --%s=%s, from a setting the installer did not find", f, v))
			}
		}
	}
	return out
}

func kubeletDropinDirs() []string {
	var out []string
	for _, d := range unitDirs {
		out = append(out, d+"/kubelet.service.d")
	}
	return out
}

func kubeadmDropin(h Host) string {
	for _, d := range kubeletDropinDirs() {
		if p := d + "/10-kubeadm.conf"; h.exists(p) {
			return p
		}
	}
	return ""
}

// kubeadmEnvFiles are where kubeadm's drop-in reads KUBELET_EXTRA_ARGS: Debian's, RHEL's.
var kubeadmEnvFiles = []string{"/etc/default/kubelet", "/etc/sysconfig/kubelet"}

// extraArgs is the variable kubeadm leaves to the operator.
const extraArgs = "KUBELET_EXTRA_ARGS"

// planKubeadm appends the flags to KUBELET_EXTRA_ARGS in the environment
// file the kubelet unit reads it from (kubeadmEnvFiles): kubeadm's place
// for operator flags, last on the command line, never rewritten by kubeadm.
func planKubeadm(w Wiring, st *wiringState) (layoutPlan, error) {
	lp := layoutPlan{unit: "kubelet.service"}
	dropin := kubeadmDropin(w.Host)
	if dropin == "" {
		return lp, errorf("no kubeadm kubelet drop-in (10-kubeadm.conf) in %s: this node's kubelet is not set up by kubeadm's packages; give the --configure-kubelet of its layout, or wire it by hand", strings.Join(kubeletDropinDirs(), ", "))
	}
	files, err := findUnit(w.Host, lp.unit)
	if err != nil {
		return lp, err
	}
	s := parseService(files)
	words := unitWords(s.ExecStart)
	at := slices.Index(words, "$"+extraArgs)
	if at < 0 {
		if slices.Contains(words, "${"+extraArgs+"}") {
			return lp, errorf("the kubelet's ExecStart (%s) expands ${%s} as one word, which cannot carry two flags: wire the kubelet by hand", s.ExecStartFrom, extraArgs)
		}
		return lp, errorf("the kubelet's ExecStart (%s) does not expand $%s: wire the kubelet by hand (docs/kubelet-wiring.md)", cmp.Or(s.ExecStartFrom, dropin), extraArgs)
	}
	target := -1
	for i, f := range s.EnvironmentFiles {
		if slices.Contains(kubeadmEnvFiles, f) {
			target = i
		}
	}
	if target < 0 {
		return lp, errorf("the kubelet unit reads no EnvironmentFile=%s: wire the kubelet by hand (docs/kubelet-wiring.md)", strings.Join(kubeadmEnvFiles, " or "))
	}
	lp.path = s.EnvironmentFiles[target]

	// Every other place the flags can come from, in command-line order.
	for _, f := range kubeletFlags {
		for part, args := range [][]string{words[:at], words[at+1:]} {
			for _, v := range w.foreign(st, args, f) {
				msg := fmt.Sprintf("the kubelet's ExecStart (%s) sets --%s=%s", s.ExecStartFrom, f, v)
				if part == 1 {
					lp.overrides = append(lp.overrides, msg+" after $"+extraArgs)
				} else {
					lp.conflicts = append(lp.conflicts, msg)
				}
			}
		}
		for i, a := range s.Environment {
			name, value, _ := strings.Cut(a, "=")
			for _, v := range w.foreign(st, strings.Fields(value), f) {
				lp.conflicts = append(lp.conflicts, fmt.Sprintf("%s sets --%s=%s in %s", s.EnvironmentFrom[i], f, v, name))
			}
		}
	}
	var current []byte
	for i, ef := range s.EnvironmentFiles {
		b, err := w.Host.read(ef)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return lp, hostFileError(ef, err)
		}
		if i == target {
			current = b
		}
		for _, a := range parseEnvFile(b) {
			if i > target && a.Name == extraArgs {
				lp.overrides = append(lp.overrides, fmt.Sprintf("%s sets %s after %s", ef, extraArgs, lp.path))
			}
			for _, f := range kubeletFlags {
				for _, v := range w.foreign(st, strings.Fields(a.Value), f) {
					lp.conflicts = append(lp.conflicts, fmt.Sprintf("%s sets --%s=%s in %s", ef, f, v, a.Name))
				}
			}
		}
	}
	lp.conflicts = append(lp.conflicts, w.runningKubelet(st)...)

	value, _ := envValue(current, extraArgs)
	lp.wired = !slices.ContainsFunc(kubeletFlags, func(f string) bool {
		vs := flagValues(strings.Fields(value), f)
		return len(vs) == 0 || vs[len(vs)-1] != w.want(f)
	})
	add := []string{"--" + FlagConfig + "=" + w.Config, "--" + FlagBinDir + "=" + w.BinDir}
	lp.after = func(base []byte) ([]byte, error) {
		out, err := appendToEnvVar(base, extraArgs, add)
		if err != nil {
			return nil, errorf("%s: %v", lp.path, err)
		}
		return out, nil
	}
	return lp, nil
}
