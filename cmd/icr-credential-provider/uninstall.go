package main

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// cmdUninstall removes exactly what install wrote: the kubelet wiring
// (every host file back to its bytes before install, the kubelet restarted
// if that changed anything), then the credential helper link, the config,
// the API key file it names and the binary, each only if install wrote it.
func cmdUninstall(e env, args []string) int {
	var hf hostFlags
	fs, format, help := newFlagSet("uninstall", e)
	binDir := fs.String("bin-dir", "", "the --bin-dir given to install")
	cfgPath := fs.String("config", "", "the --config given to install")
	helperDir := fs.String("credential-helper", "", "the --credential-helper given to install: its docker-credential-icr link is removed if it points at the installed binary")
	helperTarget := fs.String("credential-helper-target", "", "the --credential-helper-target given to install, if any")
	force := fs.Bool("force", false, "also remove files install did not write (a config without its first line, a binary that is not a build of icr-credential-provider, a link elsewhere), put back a host file edited since install wired it, and remove the files although the kubelet still uses them")
	hf.add(fs)
	if err := parse(fs, args, e); err != nil {
		return fail(e, err)
	}
	if *help {
		fmt.Fprintf(e.stdout, uninstallUsage, name, installer.DefaultName, installer.StatePath, config.FlagUsages(fs))
		return 0
	}
	if err := setupLogging(e.stderr, *format); err != nil {
		return fail(e, err)
	}
	host, hostBinDir, hostCfg, err := installer.Paths(hf.root, *binDir, *cfgPath)
	if err != nil {
		return fail(e, err)
	}
	exe, _ := os.Executable()
	targets := []string{path.Join(hostBinDir, installer.DefaultName), filepath.Join(*binDir, installer.DefaultName)}
	if *helperTarget != "" {
		targets = append(targets, *helperTarget)
	}

	// Everything is checked before anything changes.
	removal, err := installer.PlanRemove(installer.RemoveOptions{
		BinDir: *binDir, ConfigPath: *cfgPath, Executable: exe, Host: host,
		HelperDir: *helperDir, HelperTargets: targets, Force: *force,
	})
	if err != nil {
		return fail(e, err)
	}
	w, err := hf.wiring(host, "", *force, hostCfg, hostBinDir)
	if err != nil {
		return fail(e, err)
	}
	plan, err := installer.PlanUninstall(w)
	if err != nil {
		return fail(e, err)
	}
	var done []string // what changed, for an interruption's report
	ctx, cancel, failed := interruptible(e, "uninstall", &done)
	defer cancel()
	if !plan.Changed() && removal.Empty() {
		// A state whose files are all back already goes quietly.
		if _, err := plan.Apply(ctx); err != nil {
			return failed(err)
		}
		fmt.Fprintf(e.stdout, "nothing to do: no file of install's in %s, %s or %s, and no kubelet wiring recorded in %s\n",
			*binDir, *cfgPath, cmp.Or(*helperDir, "no --credential-helper"), host.Path(installer.StatePath))
		return 0
	}

	wr, err := plan.Apply(ctx)
	if err != nil {
		return failed(err)
	}
	for _, f := range wr.Files {
		done = append(done, f.Path+" "+string(f.Action))
	}
	printWiring(e.stdout, wr)
	// The kubelet must no longer need the files: one that still names the
	// config would not start again without the binary.
	if still := installer.StillWired(w, hostCfg); len(still) > 0 && !*force && !removal.Empty() {
		return fail(e, fmt.Errorf("%s, set by something other than 'install --configure-kubelet': remove that setting and restart the kubelet, then run uninstall again (or give --force to remove the files anyway)", still[0]))
	}
	if ctx.Err() != nil {
		return failed(nil)
	}
	removed, err := removal.Apply()
	for _, f := range removed {
		// A path named by the config (the key file) is shown escaped.
		fmt.Fprintf(e.stdout, "%s: %s\n", secret.Printable(f.Path), f.Action)
	}
	if err != nil {
		return fail(e, err)
	}
	return 0
}

const uninstallUsage = `Usage:
  %[1]s uninstall --bin-dir DIR --config FILE [--credential-helper DIR]
      [--host-root DIR] [--force]

Removes exactly what install wrote, in this order:
  1. the kubelet wiring recorded in %[3]s
     (under --host-root): every host file back to its bytes before install
     (or removed, if install created it);
     the kubelet restarted if that changed anything, then checked healthy
     (if it was healthy before and is not after, the wiring is put back and
     the kubelet restarted again);
  2. the docker-credential-icr link in --credential-helper, if it points at
     the installed binary;
  3. FILE, if its first line is the installer's, and the API key file it
     names as written by install (--api-key-from);
  4. DIR/%[2]s, if it is a build of icr-credential-provider.
A file install did not write, or a host file edited since install wired it,
stops uninstall before anything changes (one line naming it) unless --force.
So does a kubelet still told to use FILE by a setting install did not make.
A second run finds nothing and says so.

Flags:
%[4]s`
