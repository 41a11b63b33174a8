package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

// cmdInstall puts this executable and a kubelet CredentialProviderConfig on
// the node: `install --bin-dir DIR --config FILE [plugin flags] [--force]`.
// The plugin flags (and their ICR_* variables) given here become the
// config's env entries.
func cmdInstall(e env, args []string) int {
	var cfg config.Config
	fs, format := newFlagSet("install", e)
	plugin := pflag.NewFlagSet("plugin", pflag.ContinueOnError)
	cfg.AddFlags(plugin)
	fs.AddFlagSet(plugin)
	binDir := fs.String("bin-dir", "", "directory to install the binary into: the kubelet's --image-credential-provider-bin-dir (must exist)")
	cfgPath := fs.String("config", "", "CredentialProviderConfig file to write: the kubelet's --image-credential-provider-config (its directory must exist)")
	force := fs.Bool("force", false, "replace a config not written by install, a symbolic link in place of the binary or the config, or a regular file in place of the credential helper link")
	saTokens := fs.Bool("service-account-tokens", false, "service-account mode: the kubelet passes the pod's service-account token (audience iam) and the trusted-profile annotations (kubelet 1.34+)")
	helperDir := fs.String("credential-helper", "", "also place the docker-credential-icr link in this directory (on the PATH of docker, nerdctl, podman, crane, …)")
	helperTarget := fs.String("credential-helper-target", "", "the path the link points at, when the installer sees the bin dir under another path than the host does (default: the installed binary's path)")
	help := fs.BoolP("help", "h", false, "show this help")
	if err := parse(fs, args, e); err != nil {
		return fail(e, err)
	}
	if *help {
		fmt.Fprintf(e.stdout, `Usage:
  %s install --bin-dir DIR --config FILE [plugin flags] [--force]

Copies this executable to DIR/%s and writes FILE, a kubelet
CredentialProviderConfig whose env entries carry the plugin flags given here
(or their ICR_* variables). Files are replaced atomically and only when their
content changes; the new binary is run ('version --short') before it is moved
into place. A FILE not written by install is replaced only with --force.

Flags:
%s`, name, installer.DefaultName, fs.FlagUsages())
		return 0
	}
	if err := setupLogging(e, *format); err != nil {
		return fail(e, err)
	}

	envVars, extra, err := installer.Settings(plugin, &cfg)
	if err != nil {
		return fail(e, err)
	}
	p := installer.Provider{Env: envVars, Args: loggingArgs(fs)}
	if len(extra) > 0 {
		p.MatchImages = append(installer.DefaultMatchImages(), extra...)
	}
	if *saTokens {
		p.TokenAttributes = installer.ServiceAccountTokenAttributes()
	}
	// The link's target is the installed binary unless given; checked
	// before anything changes.
	helperLinkTarget := *helperTarget
	if helperLinkTarget == "" && *binDir != "" {
		helperLinkTarget = filepath.Join(*binDir, installer.DefaultName)
	}
	if *helperDir != "" {
		if *helperTarget != "" && !filepath.IsAbs(*helperTarget) {
			return fail(e, fmt.Errorf("--credential-helper-target %s is a relative path: give the binary's absolute path as the host sees it", *helperTarget))
		}
		// A relative default comes from a relative --bin-dir: Install refuses it.
		if filepath.IsAbs(helperLinkTarget) {
			if err := credhelper.CheckLink(helperLinkTarget, *helperDir, *force); err != nil {
				return fail(e, err)
			}
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return fail(e, fmt.Errorf("cannot find this executable to install it: %v", err))
	}

	ctx, cancel := commandContext(0)
	defer cancel()
	res, err := installer.Install(ctx, installer.Options{
		Executable: exe,
		BinDir:     *binDir,
		ConfigPath: *cfgPath,
		Provider:   p,
		Force:      *force,
		Verify:     installer.VersionCheck(version.Get().GitVersion),
	})
	if err != nil {
		return fail(e, err)
	}
	fmt.Fprintf(e.stdout, "binary %s: %s\nconfig %s: %s\n", res.BinaryPath, res.Binary, res.ConfigPath, res.Config)
	if *helperDir != "" {
		if err := credhelper.InstallLink(helperLinkTarget, *helperDir, *force); err != nil {
			return fail(e, err)
		}
		fmt.Fprintf(e.stdout, "credential helper %s -> %s\n", filepath.Join(*helperDir, credhelper.LinkName), helperLinkTarget)
	}
	return 0
}

// loggingArgs are the logging flags given to install (or their ICR_*
// variables), as the plugin's args: the plugin then logs as asked.
func loggingArgs(fs *pflag.FlagSet) []string {
	var args []string
	for _, n := range []string{"v", "vmodule", "logging-format"} {
		if f := fs.Lookup(n); f != nil && f.Changed && f.Value.String() != "" {
			args = append(args, "--"+n+"="+f.Value.String())
		}
	}
	return args
}
