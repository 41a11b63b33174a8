package installer

import (
	"strings"

	"github.com/spf13/pflag"
	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/config"
)

// Settings turns the plugin flags given to install (fs: exactly those of
// config.Config.AddFlags, bound to cfg) into the config's env entries, after
// checking them: on the node a mistake would only show as ImagePullBackOff.
// It also returns the extra matchImages that --registries needs.
func Settings(fs *pflag.FlagSet, cfg *config.Config) ([]kubeletv1.ExecEnvVar, []string, error) {
	// The plugin's own rules, without $IBMCLOUD_API_KEY (never in the config).
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
