package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// rancherDropin is the file the wiring adds to k3s's or RKE2's
// config.yaml.d: after the operator's usual 00-89 files, before 99.
const rancherDropin = "90-icr-credential-provider.yaml"

// rancherUnits are the units that run k3s's and RKE2's kubelet, server first.
var rancherUnits = map[Layout][]string{
	LayoutK3s:  {"k3s.service", "k3s-agent.service"},
	LayoutRKE2: {"rke2-server.service", "rke2-agent.service"},
}

// rancherDefaults are the credential provider paths k3s and RKE2 pass to
// the kubelet when no option sets them and both exist.
var rancherDefaults = map[string]string{
	FlagBinDir: "/var/lib/rancher/credentialprovider/bin",
	FlagConfig: "/var/lib/rancher/credentialprovider/config.yaml",
}

func rancherDir(l Layout) string { return "/etc/rancher/" + string(l) }

func rancherDropinPath(l Layout) string { return rancherDir(l) + "/config.yaml.d/" + rancherDropin }

// rancherUnit returns the unit of l present on h (of two, the enabled
// one), "" if none.
func rancherUnit(h Host, l Layout) (string, error) {
	var present, enabled []string
	for _, u := range rancherUnits[l] {
		if slices.ContainsFunc(unitDirs, func(d string) bool { return h.exists(path.Join(d, u)) }) {
			present = append(present, u)
		}
	}
	if len(present) < 2 {
		return strings.Join(present, ""), nil
	}
	for _, u := range present {
		if slices.ContainsFunc(h.readDir("/etc/systemd/system"), func(e fs.DirEntry) bool {
			return strings.HasSuffix(e.Name(), ".wants") && h.exists("/etc/systemd/system/"+e.Name()+"/"+u)
		}) {
			enabled = append(enabled, u)
		}
	}
	if len(enabled) == 1 {
		return enabled[0], nil
	}
	which := "neither is"
	if len(enabled) > 1 {
		which = "both are"
	}
	return "", errorf("both %s are installed and %s enabled: disable the one this node does not run ('systemctl disable'), then run install again", strings.Join(present, " and "), which)
}

// rancherFile is one of k3s's or RKE2's configuration files, decoded.
type rancherFile struct {
	path string
	keys map[string]any
}

// rancherFiles reads config.yaml and config.yaml.d/*.yaml|*.yml in k3s's
// order (readDir's, by name), without the wiring's own drop-in.
func rancherFiles(h Host, l Layout) ([]rancherFile, error) {
	base := rancherDir(l) + "/config.yaml"
	paths := []string{base}
	for _, e := range h.readDir(base + ".d") {
		n := strings.ToLower(e.Name())
		if !e.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) && e.Name() != rancherDropin {
			paths = append(paths, base+".d/"+e.Name())
		}
	}
	var out []rancherFile
	for _, p := range paths {
		b, err := h.read(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, hostFileError(p, err)
		}
		var keys map[string]any
		if err := yaml.Unmarshal(b, &keys); err != nil {
			return nil, errorf("%s does not parse as YAML (%v): %s would not start either; fix it first", p, err, l)
		}
		out = append(out, rancherFile{path: p, keys: keys})
	}
	return out, nil
}

// readRancherDropin returns the wiring's drop-in of l, if it exists and parses.
func readRancherDropin(h Host, l Layout) []rancherFile {
	b, err := h.read(rancherDropinPath(l))
	var keys map[string]any
	if err != nil || yaml.Unmarshal(b, &keys) != nil {
		return nil
	}
	return []rancherFile{{path: rancherDropinPath(l), keys: keys}}
}

// rancherSetting is a value and the file that set it.
type rancherSetting struct{ value, file string }

// rancherMerge applies k3s's rules to files in order: a later file's key
// replaces an earlier one's, "key+" appends to a list. It returns the
// options' effective values and the effective kubelet-arg entries.
func rancherMerge(files []rancherFile) (options map[string]rancherSetting, kubeletArgs []rancherSetting) {
	options = map[string]rancherSetting{}
	for _, f := range files {
		for k, v := range f.keys {
			name, appendTo := strings.CutSuffix(k, "+")
			switch name {
			case FlagConfig, FlagBinDir:
				options[name] = rancherSetting{fmt.Sprint(v), f.path}
			case "kubelet-arg":
				if !appendTo {
					kubeletArgs = nil
				}
				list, ok := v.([]any)
				if !ok {
					list = []any{v}
				}
				for _, e := range list {
					kubeletArgs = append(kubeletArgs, rancherSetting{fmt.Sprint(e), f.path})
				}
			}
		}
	}
	return options, kubeletArgs
}

// planRancher sets k3s's (RKE2's) own options for the two flags in a
// config.yaml.d drop-in, not kubelet-arg: k3s passes them to the kubelet,
// and a kubelet-arg key would replace the operator's list (only
// "kubelet-arg+" appends).
func planRancher(w Wiring, l Layout, st *wiringState) (layoutPlan, error) {
	lp := layoutPlan{path: rancherDropinPath(l)}
	if !w.Host.exists(rancherDir(l)) {
		return lp, errorf("%s does not exist: this node does not run %s; give the --configure-kubelet of its layout", rancherDir(l), l)
	}
	unit, err := rancherUnit(w.Host, l)
	if err != nil {
		return lp, err
	}
	if unit == "" {
		return lp, errorf("no %s unit in %s: this node does not run %s from systemd; wire it by hand", strings.Join(rancherUnits[l], " or "), strings.Join(unitDirs, ", "), l)
	}
	lp.unit = unit
	files, err := rancherFiles(w.Host, l)
	if err != nil {
		return lp, err
	}
	content := fmt.Appendf(nil, "%s; changes here are lost at the next install.\n"+
		"# The kubelet's image credential provider, as %s options; 'icr-credential-provider uninstall' removes this file.\n"+
		"%s: %s\n%s: %s\n", Marker, l, FlagBinDir, w.BinDir, FlagConfig, w.Config)
	lp.after = func([]byte) ([]byte, error) { return content, nil }

	// Where k3s reads ours: files[at:] come after it.
	at := slices.IndexFunc(files, func(f rancherFile) bool {
		return path.Base(f.path) > rancherDropin && path.Dir(f.path) == path.Dir(lp.path)
	})
	if at < 0 {
		at = len(files)
	}
	flags := []string{FlagBinDir, FlagConfig}

	options, kargs := rancherMerge(files)
	for _, a := range kargs {
		for _, f := range flags {
			if v, ok := strings.CutPrefix(strings.TrimLeft(a.value, "-"), f+"="); ok && v != w.want(f) {
				lp.overrides = append(lp.overrides, fmt.Sprintf("%s sets kubelet-arg %s=%s, which wins over %s's own option", a.file, f, v, l))
			}
		}
	}
	for i, f := range files {
		for _, flag := range flags {
			v, ok := f.keys[flag]
			if !ok {
				v, ok = f.keys[flag+"+"]
			}
			if !ok || fmt.Sprint(v) == w.want(flag) {
				continue
			}
			msg := fmt.Sprintf("%s sets %s: %v", f.path, flag, v)
			if i >= at {
				lp.overrides = append(lp.overrides, msg+" after "+lp.path)
			} else {
				lp.conflicts = append(lp.conflicts, msg)
			}
		}
	}
	if _, set := options[FlagConfig]; !set {
		if _, set := options[FlagBinDir]; !set && w.Host.exists(rancherDefaults[FlagBinDir]) && w.Host.exists(rancherDefaults[FlagConfig]) && rancherDefaults[FlagConfig] != w.Config {
			lp.conflicts = append(lp.conflicts, fmt.Sprintf("%s passes its default %s to the kubelet (a provider is configured there)", l, rancherDefaults[FlagConfig]))
		}
	}
	for _, argv := range ProcArgs(w.procDir(), string(l)) {
		for _, f := range flags {
			vs := flagValues(argv[1:], f)
			for _, ka := range flagValues(argv[1:], "kubelet-arg") {
				if v, ok := strings.CutPrefix(strings.TrimLeft(ka, "-"), f+"="); ok {
					vs = append(vs, v)
				}
			}
			for _, v := range vs {
				if !w.ours(st, f, v) {
					lp.overrides = append(lp.overrides, fmt.Sprintf("the running %s has %s=%s on its command line (its unit's ExecStart), which wins over its configuration files", l, f, v))
				}
			}
		}
	}
	lp.conflicts = append(lp.conflicts, w.runningKubelet(st)...)

	// Wired: the files as they are, ours included, already give the flags.
	effective, _ := rancherMerge(slices.Insert(slices.Clone(files), at, readRancherDropin(w.Host, l)...))
	lp.wired = len(lp.overrides) == 0 && effective[FlagConfig].value == w.Config && effective[FlagBinDir].value == w.BinDir
	return lp, nil
}
