package config

import (
	"io"

	"github.com/spf13/pflag"
)

// loggingFlags are the plugin's flags that are not settings: the kubelet
// config may pass them (args), and FromPluginArgs ignores them.
var loggingFlags = []string{"v", "vmodule", "logging-format"}

// FromPluginArgs returns the settings of a plugin run with args and env
// (what the kubelet config's provider entry gives it), as the plugin reads
// them: flags first, then ICR_* variables for flags not given. The node
// agent uses it to act with exactly the plugin's settings.
func FromPluginArgs(args []string, env map[string]string) (*Config, error) {
	c := &Config{}
	fs := pflag.NewFlagSet("icr-credential-provider", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.AddFlags(fs)
	for _, name := range loggingFlags {
		fs.String(name, "", "")
	}
	if err := fs.Parse(args); err != nil {
		return nil, &Error{Cause: "the plugin's args " + err.Error(), Fix: "fix the provider's args in the kubelet config (run 'icr-credential-provider install' again)"}
	}
	if err := ApplyEnv(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		return nil, err
	}
	return c, c.Validate()
}
