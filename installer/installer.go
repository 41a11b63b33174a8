// Package installer puts the plugin on a node: the executable into the
// kubelet's credential-provider bin dir, and the kubelet's
// CredentialProviderConfig. Files are replaced atomically (temporary file,
// fsync, rename), since the kubelet may run the plugin at any moment, and
// only when their content changes.
package installer

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// Action is what happened to one file.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
)

// Options is one installation.
type Options struct {
	Executable string // the file to install as the plugin
	// BinDir is the kubelet's --image-credential-provider-bin-dir. It must
	// exist: if missing, the path or a hostPath mount is wrong.
	BinDir string
	// ConfigPath is the kubelet's --image-credential-provider-config file;
	// its directory must exist.
	ConfigPath string
	// Provider is the config's provider entry; its Name is also the
	// binary's file name.
	Provider Provider
	// Force replaces a config not written by the installer, and a symbolic
	// link in place of the binary or the config (not its target).
	Force  bool
	Verify Verifier // runs the new binary before it is moved into place; nil: VersionCheck("")
}

// Result says what Install did.
type Result struct {
	BinaryPath, ConfigPath string
	Binary, Config         Action
}

// Error is an installation failure; its message names the cause and the fix.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func errorf(format string, a ...any) error { return &Error{msg: fmt.Sprintf(format, a...)} }

// Install checks both targets first, then installs the binary, then the
// config (the kubelet refuses a config naming a missing binary). On error no
// temporary file is left, and each file is untouched or fully replaced.
func Install(ctx context.Context, o Options) (Result, error) {
	o.Provider.Name = cmp.Or(o.Provider.Name, DefaultName)
	if err := CheckPaths(o.BinDir, o.ConfigPath, o.Provider.Name); err != nil {
		return Result{}, err
	}
	if o.Executable == "" {
		return Result{}, errorf("no executable to install")
	}
	res := Result{BinaryPath: filepath.Join(o.BinDir, o.Provider.Name), ConfigPath: o.ConfigPath}
	content, err := Config(o.Provider)
	if err != nil {
		return res, err
	}

	// Every check that can fail is made before anything changes.
	for _, d := range [][2]string{{o.BinDir, "--bin-dir"}, {filepath.Dir(o.ConfigPath), "the directory of --config"}} {
		if err := checkDir(d[0], d[1]); err != nil {
			return res, err
		}
	}
	if _, err := checkTarget(res.BinaryPath, o.Force); err != nil {
		return res, err
	}
	existing, err := checkTarget(o.ConfigPath, o.Force)
	if err != nil {
		return res, err
	}
	if existing != nil && !bytes.Equal(existing, content) && !WrittenByInstaller(existing) && !o.Force {
		return res, errorf("%s exists and was not written by icr-credential-provider install: merge the provider into it by hand, point --config at another file, or give --force to replace it", o.ConfigPath)
	}
	for _, d := range []string{o.BinDir, filepath.Dir(o.ConfigPath)} {
		removeStale(d)
		if err := probeWritable(d); err != nil {
			return res, err
		}
	}

	verify := o.Verify
	if verify == nil {
		verify = VersionCheck("")
	}
	if res.Binary, err = InstallExecutable(ctx, o.Executable, o.BinDir, o.Provider.Name, verify, o.Force); err != nil {
		return res, err
	}
	res.Config, err = WriteFile(o.ConfigPath, content, 0o644, o.Force)
	return res, err
}

// CheckPaths checks --bin-dir, --config and the binary's name (""
// is DefaultName) as given, before anything is read or written.
func CheckPaths(binDir, configPath, name string) error {
	if err := validName(cmp.Or(name, DefaultName)); err != nil {
		return err
	}
	if binDir == "" {
		return errorf("--bin-dir is required: give the kubelet's --image-credential-provider-bin-dir")
	}
	if configPath == "" {
		return errorf("--config is required: give the kubelet's --image-credential-provider-config file")
	}
	if err := absolute("--bin-dir", binDir); err != nil {
		return err
	}
	return absolute("--config", configPath)
}

// absolute refuses a relative path: the kubelet, the config and the
// credential helper link name files by absolute path, and a relative one
// would be resolved against another directory than this process's.
func absolute(flag, path string) error {
	if !filepath.IsAbs(path) {
		return errorf("%s %s is a relative path: give an absolute path (the kubelet and the credential helper link resolve it from another directory)", flag, path)
	}
	return nil
}

// checkDir requires dir to be an existing directory.
func checkDir(dir, what string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf("%s %s does not exist: create it, or check the path (and the hostPath mount when running in a pod)", what, dir)
	case err != nil:
		return errorf("%s %s: %v", what, dir, config.Bare(err))
	case !fi.IsDir():
		return errorf("%s %s is not a directory: give a directory", what, dir)
	}
	return nil
}

// checkTarget returns the content of the regular file about to be replaced.
// Only a regular file (or, with force, a symbolic link, not followed) may be
// replaced.
func checkTarget(path string, force bool) ([]byte, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, errorf("%s: %v", path, config.Bare(err))
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, errorf("reading %s: %v: check its permissions", path, config.Bare(err))
		}
		return b, nil
	case m&fs.ModeSymlink != 0:
		if !force {
			return nil, errorf("%s is a symbolic link: remove it, or give --force to replace the link itself (its target is left alone)", path)
		}
		return nil, nil
	case m.IsDir():
		return nil, errorf("%s is a directory, not a regular file: remove it or choose another path", path)
	default:
		return nil, errorf("%s is not a regular file (%v): remove it or choose another path", path, m.Type())
	}
}

// tempPattern names temporary files: hidden, never mistaken for a provider,
// and recognisable for removeStale.
func tempPattern(name string) string { return "." + name + ".icr-install-*" }

// staleAfter is the age at which a killed installer's temporary file goes.
const staleAfter = 10 * time.Minute

// removeStale removes killed installers' temporary files from dir. Best
// effort.
func removeStale(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".*.icr-install-*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleAfter {
			_ = os.Remove(m)
		}
	}
}

// probeWritable creates and removes a temporary file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, tempPattern("probe"))
	if err != nil {
		return writeError(dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// geteuid is os.Geteuid; tests pretend to be root.
var geteuid = os.Geteuid

func writeError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.EROFS):
		return errorf("cannot write to %s: read-only file system: mount it read-write (hostPath without readOnly) or choose a writable directory", dir)
	case errors.Is(err, fs.ErrPermission) && geteuid() == 0:
		return errorf("cannot write to %s: permission denied although running as root: the directory's owner or mode denies it and this process lacks CAP_DAC_OVERRIDE, or SELinux/AppArmor or an immutable attribute (chattr +i) denies it: check 'ls -ld %s' and the container's capabilities", dir, dir)
	case errors.Is(err, fs.ErrPermission):
		return errorf("cannot write to %s: permission denied: run the installer as root (the DaemonSet does) or choose a directory you can write", dir)
	case errors.Is(err, syscall.ENOSPC):
		return errorf("cannot write to %s: no space left on device: free some space", dir)
	}
	return errorf("cannot write to %s: %v", dir, config.Bare(err))
}

// InstallExecutable installs src as dir/name, mode 0755, unless it is there
// already (then only the mode is fixed): copied to a temporary file in dir,
// synced, run by verify, and renamed into place.
func InstallExecutable(ctx context.Context, src, dir, name string, verify Verifier, force bool) (Action, error) {
	dst := filepath.Join(dir, name)
	data, err := os.ReadFile(src)
	if err != nil {
		return "", errorf("reading the executable to install %s: %v", src, config.Bare(err))
	}
	action, err := put(dst, data, 0o755, force, func(tmp string) error {
		if verify == nil {
			return nil
		}
		if err := verify(ctx, tmp); err != nil {
			return errorf("the copied binary does not run from %s (%v): check that the directory is not mounted noexec and that the image matches the node's architecture", dir, err)
		}
		return nil
	})
	if action == Unchanged {
		if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm() != 0o755 {
			if err := os.Chmod(dst, 0o755); err != nil {
				return "", writeError(dir, err)
			}
			return Updated, nil
		}
	}
	return action, err
}

// WriteFile writes content to path atomically unless path already holds
// exactly content. It does not check who wrote the file; Install does.
func WriteFile(path string, content []byte, perm fs.FileMode, force bool) (Action, error) {
	return put(path, content, perm, force, nil)
}

// put is WriteFile, with check run on the temporary file (see replace).
func put(path string, data []byte, perm fs.FileMode, force bool, check func(tmp string) error) (Action, error) {
	existing, err := checkTarget(path, force)
	if err != nil {
		return "", err
	}
	if existing != nil && bytes.Equal(existing, data) {
		return Unchanged, nil
	}
	action := Created
	if _, err := os.Lstat(path); err == nil {
		action = Updated
	}
	if err := replace(path, data, perm, check); err != nil {
		return "", err
	}
	return action, nil
}

// replace writes data to a temporary file next to path, syncs it, runs check
// on it, renames it over path and syncs the directory. On any error the
// temporary file is removed.
func replace(path string, data []byte, perm fs.FileMode, check func(tmp string) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPattern(base))
	if err != nil {
		return writeError(dir, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return writeError(dir, err)
	}
	if err = f.Chmod(perm); err != nil {
		return writeError(dir, err)
	}
	if err = f.Sync(); err != nil {
		return writeError(dir, err)
	}
	if err = f.Close(); err != nil {
		return writeError(dir, err)
	}
	if check != nil {
		if err = check(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return writeError(dir, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename durable. Best effort: some file systems refuse.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Verifier runs a freshly copied binary and returns an error if it is not
// usable.
type Verifier func(ctx context.Context, path string) error

// verifyTimeout bounds one run of the binary under test.
const verifyTimeout = 10 * time.Second

// VersionCheck runs `<path> version --short` in an empty environment and
// requires it to succeed and print a version; if want is not empty, exactly
// that version.
func VersionCheck(want string) Verifier {
	return func(ctx context.Context, path string) error {
		var out []byte
		var err error
		// A file just written can still be open in a child forked meanwhile
		// by this process (ETXTBSY): retry briefly.
		for range 10 {
			out, err = runVersion(ctx, path)
			if err == nil || !errors.Is(err, syscall.ETXTBSY) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return err
		}
		got := strings.TrimSpace(string(out))
		if got == "" || strings.Contains(got, "\n") {
			return fmt.Errorf("'version --short' printed %q, want one version", got)
		}
		if want != "" && got != want {
			return fmt.Errorf("it reports version %s, want %s", got, want)
		}
		return nil
	}
}

func runVersion(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "version", "--short")
	cmd.Env = []string{}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("'version --short' did not finish within %v", verifyTimeout)
	}
	if err != nil {
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		msg = msg[:min(len(msg), 200)]
		if msg != "" {
			return nil, fmt.Errorf("'version --short': %w: %s", err, msg)
		}
		return nil, fmt.Errorf("'version --short': %w", err)
	}
	return stdout.Bytes(), nil
}
