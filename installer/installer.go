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
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// Action is what happened to one file.
type Action string

// Actions.
const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Removed   Action = "removed"  // by uninstall
	Restored  Action = "restored" // by uninstall: back to its content before install
)

// Options is one installation.
type Options struct {
	Executable string // the file to install as the plugin
	// BinDir (the kubelet's --image-credential-provider-bin-dir) and the
	// directory of ConfigPath (its --image-credential-provider-config) must
	// exist: if missing, the path or a hostPath mount is wrong.
	BinDir, ConfigPath string
	Provider           Provider // the config's provider entry; its Name is also the binary's file name
	// Force replaces a config not written by the installer, and a symbolic
	// link in place of the binary or the config (not its target); never a
	// file another user can change.
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

// Install checks everything first (Check), then installs the binary, then
// the config (the kubelet refuses a config naming a missing binary). On
// error, or when ctx is done (a signal), no temporary file is left, and
// each file is untouched or fully replaced: Result says which.
func Install(ctx context.Context, o Options) (Result, error) {
	o.Provider.Name = cmp.Or(o.Provider.Name, DefaultName)
	res := Result{BinaryPath: filepath.Join(o.BinDir, o.Provider.Name), ConfigPath: o.ConfigPath}
	t, err := check(o)
	if err != nil {
		return res, err
	}
	defer t.close()
	if o.Verify == nil {
		o.Verify = VersionCheck("")
	}
	run := func(ctx context.Context, f *os.File) error {
		err := o.Verify(ctx, f)
		if ctx.Err() != nil {
			return interrupted(ctx)
		}
		if err != nil {
			return errorf("the copied binary does not run from %s (%v): check that the directory is not mounted noexec and that the image matches the node's architecture", t.bin.Path(""), err)
		}
		return nil
	}
	if ctx.Err() != nil {
		return res, interrupted(ctx)
	}
	if res.Binary, err = put(ctx, t.bin, o.Provider.Name, t.exe, 0o755, putOptions{force: o.Force, fixMode: true, verify: run}); err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, interrupted(ctx)
	}
	res.Config, err = put(ctx, t.cfg, filepath.Base(o.ConfigPath), t.content, 0o644, putOptions{force: o.Force})
	return res, err
}

// Check returns the error Install would return before it writes anything:
// the paths, the directories (existing, writable, only root can change
// them, even with --force), the files in the way, a config not written by
// install, the executable.
func Check(o Options) error {
	o.Provider.Name = cmp.Or(o.Provider.Name, DefaultName)
	t, err := check(o)
	if err == nil {
		t.close()
	}
	return err
}

// checked is what Install acts on: the two directories, open.
type checked struct {
	bin, cfg     *hostfile.Dir
	exe, content []byte
}

func (t *checked) close() {
	for _, d := range []*hostfile.Dir{t.bin, t.cfg} {
		if d != nil {
			d.Close()
		}
	}
}

func check(o Options) (_ *checked, err error) {
	if err := CheckPaths(o.BinDir, o.ConfigPath, o.Provider.Name); err != nil {
		return nil, err
	}
	if o.Executable == "" {
		return nil, errorf("no executable to install")
	}
	if err := Distinct(Target{"the binary", filepath.Join(o.BinDir, o.Provider.Name)}, Target{"--config", o.ConfigPath}); err != nil {
		return nil, err
	}
	t := &checked{}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.content, err = Config(o.Provider); err != nil {
		return nil, err
	}
	if t.bin, err = openDir(o.BinDir, "--bin-dir"); err != nil {
		return nil, err
	}
	if t.cfg, err = openDir(filepath.Dir(o.ConfigPath), "the directory of --config"); err != nil {
		return nil, err
	}
	bin, err := examine(t.bin, o.Provider.Name, o.Force)
	if err != nil {
		return nil, err
	}
	bin.close()
	cfg, err := examine(t.cfg, filepath.Base(o.ConfigPath), o.Force)
	if err != nil {
		return nil, err
	}
	defer cfg.close()
	if cfg.f != nil {
		existing, _, err := readUpTo(cfg.f, MaxConfigFile)
		if err != nil {
			return nil, errorf("reading %s: %v: check its permissions", o.ConfigPath, config.Bare(err))
		}
		if !bytes.Equal(existing, t.content) && !WrittenByInstaller(existing) && !o.Force {
			return nil, errorf("%s exists and was not written by icr-credential-provider install: merge the provider into it by hand, point --config at another file, or give --force to replace it", o.ConfigPath)
		}
	}
	for _, d := range []*hostfile.Dir{t.bin, t.cfg} {
		removeStale(d)
		if err := probeWritable(d); err != nil {
			return nil, err
		}
	}
	if t.exe, err = os.ReadFile(o.Executable); err != nil {
		return nil, errorf("reading the executable to install %s: %v", o.Executable, config.Bare(err))
	}
	return t, nil
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
	if err := PathArg("--bin-dir", binDir); err != nil {
		return err
	}
	return PathArg("--config", configPath)
}

// PathArg checks a path given on the command line (flag names it): one
// line of printable characters, absolute (the kubelet, the config and the
// credential helper link would resolve a relative one elsewhere).
func PathArg(flag, path string) error {
	if shown := secret.Printable(path); shown != path {
		return errorf("%s %s has a control or invisible character: give the path without it", flag, strconv.Quote(path))
	}
	if !filepath.IsAbs(path) {
		return errorf("%s %s is a relative path: give an absolute path (the kubelet and the credential helper link resolve it from another directory)", flag, path)
	}
	return nil
}

// Verifier runs a freshly copied binary, open read-only: nil if it is usable.
type Verifier func(ctx context.Context, exe *os.File) error

const verifyTimeout = 10 * time.Second

// VersionCheck runs `<exe> version --short` in an empty environment and
// requires it to print one version (exactly want, if not empty). It runs
// exe itself, through /proc/self/fd/3, not a path another process could
// point elsewhere.
func VersionCheck(want string) Verifier {
	return func(ctx context.Context, exe *os.File) error {
		var out []byte
		var err error
		// A child forked meanwhile by this process holds the file open for
		// writing until it execs (ETXTBSY): retry briefly.
		for range 10 {
			out, err = runVersion(ctx, exe)
			if err == nil || !errors.Is(err, syscall.ETXTBSY) || ctx.Err() != nil {
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

func runVersion(ctx context.Context, exe *os.File) ([]byte, error) {
	tctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	// The child runs exe, its first extra descriptor (3).
	cmd := exec.CommandContext(tctx, "/proc/self/fd/3", "version", "--short")
	cmd.ExtraFiles = []*os.File{exe}
	cmd.Env = []string{}
	cmd.WaitDelay = time.Second // a killed binary's children must not keep the check waiting
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, context.Cause(ctx)
	case tctx.Err() != nil:
		return nil, fmt.Errorf("'version --short' did not finish within %v", verifyTimeout)
	case err != nil:
		msg := strings.Join(strings.Fields(stderr.String()), " ")
		if msg != "" {
			msg = ": " + msg[:min(len(msg), 200)]
		}
		return nil, fmt.Errorf("'version --short': %w%s", err, msg)
	}
	return stdout.Bytes(), nil
}
