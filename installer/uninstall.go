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

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
)

// PluginPackage is the main package of the plugin's builds, as their Go
// build info names it.
const PluginPackage = "github.com/icr-credential-provider/icr-credential-provider/cmd/icr-credential-provider"

// RemoveOptions are the files uninstall takes away: exactly those install
// writes, each only if it is install's.
type RemoveOptions struct {
	BinDir, ConfigPath string // as given to install
	Name               string // the binary's name; "": DefaultName
	Executable         string // this program: a binary with its content is ours even without build info
	Host               Host   // maps the API key file the config names (a host path) to a path to open
	// HelperDir is install's --credential-helper; the link there is ours
	// if it points at one of HelperTargets.
	HelperDir     string
	HelperTargets []string
	Force         bool // removes files install did not write (never a directory, never through a link)
}

// Removal is what uninstall removes, checked before anything is.
type Removal struct{ items []removeItem }

// removeItem is the entry name of dir, removed only if still the file fi.
type removeItem struct {
	what, dir, name string
	fi              fs.FileInfo
}

func (it removeItem) path() string { return filepath.Join(it.dir, it.name) }

// PlanRemove finds the files to remove. A file that install did not write
// is an error naming it, unless Force; so is, always, a file or directory
// another user can change (uninstall removes as root).
func PlanRemove(o RemoveOptions) (*Removal, error) {
	o.Name = cmp.Or(o.Name, DefaultName)
	if err := CheckPaths(o.BinDir, o.ConfigPath, o.Name); err != nil {
		return nil, err
	}
	r := &Removal{}

	if o.HelperDir != "" {
		if err := PathArg("--credential-helper", o.HelperDir); err != nil {
			return nil, err
		}
		fi, d, err := lstatIn(o.HelperDir, credhelper.LinkName, "--credential-helper")
		if err != nil {
			return nil, err
		}
		if fi != nil {
			link := d.Path(credhelper.LinkName)
			target, _ := d.Readlink(credhelper.LinkName)
			d.Close()
			if err := credhelper.CheckLinkOwned(link, fi, target, o.HelperTargets); err != nil && !o.Force {
				return nil, err
			}
			if fi.IsDir() {
				return nil, errorf("%s is a directory: remove it by hand", link)
			}
			r.items = append(r.items, removeItem{"credential helper", o.HelperDir, credhelper.LinkName, fi})
		}
	}

	cfg, cfgFi, err := ownedFile(o.ConfigPath, "config", o.Force, func(f *os.File) ([]byte, bool, error) {
		b, _, err := readUpTo(f, MaxConfigFile)
		return b, WrittenByInstaller(b), err
	}, "was not written by icr-credential-provider install (its first line is not the installer's): remove it by hand, or give --force")
	if err != nil {
		return nil, err
	}
	if cfgFi != nil {
		r.items = append(r.items, removeItem{"config", filepath.Dir(o.ConfigPath), filepath.Base(o.ConfigPath), cfgFi})
		if key := APIKeyFileWritten(cfg); key != "" {
			local := o.Host.Path(key)
			_, fi, err := ownedFile(local, "API key file", o.Force, nil, "")
			if err != nil {
				return nil, err
			}
			if fi != nil {
				r.items = append(r.items, removeItem{"API key file", filepath.Dir(local), filepath.Base(local), fi})
			}
		}
	}

	bin := filepath.Join(o.BinDir, o.Name)
	_, binFi, err := ownedFile(bin, "binary", o.Force, func(f *os.File) ([]byte, bool, error) {
		return nil, ownBinary(f, o.Executable), nil
	}, "is not a build of icr-credential-provider (its Go build info names another program, or none): remove it by hand, or give --force")
	if err != nil {
		return nil, err
	}
	if binFi != nil {
		r.items = append(r.items, removeItem{"binary", o.BinDir, o.Name, binFi})
	}
	return r, nil
}

// lstatIn opens dir and describes its entry name (lstatTrusted); nil if
// either is missing. The caller closes the Dir when the FileInfo is not nil.
func lstatIn(dir, name, what string) (fs.FileInfo, *hostfile.Dir, error) {
	d, err := hostfile.OpenDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, dirError(dir, what, err)
	}
	fi, err := lstatTrusted(d, name, what+" "+d.Path(name))
	if fi == nil {
		d.Close()
		return nil, nil, err
	}
	return fi, d, nil
}

// ownedFile describes the file p (nil if missing), opened without following
// a link, when ours (nil: always) says it is install's, or force, and returns
// what ours read of it; a link is install's only with force (install never
// makes one), a directory never.
func ownedFile(p, what string, force bool, ours func(*os.File) ([]byte, bool, error), notOurs string) ([]byte, fs.FileInfo, error) {
	fi, d, err := lstatIn(filepath.Dir(p), filepath.Base(p), what)
	if err != nil || fi == nil {
		return nil, nil, err
	}
	defer d.Close()
	switch {
	case fi.IsDir():
		return nil, nil, errorf("%s %s is a directory, which install never writes: remove it by hand", what, p)
	case !fi.Mode().IsRegular() && !force:
		return nil, nil, errorf("%s %s is not a regular file (%v), so install did not write it: remove it by hand, or give --force", what, p, fi.Mode().Type())
	case !fi.Mode().IsRegular() || ours == nil:
		return []byte{}, fi, nil
	}
	f, ofi, err := d.Open(filepath.Base(p))
	if err != nil {
		return nil, nil, errorf("reading %s %s: %v", what, p, config.Bare(err))
	}
	defer f.Close()
	if !os.SameFile(fi, ofi) {
		return nil, nil, errorf("%s %s was replaced while uninstall checked it: run uninstall again", what, p)
	}
	b, ok, err := ours(f)
	if err != nil {
		return nil, nil, errorf("reading %s %s: %v", what, p, config.Bare(err))
	}
	if !ok && !force {
		return nil, nil, errorf("%s %s %s", what, p, notOurs)
	}
	return cmp0(b), fi, nil
}

// ownBinary reports whether f is a build of the plugin, or has exe's content.
func ownBinary(f *os.File, exe string) bool {
	if info, err := buildinfo.Read(f); err == nil && info.Path == PluginPackage {
		return true
	}
	b, err := os.ReadFile(exe) // "" fails too
	if err != nil {
		return false
	}
	a, more, err := readUpTo(f, len(b))
	return err == nil && !more && bytes.Equal(a, b)
}

// Empty reports whether there is nothing to remove.
func (r *Removal) Empty() bool { return len(r.items) == 0 }

// Apply removes the files: the link, the config and its key file, then the
// binary, each from its directory opened again, only if still the file
// checked.
func (r *Removal) Apply() ([]FileResult, error) {
	var out []FileResult
	for _, it := range r.items {
		gone, err := it.remove()
		if err != nil {
			return out, err
		}
		if gone {
			out = append(out, FileResult{Path: it.what + " " + it.path(), Action: Removed})
		}
	}
	return out, nil
}

func (it removeItem) remove() (bool, error) {
	fi, d, err := lstatIn(it.dir, it.name, it.what)
	if err != nil || fi == nil {
		return false, err
	}
	defer d.Close()
	if !os.SameFile(fi, it.fi) {
		return false, errorf("%s %s was replaced since uninstall checked it: run uninstall again", it.what, it.path())
	}
	if err := d.Remove(it.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, writeError(it.dir, err)
	}
	_ = d.Sync()
	return true, nil
}

// StillWired returns where the kubelet is still told to use config (as the
// host sees it) once the wiring is gone: a running kubelet's command line,
// or k3s's and RKE2's options. Without the binary it would not start again.
func StillWired(w Wiring, config string) []string {
	var out []string
	for _, argv := range ProcArgs(w.procDir(), "kubelet") {
		if slices.Contains(flagValues(argv[1:], FlagConfig), config) {
			out = append(out, fmt.Sprintf("the running kubelet has --%s=%s", FlagConfig, config))
		}
	}
	for _, l := range []Layout{LayoutK3s, LayoutRKE2} {
		files, err := rancherFiles(w.Host, l)
		if err != nil || !w.Host.exists(rancherDir(l)) {
			continue
		}
		if opts, kargs := rancherMerge(append(files, readRancherDropin(w.Host, l)...)); opts[FlagConfig].value == config {
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
