package installer

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
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
	if _, err := cfg.Profile(); err != nil {
		return nil, nil, err
	}
	profile := strings.TrimSpace(cfg.ProfileID+cfg.ProfileCRN+cfg.ProfileName) != ""
	mode := strings.ToLower(strings.TrimSpace(cfg.TokenSource))
	switch mode {
	case "", config.SourceAuto, config.SourceAPIKey, config.SourceVPCMetadata:
	default:
		return nil, nil, fmt.Errorf("--token-source %q is not one of auto, vpc-metadata, api-key", cfg.TokenSource)
	}
	keyFile := strings.TrimSpace(cfg.APIKeyFile)
	switch {
	case keyFile != "" && !filepath.IsAbs(keyFile):
		return nil, nil, fmt.Errorf("--api-key-file %q is relative: give the absolute path of the key file on the node", cfg.APIKeyFile)
	case keyFile != "" && profile:
		return nil, nil, errors.New("--api-key-file and --profile-id/--profile-crn/--profile-name select two identities: keep the API key file, or the trusted profile (VPC metadata), not both")
	case keyFile != "" && mode == config.SourceVPCMetadata:
		return nil, nil, errors.New("--api-key-file is never used with --token-source vpc-metadata: remove one of them")
	case keyFile == "" && mode == config.SourceAPIKey:
		return nil, nil, errors.New("--token-source api-key needs --api-key-file: give the path of the key file on the node (the config never holds the key itself)")
	case profile && mode == config.SourceAPIKey:
		return nil, nil, errors.New("--profile-id/--profile-crn/--profile-name select a trusted profile for the VPC metadata identity, not for --token-source api-key: remove one of them")
	}
	if dir := strings.TrimSpace(cfg.CacheDir); dir != "" && !strings.EqualFold(dir, config.CacheDisabled) && !filepath.IsAbs(dir) {
		return nil, nil, fmt.Errorf("--cache-dir %q is relative: give an absolute path on the node, or %q", cfg.CacheDir, config.CacheDisabled)
	}
	for _, f := range []struct{ name, value string }{{"iam-url", cfg.IAMURL}, {"metadata-url", cfg.MetadataURL}} {
		if f.value == "" {
			continue
		}
		if u, err := url.Parse(f.value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, nil, fmt.Errorf("--%s %q is not an http(s) URL: give e.g. https://host", f.name, f.value)
		}
	}
	if _, err := cfg.Hosts(); err != nil {
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
