// Command icr-credential-provider is a kubelet image credential provider for
// IBM Cloud Container Registry. Run without a sub-command it reads a
// CredentialProviderRequest on stdin and writes a CredentialProviderResponse
// on stdout. This file is wiring only: flags, environment, sub-commands.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	"k8s.io/component-base/logs/klogflags"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

const name = "icr-credential-provider"

// invocationTimeout bounds the work of one kubelet invocation. The kubelet
// kills the plugin after a minute; this leaves it half of that.
const invocationTimeout = 25 * time.Second

func main() {
	args := os.Args[1:]
	// Installed as docker-credential-icr, the binary is a Docker credential
	// helper: `docker-credential-icr get` is `credential-helper get`.
	if strings.HasPrefix(filepath.Base(os.Args[0]), "docker-credential-") {
		args = append([]string{"credential-helper"}, args...)
	}
	os.Exit(run(args, os.Stdin, os.Stdout, os.Stderr, os.LookupEnv))
}

// env is the process environment as the command sees it (tests replace it).
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
	memory         *cache.Memory // one per run: tests run many "processes" in one
}

func (e env) getenv(k string) string { v, _ := e.lookup(k); return v }

// commands are the sub-commands; without one, the binary is in kubelet mode.
var commands = map[string]func(env, []string) int{
	"version": cmdVersion, "doctor": cmdDoctor, "install": cmdInstall, "uninstall": cmdUninstall,
	"credential-helper": cmdCredentialHelper, "help": cmdHelp,
}

// run is main without the process: it returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	e := env{stdin: stdin, stdout: stdout, stderr: stderr, lookup: lookup, memory: cache.NewMemory()}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return cmdKubelet(e, args)
	}
	cmd, ok := commands[args[0]]
	if !ok {
		return fail(e, fmt.Errorf("unknown command %q: use one of doctor, install, uninstall, credential-helper, version, help, or no command for kubelet mode (see '%s --help')", args[0], name))
	}
	return cmd(e, args[1:])
}

// maxErrorLine bounds the one line a failure writes on stderr.
const maxErrorLine = 4096

// fail prints err as the single line on stderr, without secrets, and returns
// the exit code.
func fail(e env, err error) int {
	fmt.Fprintf(e.stderr, "%s: %s\n", name, secret.Line(err.Error(), maxErrorLine))
	return 1
}

// newFlagSet returns a flag set with --help and the logging flags as the
// kubelet has them (-v, --vmodule, --logging-format).
func newFlagSet(cmd string, e env) (fs *pflag.FlagSet, format *string, help *bool) {
	fs = pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	gfs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	klogflags.Init(gfs)
	// klog's flags are global: reset what an earlier run in this process set.
	_ = gfs.Set("v", "0")
	_ = gfs.Set("vmodule", "")
	fs.AddGoFlagSet(gfs)
	format = fs.String("logging-format", "text", "log format: text or json")
	return fs, format, fs.BoolP("help", "h", false, "show this help")
}

// parse parses args, then the environment for flags not given.
func parse(fs *pflag.FlagSet, args []string, e env) error {
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v: see '%s --help'", err, name)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: see '%s --help'", fs.Arg(0), name)
	}
	return config.ApplyEnv(fs, e.lookup)
}

// setupLogging sends klog to stderr (stdout carries the response only) in
// the chosen format, through the secret filter.
func setupLogging(stderr io.Writer, format string) error {
	w := secret.Writer(stderr)
	klog.SetOutput(w)
	klog.LogToStderr(false)
	// Each message once: klog otherwise writes a warning to its WARNING and
	// INFO outputs, and errors to os.Stderr as well.
	var kfs flag.FlagSet
	klog.InitFlags(&kfs)
	_ = kfs.Set("one_output", "true")
	_ = kfs.Set("stderrthreshold", "FATAL")
	switch format {
	case "", "text":
		klog.ClearLogger()
		return nil
	case "json":
		// Contextual: named loggers (WithName) reach funcr as such, so that
		// a line has one "logger" key, not funcr's and klog's.
		klog.SetLoggerWithOptions(funcr.NewJSON(func(obj string) { fmt.Fprintln(w, obj) }, funcr.Options{
			LogTimestamp: true, Verbosity: int(verbosity()),
		}), klog.ContextualLogger(true))
		return nil
	}
	return fmt.Errorf("--logging-format %q is not text or json", format)
}

func verbosity() klog.Level {
	for v := klog.Level(10); v > 0; v-- {
		if klog.V(v).Enabled() {
			return v
		}
	}
	return 0
}

func cmdKubelet(e env, args []string) int {
	cfg := config.Config{Memory: e.memory}
	fs, format, help := newFlagSet(name, e)
	cfg.AddFlags(fs)
	if err := parse(fs, args, e); err != nil {
		return fail(e, err)
	}
	if *help {
		usage(e, fs)
		return 0
	}
	if isTerminal(e.stdin) {
		// By hand, without a pipe: say what is awaited rather than wait
		// silently. (The kubelet's stdin is always a pipe.)
		fmt.Fprintf(e.stderr, "%s: reading a CredentialProviderRequest from stdin (the kubelet sends one); by hand, pipe one such as examples/requests/v1.json, or see '%s --help'\n", name, name)
	}
	// Log lines are held until the outcome is known: a failure must be one
	// line on stderr (the kubelet logs all of it), so warnings are shown on
	// success, and on failure only with -v.
	logs := &heldLog{}
	if err := setupLogging(logs, *format); err != nil {
		return fail(e, err)
	}
	defer func() {
		klog.Flush()
		logs.release(e.stderr)
	}()

	ctx, cancel := kubeletContext(invocationTimeout)
	defer cancel()

	hosts, err := cfg.Hosts()
	if err != nil {
		return fail(e, err)
	}
	// Identities are resolved only when a served registry needs a token.
	plugin := &provider.Plugin{Hosts: hosts, Node: cfg.NodeSource(e.getenv), Workload: cfg.WorkloadSource}
	if err := plugin.Run(ctx, readyInput(e.stdin), e.stdout); err != nil {
		klog.Flush()
		if verbosity() == 0 {
			logs.release(io.Discard)
		}
		logs.release(e.stderr)
		return fail(e, err)
	}
	return 0
}

// isTerminal reports whether r is a terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// heldLog keeps log output until release; safe for concurrent use.
type heldLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (h *heldLog) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.Write(p)
}

// release writes what is held to w and empties it.
func (h *heldLog) release(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, _ = h.buf.WriteTo(w)
}

func cmdVersion(e env, args []string) int {
	fs := pflag.NewFlagSet("version", pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	short := fs.Bool("short", false, "print only the version")
	if err := fs.Parse(args); err != nil {
		return fail(e, err)
	}
	v := version.Get()
	if *short {
		fmt.Fprintln(e.stdout, v.GitVersion)
		return 0
	}
	fmt.Fprintf(e.stdout, "%s %s (commit %s, built %s, %s, %s)\n", name, v.GitVersion, v.GitCommit, v.BuildDate, v.GoVersion, v.Platform)
	return 0
}

func cmdHelp(e env, _ []string) int {
	var cfg config.Config
	fs, _, _ := newFlagSet(name, e)
	cfg.AddFlags(fs)
	fs.Lookup("help").Hidden = true // a flag of kubelet mode, not of help
	usage(e, fs)
	return 0
}

func usage(e env, fs *pflag.FlagSet) {
	fmt.Fprintf(e.stdout, `%[1]s: kubelet image credential provider for IBM Cloud Container Registry.

Usage:
  %[1]s [flags]
      kubelet mode: a CredentialProviderRequest on stdin, the response on stdout
  %[1]s doctor [flags] [--image REF] [--kubelet-config FILE] [--bin-dir DIR] [-o text|json]
      check configuration, identity, token, registry access, kubelet config and clock
  %[1]s install --bin-dir DIR --config FILE [flags]
      put the binary and a kubelet CredentialProviderConfig on the host
      (and optionally an API key file and the kubelet's flags)
  %[1]s uninstall --bin-dir DIR --config FILE [flags]
      remove exactly what install wrote, the kubelet's flags included
  %[1]s credential-helper get|list|store|erase
      Docker credential helper (also when installed as docker-credential-icr)
  %[1]s version [--short]
      print the version

Every flag also reads ICR_<FLAG NAME IN UPPER SNAKE CASE> (e.g. --iam-url: ICR_IAM_URL);
an explicit flag wins. An API key is also read from IBMCLOUD_API_KEY.

Flags:
%[2]s`, name, config.FlagUsages(fs))
}
