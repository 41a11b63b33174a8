package installer

import (
	"strings"

	"github.com/spf13/pflag"
	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// Settings turns the plugin flags given to install (on the command line or
// through ICR_* variables) into the config's env entries, after checking
// that they make sense on their own: the plugin reads them later, on the
// node, where a mistake would only show as ImagePullBackOff. fs holds exactly
// the flags of config.Config.AddFlags, bound to cfg.
//
// It also returns the extra matchImages for --registries: the kubelet runs
// the plugin only for images its matchImages cover.
func Settings(fs *pflag.FlagSet, cfg *config.Config) ([]kubeletv1.ExecEnvVar, []string, error) {
	// The plugin's own rules, with the environment the config gives it: the
	// config never carries $IBMCLOUD_API_KEY, so an API key must be a file.
	if _, err := cfg.Select(func(string) string { return "" }); err != nil {
		return nil, nil, err
	}

	var env []kubeletv1.ExecEnvVar
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		v := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		if strings.TrimSpace(v) == "" {
			return // given but empty (e.g. ICR_PROFILE_ID=""): the plugin's default
		}
		env = append(env, kubeletv1.ExecEnvVar{Name: config.EnvName(f.Name), Value: v})
	})
	var extra []string
	for _, r := range cfg.Registries {
		if r = strings.ToLower(strings.TrimSpace(r)); r != "" {
			extra = append(extra, r)
		}
	}
	return env, extra, nil
}
