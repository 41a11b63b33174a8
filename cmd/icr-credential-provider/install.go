package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// hostFlags are the flags install and uninstall share to reach the host
// and its kubelet.
type hostFlags struct {
	root, systemctl, healthz string
	timeout                  time.Duration
}

func (h *hostFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&h.root, "host-root", "/", "where the host's / is mounted (a hostPath volume of path /): --bin-dir, --config and --credential-helper are given under it, the kubelet is told the paths as the host sees them")
	fs.StringVar(&h.systemctl, "systemctl", "", "command that runs the host's systemctl, split at blanks (default: "+fmt.Sprint(installer.DefaultSystemctl)+", which needs hostPID; an nsenter missing from the image is taken from --host-root)")
	fs.StringVar(&h.healthz, "kubelet-healthz", installer.DefaultHealthzURL, "the kubelet's health endpoint, checked before and after a restart (needs hostNetwork)")
	fs.DurationVar(&h.timeout, "kubelet-timeout", installer.DefaultKubeletTimeout, "how long the kubelet may take to become healthy after a restart before the wiring is rolled back")
}

// wiring returns the Wiring of these flags for the kubelet flags' values
// config and binDir.
func (h *hostFlags) wiring(host installer.Host, layout installer.Layout, force bool, config, binDir string) (installer.Wiring, error) {
	sd, err := installer.NewSystemctl(h.systemctl, host.Root)
	if err != nil {
		return installer.Wiring{}, err
	}
	return installer.Wiring{Host: host, Layout: layout, Config: config, BinDir: binDir, Force: force, Systemd: sd,
		Health: installer.Health{URL: h.healthz, Timeout: h.timeout}}, nil
}

// cmdInstall puts this executable and a kubelet CredentialProviderConfig on
// the node, optionally an API key file and the kubelet's flags. The plugin
// flags (and their ICR_* variables) given here become the config's env
// entries, the logging flags its args.
func cmdInstall(e env, args []string) int {
	var cfg config.Config
	var hf hostFlags
	fs, format, help := newFlagSet("install", e)
	plugin := pflag.NewFlagSet("plugin", pflag.ContinueOnError)
	cfg.AddFlags(plugin)
	fs.AddFlagSet(plugin)
	binDir := fs.String("bin-dir", "", "directory to install the binary into: the kubelet's --image-credential-provider-bin-dir (must exist)")
	cfgPath := fs.String("config", "", "CredentialProviderConfig file to write: the kubelet's --image-credential-provider-config (its directory must exist)")
	force := fs.Bool("force", false, "replace a config not written by install, a symbolic link in place of the binary or the config, or a regular file in place of the credential helper link; override kubelet flags set elsewhere to other paths (never: write where another user can change a file)")
	saTokens := fs.Bool("service-account-tokens", false, "service-account mode: the kubelet passes the pod's service-account token (audience iam) and the trusted-profile annotations (kubelet 1.34+)")
	helperDir := fs.String("credential-helper", "", "also place the docker-credential-icr link in this directory (on the PATH of docker, nerdctl, podman, crane, …)")
	helperTarget := fs.String("credential-helper-target", "", "the path the link points at (default: the installed binary's path as the host sees it)")
	apiKeyFrom := fs.String("api-key-from", "", "file holding an IAM API key to put on the node, e.g. a mounted Secret's key; the config then references the copy (ICR_API_KEY_FILE), never the key")
	apiKeyTo := fs.String("api-key-to", "", "where --api-key-from's key goes, as the host sees it, mode 0600 (default: apikey beside --config)")
	layoutFlag := fs.String("configure-kubelet", "none", "add the kubelet's --image-credential-provider-config and -bin-dir flags the way the node's distribution expects, and restart the kubelet: auto, kubeadm, k3s, rke2 or none")
	hf.add(fs)
	printMC := fs.Bool("print-machineconfig", false, "print an OpenShift MachineConfig that adds the kubelet flags, and change nothing")
	mcPool := fs.String("machineconfig-pool", "worker", "the MachineConfigPool (role) the printed MachineConfig is for")
	if err := parse(fs, args, e); err != nil {
		return fail(e, err)
	}
	if *help {
		fmt.Fprintf(e.stdout, installUsage, name, installer.DefaultName, installer.StatePath, config.FlagUsages(fs))
		return 0
	}
	if err := setupLogging(e.stderr, *format); err != nil {
		return fail(e, err)
	}
	layout, err := installer.ParseLayout(*layoutFlag)
	if err != nil {
		return fail(e, err)
	}
	host, hostBinDir, hostCfg, err := installer.Paths(hf.root, *binDir, *cfgPath)
	if err != nil {
		return fail(e, err)
	}
	if *printMC {
		mc, err := installer.MachineConfig(*mcPool, hostCfg, hostBinDir)
		if err != nil {
			return fail(e, err)
		}
		_, _ = e.stdout.Write(mc)
		return 0
	}
	var done []string // what changed, for an interruption's report
	ctx, cancel, failed := interruptible(e, "install", &done)
	defer cancel()

	exe, err := os.Executable()
	if err != nil {
		return fail(e, fmt.Errorf("cannot find this executable to install it: %v", err))
	}
	opts := installer.Options{Executable: exe, BinDir: *binDir, ConfigPath: *cfgPath, Force: *force,
		Verify: installer.VersionCheck(version.Get().GitVersion)}
	// Everything is checked before anything changes: the key file's place,
	// the binary's and the config's, the link's and the kubelet wiring's,
	// and that no two of them are one file.
	targets := []installer.Target{{What: "the binary", Path: filepath.Join(*binDir, installer.DefaultName)}, {What: "--config", Path: *cfgPath}}

	var key, keyHost string
	if *apiKeyFrom != "" {
		if plugin.Changed("api-key-file") {
			return fail(e, fmt.Errorf("--api-key-from and --api-key-file are both given: --api-key-from writes the key file and points the config at it; give one"))
		}
		if secret.Printable(*apiKeyFrom) != *apiKeyFrom {
			return fail(e, fmt.Errorf("--api-key-from %q has a control or invisible character: give the path without it", *apiKeyFrom))
		}
		keyHost = cmp.Or(*apiKeyTo, path.Join(path.Dir(hostCfg), "apikey"))
		if err := hostPathArg("--api-key-to", keyHost, "the key file's"); err != nil {
			return fail(e, err)
		}
		if key, err = installer.CheckAPIKey(*apiKeyFrom, host.Path(keyHost)); err != nil {
			return failed(err)
		}
		targets = append(targets, installer.Target{What: "the API key file", Path: host.Path(keyHost)})
		if err := plugin.Set("api-key-file", keyHost); err != nil {
			return fail(e, err)
		}
	}

	envVars, extra, err := installer.Settings(plugin, &cfg)
	if err != nil {
		return fail(e, err)
	}
	opts.Provider = installer.Provider{Env: envVars, Args: loggingArgs(fs), APIKeyFileWritten: keyHost}
	if len(extra) > 0 {
		opts.Provider.MatchImages = append(installer.DefaultMatchImages(), extra...)
	}
	if *saTokens {
		opts.Provider.TokenAttributes = installer.ServiceAccountTokenAttributes()
	}
	if err := installer.Check(opts); err != nil {
		return failed(err)
	}

	helperLinkTarget := cmp.Or(*helperTarget, path.Join(hostBinDir, installer.DefaultName))
	link := filepath.Join(*helperDir, credhelper.LinkName)
	if *helperDir != "" {
		if err := installer.PathArg("--credential-helper", *helperDir); err != nil {
			return fail(e, err)
		}
		if err := hostPathArg("--credential-helper-target", helperLinkTarget, "the binary's"); err != nil {
			return fail(e, err)
		}
		if err := credhelper.CheckLink(helperLinkTarget, *helperDir, *force); err != nil {
			return failed(err)
		}
		targets = append(targets, installer.Target{What: "the credential helper link", Path: link})
	}
	var plan *installer.Plan
	if layout != installer.LayoutNone {
		w, err := hf.wiring(host, layout, *force, hostCfg, hostBinDir)
		if err != nil {
			return fail(e, err)
		}
		if plan, err = installer.PlanInstall(w); err != nil {
			return failed(err)
		}
		targets = append(targets, plan.Targets()...)
	}
	if err := installer.Distinct(targets...); err != nil {
		return fail(e, err)
	}
	if plan != nil {
		if err := plan.CheckHealthy(ctx); err != nil {
			return failed(err)
		}
	}

	res, err := installer.Install(ctx, opts)
	done = appendChanged(done, "binary "+res.BinaryPath, res.Binary)
	done = appendChanged(done, "config "+res.ConfigPath, res.Config)
	if err != nil {
		return failed(err)
	}
	fmt.Fprintf(e.stdout, "binary %s: %s\nconfig %s: %s\n", res.BinaryPath, res.Binary, res.ConfigPath, res.Config)
	if key != "" {
		if ctx.Err() != nil {
			return failed(nil)
		}
		a, err := installer.WriteAPIKey(key, host.Path(keyHost))
		if err != nil {
			return failed(err)
		}
		done = appendChanged(done, "API key file "+host.Path(keyHost), a)
		fmt.Fprintf(e.stdout, "API key file %s: %s\n", host.Path(keyHost), a)
	}
	if *helperDir != "" {
		if ctx.Err() != nil {
			return failed(nil)
		}
		if err := credhelper.PlaceLink(helperLinkTarget, *helperDir, *force); err != nil {
			return failed(err)
		}
		done = append(done, "credential helper link "+link+" placed")
		fmt.Fprintf(e.stdout, "credential helper %s -> %s\n", link, helperLinkTarget)
	}
	if plan != nil {
		if ctx.Err() != nil {
			return failed(nil)
		}
		wr, err := plan.Apply(ctx)
		if err != nil {
			return failed(fmt.Errorf("kubelet wiring: %w", err))
		}
		printWiring(e.stdout, wr)
	}
	return 0
}

// hostPathArg is installer.PathArg for a path as the host sees it (what
// names the file it is).
func hostPathArg(flag, p, what string) error {
	if secret.Printable(p) == p && !path.IsAbs(p) {
		return fmt.Errorf("%s %s is a relative path: give %s absolute path as the host sees it", flag, p, what)
	}
	return installer.PathArg(flag, p)
}

// appendChanged adds "what action" to done if a changed something.
func appendChanged(done []string, what string, a installer.Action) []string {
	if a == installer.Created || a == installer.Updated || a == installer.Removed {
		return append(done, what+" "+string(a))
	}
	return done
}

// interruptible returns the context of a command that changes the host
// and its failure, which reports a SIGTERM or SIGINT (the DaemonSet's pod
// deleted) not as a failure of the step it stopped but truthfully: what
// done lists as changed, or nothing; and, when the step says more than
// that it was interrupted (a rollback), what it says.
func interruptible(e env, cmd string, done *[]string) (context.Context, context.CancelFunc, func(error) int) {
	ctx, cancel := signalContext()
	return ctx, cancel, func(err error) int {
		if ctx.Err() == nil {
			return fail(e, err)
		}
		what := "nothing changed"
		if len(*done) > 0 {
			what = strings.Join(*done, ", ") + "; nothing else changed"
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			what += " (" + err.Error() + ")"
		}
		return fail(e, fmt.Errorf("%s interrupted by %s: %s: run %s again", cmd, context.Cause(ctx), what, cmd))
	}
}

// printWiring reports what the kubelet wiring did.
func printWiring(w io.Writer, r installer.WiringResult) {
	if r.Layout == "" {
		return
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "kubelet wiring (%s): note: %s\n", r.Layout, n)
	}
	for _, f := range r.Files {
		fmt.Fprintf(w, "kubelet wiring (%s): %s: %s\n", r.Layout, f.Path, f.Action)
	}
	switch {
	case r.Restarted:
		fmt.Fprintf(w, "kubelet wiring (%s): %s restarted, healthy\n", r.Layout, r.Unit)
	case len(r.Files) == 0:
		fmt.Fprintf(w, "kubelet wiring (%s): unchanged\n", r.Layout)
	}
}

// loggingArgs are the logging flags given to install (or their ICR_*
// variables), as the plugin's args: the plugin then logs as asked.
func loggingArgs(fs *pflag.FlagSet) []string {
	var args []string
	for _, n := range []string{"v", "vmodule", "logging-format"} {
		if f := fs.Lookup(n); f.Changed && f.Value.String() != "" {
			args = append(args, "--"+n+"="+f.Value.String())
		}
	}
	return args
}

const installUsage = `Usage:
  %[1]s install --bin-dir DIR --config FILE [plugin flags] [--force]
      [--api-key-from FILE [--api-key-to PATH]] [--credential-helper DIR]
      [--configure-kubelet auto|kubeadm|k3s|rke2|none] [--host-root DIR]
  %[1]s install --print-machineconfig [--machineconfig-pool POOL] --bin-dir DIR --config FILE [--host-root DIR]

Copies this executable to DIR/%[2]s and writes FILE, a kubelet
CredentialProviderConfig whose env entries carry the plugin flags given here
(or their ICR_* variables) and whose args carry -v, --vmodule and
--logging-format. Files are replaced atomically and only when their content
changes; the new binary is run ('version --short') before it is moved into
place. A FILE not written by install is replaced only with --force.

Install runs as root: it writes only where nobody but root can change a
file (every directory on the way owned by root and not writable by group or
others, unless sticky like /tmp; the files it replaces too), and refuses
anything else with the fix, before it writes anything; --force does not
override this.

--api-key-from FILE copies the API key in FILE (a mounted Secret's key) to a
root-only file on the node and points the config at it (ICR_API_KEY_FILE);
the key itself is never written anywhere else.

--configure-kubelet adds --image-credential-provider-config=FILE and
--image-credential-provider-bin-dir=DIR (as the host sees them) where the
node's distribution expects kubelet flags, and restarts the kubelet only if
that changed something: kubeadm, in KUBELET_EXTRA_ARGS of /etc/default/kubelet
or /etc/sysconfig/kubelet; k3s and RKE2, in
/etc/rancher/{k3s,rke2}/config.yaml.d/90-icr-credential-provider.yaml. The
previous content of the host file is kept for uninstall in
%[3]s (under --host-root).
A kubelet that is not healthy within --kubelet-timeout after the restart
gets its previous wiring back and is restarted again. Kubelet flags already
set elsewhere to other paths are reported and overridden only with --force.
From a pod: hostPID, hostNetwork, the host's / mounted at --host-root,
privileged (nsenter into the host's init).

--print-machineconfig prints an OpenShift MachineConfig for oc apply
instead: on OpenShift the Machine Config Operator owns the kubelet's unit.

Flags:
%[4]s`
