package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/credhelper"
)

// cmdCredentialHelper is the Docker credential-helper protocol:
// `credential-helper <action>`, or the binary run as docker-credential-icr,
// with kubelet mode's settings (from ICR_ variables: clients pass no flags),
// cache and hosts. As in docker-credential-helpers: 0 and the answer on
// stdout, or 1 and the error message on stdout; a failure other than "not
// found" is also the usual line on stderr, which reaches the user.
func cmdCredentialHelper(e env, args []string) int {
	cfg := config.Config{Memory: e.memory}
	fs, format, help := newFlagSet(credhelper.LinkName, e)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return helperFail(e, fmt.Errorf("%v: see '%s credential-helper --help'", err, name))
	}
	if *help {
		helperUsage(e, fs)
		return 0
	}
	if err := config.ApplyEnv(fs, e.lookup); err != nil {
		return helperFail(e, err)
	}
	if fs.NArg() != 1 {
		msg := "no action given"
		if fs.NArg() > 1 {
			msg = fmt.Sprintf("one action expected, got %d arguments", fs.NArg())
		}
		return helperFail(e, fmt.Errorf("%s: usage: %s <%s>, or %s credential-helper <%s>", msg, credhelper.LinkName, credhelper.Actions, name, credhelper.Actions))
	}
	action := fs.Arg(0)
	if err := setupLogging(e.stderr, *format); err != nil {
		return helperFail(e, err)
	}
	defer klog.Flush()
	if !fs.Changed("cache-dir") {
		dir, why := config.HelperCacheDir(os.Geteuid(), e.getenv)
		cfg.CacheDir = dir
		klog.V(2).InfoS("Token cache directory", "dir", dir, "why", why)
	}

	ctx, cancel := commandContext(invocationTimeout)
	defer cancel()

	hosts, err := cfg.Hosts()
	if err != nil {
		return helperFail(e, err)
	}
	h := &credhelper.Helper{
		Hosts:   hosts,
		Version: version.Get().GitVersion,
		Warn:    func(msg string) { klog.Warning(msg) },
		Token:   cfg.NodeSource(e.getenv), // resolved only for a served host
	}
	err = h.Run(ctx, action, e.stdin, e.stdout)
	if err == nil {
		return 0
	}
	var pe *credhelper.ProtocolError
	if errors.As(err, &pe) {
		// The exact message is the answer; clients compare it.
		fmt.Fprintln(e.stdout, pe.Message)
		if pe.Hint != "" {
			fmt.Fprintf(e.stderr, "%s: %s: %s\n", name, pe.Message, pe.Hint)
		} else {
			klog.V(2).InfoS("Not served", "action", action)
		}
		return 1
	}
	return helperFail(e, err)
}

// helperFail is fail for the credential-helper protocol: the same line on
// stderr and on stdout, where the protocol's clients read errors.
func helperFail(e env, err error) int {
	var line strings.Builder
	code := fail(env{stderr: &line}, err)
	fmt.Fprint(e.stdout, line.String())
	fmt.Fprint(e.stderr, line.String())
	return code
}

func helperUsage(e env, fs *pflag.FlagSet) {
	fmt.Fprintf(e.stdout, `%s credential-helper: Docker credential helper for IBM Cloud Container Registry.

Usage:
  %s <%s>
  %s credential-helper [flags] <%s>

  get      read a server URL on stdin, print {"ServerURL","Username":"iambearer","Secret":<IAM token>};
           a registry that is not served gets "%s" (exit 1)
  list     print the served hosts as {"host":"iambearer",...}
  store    read a credential on stdin and keep nothing (tokens are minted, not stored)
  erase    read a server URL on stdin and remove nothing
  version  print the version

Configure it with the ICR_ environment variables (clients run it without flags):
ICR_PROFILE_ID, ICR_API_KEY_FILE or IBMCLOUD_API_KEY, ICR_REGISTRIES, ICR_CACHE_DIR, ...
The token cache defaults to %s as root, else $XDG_RUNTIME_DIR/icr-credential-provider,
else icr-credential-provider under the user's cache directory.

Flags:
%s`, name, credhelper.LinkName, credhelper.Actions, name, credhelper.Actions, credhelper.NotFoundMessage, config.DefaultCacheDir, config.FlagUsages(fs))
}
