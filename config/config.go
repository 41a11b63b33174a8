// Package config turns the command line and the environment into the
// plugin's settings, and settings into a token source. Every flag also reads
// ICR_ + its name in upper snake case; an explicit flag wins.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "ICR_"

// APIKeyEnv is the conventional IBM Cloud variable for an API key; read when
// no API key file is configured.
const APIKeyEnv = "IBMCLOUD_API_KEY"

// DefaultCacheDir is on tmpfs on systemd hosts: tokens vanish at reboot.
const DefaultCacheDir = "/run/icr-credential-provider"

// CacheDisabled as --cache-dir turns the disk cache off.
const CacheDisabled = "none"

// Token source names for --token-source.
const (
	SourceAuto        = "auto"
	SourceVPCMetadata = "vpc-metadata"
	SourceAPIKey      = "api-key"
)

// Config holds the settings shared by every sub-command.
type Config struct {
	IAMURL           string
	PrivateEndpoints bool
	MetadataURL      string
	ProfileID        string
	ProfileCRN       string
	ProfileName      string
	APIKeyFile       string
	TokenSource      string
	CacheDir         string
	Registries       []string
}

// AddFlags registers the settings on fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.IAMURL, "iam-url", "", "IAM base URL (default "+iam.DefaultIAMURL+", or "+iam.PrivateIAMURL+" with --private-endpoints)")
	fs.BoolVar(&c.PrivateEndpoints, "private-endpoints", false, "use IAM's private endpoint "+iam.PrivateIAMURL+" unless --iam-url is set")
	fs.StringVar(&c.MetadataURL, "metadata-url", iam.DefaultMetadataURL, "VPC instance metadata service base URL")
	fs.StringVar(&c.ProfileID, "profile-id", "", "trusted profile ID the node identity assumes (none: the instance's default trusted profile)")
	fs.StringVar(&c.ProfileCRN, "profile-crn", "", "trusted profile CRN the node identity assumes")
	fs.StringVar(&c.ProfileName, "profile-name", "", "trusted profile name the node identity assumes")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file holding an IAM API key (else $"+APIKeyEnv+")")
	fs.StringVar(&c.TokenSource, "token-source", SourceAuto, "where tokens come from: auto (an API key if one is configured, else the VPC metadata service), vpc-metadata or api-key")
	fs.StringVar(&c.CacheDir, "cache-dir", DefaultCacheDir, "directory of the on-disk token cache shared by invocations; 'none' disables it")
	fs.StringSliceVar(&c.Registries, "registries", nil, "extra registry hosts to serve (host or host:port, exact, comma-separated)")
}

// EnvName is the environment variable read for flag name.
func EnvName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv sets every flag of fs that was not given on the command line from
// its environment variable, if set. lookup is os.LookupEnv in production.
func ApplyEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		if f.Value.Type() == "bool" {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q is not a boolean: use true or false", EnvName(f.Name), v))
				return
			}
			v = strconv.FormatBool(b)
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", EnvName(f.Name), err))
		}
	})
	return errors.Join(errs...)
}

// EffectiveIAMURL is the IAM base URL in force.
func (c *Config) EffectiveIAMURL() string {
	switch {
	case c.IAMURL != "":
		return strings.TrimRight(c.IAMURL, "/")
	case c.PrivateEndpoints:
		return iam.PrivateIAMURL
	}
	return iam.DefaultIAMURL
}

// ValidateURLs checks --iam-url and --metadata-url: absolute http or https
// URLs with a host and nothing after the path.
func (c *Config) ValidateURLs() error {
	for _, u := range []struct{ flag, value string }{{"--iam-url", c.IAMURL}, {"--metadata-url", c.MetadataURL}} {
		if u.value == "" {
			continue
		}
		p, err := url.Parse(u.value)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.RawQuery != "" || p.Fragment != "" || p.User != nil {
			return fmt.Errorf("%s %q is not a base URL such as https://iam.cloud.ibm.com or http://169.254.169.254", u.flag, u.value)
		}
	}
	return nil
}

// DiskCacheDir is the cache directory, or "" when the disk cache is off.
func (c *Config) DiskCacheDir() string {
	if strings.TrimSpace(c.CacheDir) == "" || strings.EqualFold(c.CacheDir, CacheDisabled) {
		return ""
	}
	return c.CacheDir
}

// Hosts returns the served registry hosts.
func (c *Config) Hosts() (*provider.HostSet, error) {
	return provider.NewHostSet(c.Registries)
}

// Profile is the trusted profile for the node identity.
func (c *Config) Profile() (iam.Profile, error) {
	p := iam.Profile{ID: strings.TrimSpace(c.ProfileID), CRN: strings.TrimSpace(c.ProfileCRN), Name: strings.TrimSpace(c.ProfileName)}
	n := 0
	for _, s := range []string{p.ID, p.CRN, p.Name} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return p, errors.New("more than one of --profile-id, --profile-crn and --profile-name is set: give exactly one, or none for the instance's default trusted profile")
	}
	return p, nil
}

// Source is the node identity selected by the settings.
type Source interface {
	iam.TokenSource
	iam.Identity
}

// Selection is the outcome of NodeSource: the source and how it was chosen.
type Selection struct {
	Source Source
	// Kind is SourceAPIKey or SourceVPCMetadata.
	Kind string
	// Why says which setting selected it, for logs and doctor.
	Why string
	// Warnings are non-fatal findings (e.g. a world-readable key file).
	Warnings []string
	// Secrets are the secrets this configuration holds, for redaction.
	Secrets []string
}

// NodeSource selects the node identity: with --token-source auto an API key
// (--api-key-file, else $IBMCLOUD_API_KEY) wins, else the VPC metadata
// service; an explicit --token-source never falls back to the other.
func (c *Config) NodeSource(getenv func(string) string, opts iam.Options) (*Selection, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if err := c.ValidateURLs(); err != nil {
		return nil, err
	}
	opts.IAMURL = c.EffectiveIAMURL()
	opts.MetadataURL = c.MetadataURL
	profile, err := c.Profile()
	if err != nil {
		return nil, err
	}
	mode := strings.ToLower(strings.TrimSpace(c.TokenSource))
	switch mode {
	case "", SourceAuto, SourceAPIKey, SourceVPCMetadata:
	default:
		return nil, fmt.Errorf("--token-source %q is not one of auto, vpc-metadata, api-key", c.TokenSource)
	}

	keyConfigured := c.APIKeyFile != "" || strings.TrimSpace(getenv(APIKeyEnv)) != ""
	if mode == SourceVPCMetadata || (mode != SourceAPIKey && !keyConfigured) {
		why := "--token-source vpc-metadata"
		if mode != SourceVPCMetadata {
			why = "no API key is configured (--api-key-file, $" + APIKeyEnv + ")"
		}
		return &Selection{Source: iam.NewVPCSource(profile, opts), Kind: SourceVPCMetadata, Why: why}, nil
	}

	if profile != (iam.Profile{}) {
		return nil, errors.New("--profile-id/--profile-crn/--profile-name select a trusted profile for the VPC metadata identity, but an API key is in use: remove one of them, or set --token-source vpc-metadata")
	}
	sel := &Selection{Kind: SourceAPIKey}
	var key, origin string
	switch {
	case c.APIKeyFile != "":
		k, warns, err := iam.LoadAPIKeyFile(c.APIKeyFile)
		if err != nil {
			return nil, err
		}
		for _, w := range warns {
			sel.Warnings = append(sel.Warnings, string(w))
		}
		key, origin = k, c.APIKeyFile
		sel.Why = "--api-key-file " + c.APIKeyFile
	case strings.TrimSpace(getenv(APIKeyEnv)) != "":
		k, err := iam.ParseAPIKey([]byte(getenv(APIKeyEnv)))
		if err != nil {
			return nil, fmt.Errorf("$%s %v", APIKeyEnv, strings.Replace(err.Error(), "put the API key in it", "set it to the API key", 1))
		}
		key, origin = k, "$"+APIKeyEnv
		sel.Why = "$" + APIKeyEnv + " is set"
	default:
		return nil, fmt.Errorf("--token-source api-key but no API key is configured: set --api-key-file (ICR_API_KEY_FILE) or $%s", APIKeyEnv)
	}
	if mode == SourceAPIKey {
		sel.Why = "--token-source api-key, key from " + origin
	}
	sel.Source = iam.NewAPIKeySource(key, origin, opts)
	sel.Secrets = []string{key}
	return sel, nil
}
