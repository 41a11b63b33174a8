package installer

import (
	"bytes"
	"cmp"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
)

// PluginPackage is the main package of the plugin's builds, as their Go
// build info names it.
const PluginPackage = "github.com/icr-credential-provider/icr-credential-provider/cmd/icr-credential-provider"

// RemoveOptions are the files uninstall takes away: exactly those install
// writes, each only if it is install's.
type RemoveOptions struct {
	BinDir, ConfigPath string // as given to install
	Name               string // the binary's name; "": DefaultName
	// Executable is this program: a binary with its content is ours even
	// without build info.
	Executable string
	// Host maps the API key file the config names (a host path) to a path
	// this process can open.
	Host Host
	// HelperDir is install's --credential-helper; the link there is ours
	// if it points at one of HelperTargets.
	HelperDir     string
	HelperTargets []string
	// Force removes files install did not write (never a directory, never
	// through a link).
	Force bool
}

// Removal is what uninstall removes, checked before anything is.
type Removal struct {
	items []removeItem
}

type removeItem struct {
	what, path string
	remove     func() error
}

// PlanRemove finds the files to remove. A file that install did not write
// is an error naming it, unless Force; nothing is removed then.
func PlanRemove(o RemoveOptions) (*Removal, error) {
	o.Name = cmp.Or(o.Name, DefaultName)
	if err := CheckPaths(o.BinDir, o.ConfigPath, o.Name); err != nil {
		return nil, err
	}
	r := &Removal{}
	plainFile := func(what, p string) func() error {
		return func() error {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return writeError(filepath.Dir(p), err)
			}
			syncDir(filepath.Dir(p))
			return nil
		}
	}

	if o.HelperDir != "" {
		link := filepath.Join(o.HelperDir, credhelper.LinkName)
		if fi, err := os.Lstat(link); err == nil {
			target, _ := os.Readlink(link)
			if err := credhelper.CheckLinkOwned(link, fi, target, o.HelperTargets); err != nil && !o.Force {
				return nil, err
			}
			if fi.IsDir() {
				return nil, errorf("%s is a directory: remove it by hand", link)
			}
			r.items = append(r.items, removeItem{"credential helper", link, plainFile("credential helper", link)})
		}
	}

	cfg, err := ownedFile(o.ConfigPath, "config", o.Force, func(b []byte) bool { return WrittenByInstaller(b) },
		"was not written by icr-credential-provider install (its first line is not the installer's): remove it by hand, or give --force")
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		r.items = append(r.items, removeItem{"config", o.ConfigPath, plainFile("config", o.ConfigPath)})
		if key := APIKeyFileWritten(cfg); key != "" {
			local := o.Host.Path(key)
			if _, err := ownedFile(local, "API key file", o.Force, func([]byte) bool { return true }, ""); err != nil {
				return nil, err
			}
			if _, err := os.Lstat(local); err == nil {
				r.items = append(r.items, removeItem{"API key file", local, plainFile("API key file", local)})
			}
		}
	}

	bin := filepath.Join(o.BinDir, o.Name)
	owned, err := ownedFile(bin, "binary", o.Force, func([]byte) bool { return ownBinary(bin, o.Executable) },
		"is not a build of icr-credential-provider (its Go build info names another program, or none): remove it by hand, or give --force")
	if err != nil {
		return nil, err
	}
	if owned != nil {
		r.items = append(r.items, removeItem{"binary", bin, plainFile("binary", bin)})
	}
	return r, nil
}

// ownedFile returns the content of the regular file p (nil if missing)
// when ours says it is install's, or force; a link is install's only with
// force (install never makes one there), a directory never.
func ownedFile(p, what string, force bool, ours func([]byte) bool, notOurs string) ([]byte, error) {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, errorf("%s %s: %v", what, p, config.Bare(err))
	case fi.IsDir():
		return nil, errorf("%s %s is a directory, which install never writes: remove it by hand", what, p)
	case !fi.Mode().IsRegular():
		if !force {
			return nil, errorf("%s %s is not a regular file (%v), so install did not write it: remove it by hand, or give --force", what, p, fi.Mode().Type())
		}
		return []byte{}, nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, errorf("reading %s %s: %v", what, p, config.Bare(err))
	}
	if notOurs != "" && !ours(b) && !force {
		return nil, errorf("%s %s %s", what, p, notOurs)
	}
	return cmp0(b), nil
}

// ownBinary reports whether the file at p is a build of the plugin, or
// has exe's content.
func ownBinary(p, exe string) bool {
	if info, err := buildinfo.ReadFile(p); err == nil && info.Path == PluginPackage {
		return true
	}
	return exe != "" && sameContent(p, exe)
}

func sameContent(a, b string) bool {
	ba, err := os.ReadFile(a)
	if err != nil {
		return false
	}
	bb, err := os.ReadFile(b)
	return err == nil && bytes.Equal(ba, bb)
}

// Empty reports whether there is nothing to remove.
func (r *Removal) Empty() bool { return len(r.items) == 0 }

// Apply removes the files: the link, the config and its key file, then the
// binary.
func (r *Removal) Apply() ([]FileResult, error) {
	var out []FileResult
	for _, it := range r.items {
		if err := it.remove(); err != nil {
			return out, err
		}
		out = append(out, FileResult{Path: it.what + " " + it.path, Action: Removed})
	}
	return out, nil
}

// StillWired returns where the kubelet is still told to use config (as the
// host sees it) once the wiring is gone: a running kubelet's command line,
// or k3s's and RKE2's options. Removing the binary then would stop that
// kubelet from starting again.
func StillWired(w Wiring, config string) []string {
	var out []string
	for _, argv := range ProcArgs(w.procDir(), "kubelet") {
		if slices.Contains(flagValues(argv[1:], FlagConfig), config) {
			out = append(out, fmt.Sprintf("the running kubelet has --%s=%s", FlagConfig, config))
		}
	}
	for _, l := range []Layout{LayoutK3s, LayoutRKE2} {
		if !w.Host.exists(rancherDir(l)) {
			continue
		}
		files, err := rancherFiles(w.Host, l)
		if err != nil {
			continue
		}
		if b, err := w.Host.read(rancherDir(l) + "/config.yaml.d/" + rancherDropin); err == nil {
			var keys map[string]any
			if yaml.Unmarshal(b, &keys) == nil {
				files = append(files, rancherFile{path: rancherDir(l) + "/config.yaml.d/" + rancherDropin, keys: keys})
			}
		}
		if opts, kargs := rancherMerge(files); opts[FlagConfig].value == config {
			out = append(out, fmt.Sprintf("%s sets %s: %s", opts[FlagConfig].file, FlagConfig, config))
		} else {
			for _, a := range kargs {
				if a.value == FlagConfig+"="+config {
					out = append(out, fmt.Sprintf("%s sets kubelet-arg %s", a.file, a.value))
				}
			}
		}
	}
	return out
}
