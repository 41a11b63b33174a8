package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/doctor"
)

// doctorTimeout bounds a whole doctor run; checks have shorter bounds.
const doctorTimeout = 90 * time.Second

// cmdDoctor explains what works and what does not, with remedies (see
// docs/troubleshooting.md); exit code 1 if a check failed or on misuse.
func cmdDoctor(e env, args []string) int {
	var cfg config.Config
	fs, format, help := newFlagSet("doctor", e)
	settings := pflag.NewFlagSet("settings", pflag.ContinueOnError) // the plugin's, not doctor's own
	cfg.AddFlags(settings)
	fs.AddFlagSet(settings)
	image := fs.String("image", "", "image to check a pull of (HOST/NAMESPACE/REPOSITORY[:TAG]); without it only the registry's authentication at icr.io is checked")
	kubeletConfig := fs.String("kubelet-config", "", "the kubelet's CredentialProviderConfig file (default: the running kubelet's --image-credential-provider-config, else the common paths)")
	binDir := fs.String("bin-dir", "", "the kubelet's --image-credential-provider-bin-dir (default: the running kubelet's, else the common dirs such as /usr/local/bin)")
	output := fs.StringP("output", "o", "text", "output format: text or json")

	if err := fs.Parse(args); err != nil {
		return fail(e, fmt.Errorf("%v: see '%s doctor --help'", err, name))
	}
	if fs.NArg() > 0 {
		return fail(e, fmt.Errorf("unexpected argument %q: see '%s doctor --help'", fs.Arg(0), name))
	}
	// Where each setting came from: ApplyEnv sets those not given from their variables.
	origins := map[string]string{}
	settings.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			origins[f.Name] = "flag"
		} else if _, ok := e.lookup(config.EnvName(f.Name)); ok {
			origins[f.Name] = "env " + config.EnvName(f.Name)
		}
	})
	if err := config.ApplyEnv(fs, e.lookup); err != nil {
		return fail(e, err)
	}
	if *help {
		fmt.Fprintf(e.stdout, `%s doctor: check, from this node, every link image pulls from IBM Cloud Container Registry depend on,
and say what to do about each broken one. Exit code 1 when any check fails.

Usage:
  %s doctor [identity flags as in kubelet mode] [--image REF] [--kubelet-config FILE] [--bin-dir DIR] [--output text|json]

Run it as root with the settings the kubelet config's env: passes to the plugin.
See docs/troubleshooting.md.

Flags:
%s`, name, name, config.FlagUsages(fs))
		return 0
	}
	if *output != "text" && *output != "json" {
		return fail(e, fmt.Errorf("--output %q is not text or json", *output))
	}
	if err := setupLogging(e.stderr, *format); err != nil {
		return fail(e, err)
	}

	ctx, cancel := commandContext(doctorTimeout)
	defer cancel()

	env := doctor.Env{Config: cfg, Getenv: e.getenv, Origins: origins, Euid: os.Geteuid(),
		Image: *image, KubeletConfig: *kubeletConfig, BinDir: *binDir}
	// Without an image, check icr.io and the first extra registries.
	if *image == "" {
		env.RegistryHosts = append(slices.Clone(doctor.DefaultRegistryHosts), cfg.Registries[:min(3, len(cfg.Registries))]...)
	}
	rep := doctor.Run(ctx, env)
	write := rep.WriteText
	if *output == "json" {
		write = rep.WriteJSON
	}
	if err := write(e.stdout); err != nil {
		return fail(e, err)
	}
	if !rep.OK {
		return 1
	}
	return 0
}
