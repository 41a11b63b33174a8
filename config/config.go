// Package config turns flags and the environment (ICR_ + the flag's name in
// upper snake case; an explicit flag wins) into the plugin's settings,
// checks them, and resolves the identities that answer: the node's (VPC
// metadata + trusted profile, or an API key) and a pod's service account.
// Every command goes through it, so a setting means the same everywhere.
package config

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "ICR_"

// APIKeyEnv is IBM Cloud's variable for an API key; read when no API key
// file is configured.
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

// Error is a setting that cannot work: its cause and the fix, as data.
type Error struct {
	Cause string
	Fix   string
}

func (e *Error) Error() string {
	if e.Fix == "" {
		return e.Cause
	}
	return e.Cause + ": " + e.Fix
}

// Config holds the settings shared by every sub-command.
type Config struct {
	IAMURL           string
	PrivateEndpoints bool
	AllowInsecureIAM bool
	MetadataURL      string
	MetadataVersion  string
	ProfileID        string
	ProfileCRN       string
	ProfileName      string
	APIKeyFile       string
	TokenSource      string
	CacheDir         string
	Registries       []string
	Memory           *cache.Memory // this process's token store (not a flag); nil: package cache's
}

// AddFlags registers the settings on fs.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.IAMURL, "iam-url", "", "IAM base URL (default "+iam.DefaultIAMURL+", or "+iam.PrivateIAMURL+" with --private-endpoints)")
	fs.BoolVar(&c.PrivateEndpoints, "private-endpoints", false, "use IAM's private endpoint "+iam.PrivateIAMURL+" unless --iam-url is set")
	fs.BoolVar(&c.AllowInsecureIAM, "allow-insecure-iam", false, "allow an http:// --iam-url that is not a loopback address (API keys and tokens then cross the network in clear text)")
	fs.StringVar(&c.MetadataURL, "metadata-url", iam.DefaultMetadataURL, "VPC instance metadata service base URL")
	fs.StringVar(&c.MetadataVersion, "metadata-version", "", "VPC metadata API version: "+strings.Join(iam.MetadataVersions, " or ")+" (default go-sdk-core's, "+iam.MetadataVersions[0]+"; the other is tried when the service does not know its paths)")
	fs.StringVar(&c.ProfileID, "profile-id", "", "trusted profile ID the node identity assumes (none: the instance's default trusted profile)")
	fs.StringVar(&c.ProfileCRN, "profile-crn", "", "trusted profile CRN the node identity assumes")
	fs.StringVar(&c.ProfileName, "profile-name", "", "trusted profile name the node identity assumes")
	fs.StringVar(&c.APIKeyFile, "api-key-file", "", "file holding an IAM API key, absolute path (else $"+APIKeyEnv+")")
	fs.StringVar(&c.TokenSource, "token-source", SourceAuto, "where tokens come from: auto (an API key if one is configured, else the VPC metadata service), vpc-metadata or api-key")
	fs.StringVar(&c.CacheDir, "cache-dir", DefaultCacheDir, "directory of the on-disk token cache shared by invocations, absolute path; 'none' disables it")
	fs.Var(&hostList{hosts: &c.Registries}, "registries", "extra registry hosts to serve (host or host:port, exact, comma-separated)")
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
		// --help is a request, not a setting: ICR_HELP in the kubelet's
		// environment must not turn every answer into a help text.
		if f.Changed || f.Name == "help" {
			return
		}
		v, ok := lookup(EnvName(f.Name))
		if !ok {
			return
		}
		if f.Value.Type() == "bool" {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				errs = append(errs, &Error{Cause: fmt.Sprintf("%s=%q is not a boolean", EnvName(f.Name), v), Fix: "use true or false"})
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

// DiskCacheDir is the cache directory, or "" when the disk cache is off.
func (c *Config) DiskCacheDir() string {
	if strings.TrimSpace(c.CacheDir) == "" || strings.EqualFold(c.CacheDir, CacheDisabled) {
		return ""
	}
	return c.CacheDir
}

// Hosts returns the served registry hosts.
func (c *Config) Hosts() (*provider.HostSet, error) {
	hs, err := provider.NewHostSet(c.Registries)
	if err != nil {
		return nil, &Error{Cause: err.Error(), Fix: "give exact hosts such as registry.example.com or 127.0.0.1:5000, comma-separated"}
	}
	return hs, nil
}

// Profile is the trusted profile for the node identity.
func (c *Config) Profile() iam.Profile {
	return iam.Profile{ID: strings.TrimSpace(c.ProfileID), CRN: strings.TrimSpace(c.ProfileCRN), Name: strings.TrimSpace(c.ProfileName)}
}

// Validate checks every setting on its own and against the others, without
// reading any file: what every command, and the installer, refuses.
func (c *Config) Validate() error {
	for _, v := range []struct {
		flag, value string
		hide        bool // a URL may hold user info; an API key may be typed as its file
	}{
		{"--iam-url", c.IAMURL, true}, {"--metadata-url", c.MetadataURL, true}, {"--metadata-version", c.MetadataVersion, false},
		{"--profile-id", c.ProfileID, false}, {"--profile-crn", c.ProfileCRN, false}, {"--profile-name", c.ProfileName, false},
		{"--api-key-file", c.APIKeyFile, true}, {"--token-source", c.TokenSource, false}, {"--cache-dir", c.CacheDir, false},
		{"--registries", strings.Join(c.Registries, ","), false},
	} {
		if err := checkValue(v.flag, v.value, !v.hide); err != nil {
			return err
		}
	}
	if err := checkURL("--iam-url", c.IAMURL, c.AllowInsecureIAM); err != nil {
		return err
	}
	if err := checkURL("--metadata-url", c.MetadataURL, true); err != nil {
		return err
	}
	if v := strings.TrimSpace(c.MetadataVersion); v != "" && !slices.Contains(iam.MetadataVersions, v) {
		return &Error{Cause: fmt.Sprintf("--metadata-version %q is not a version go-sdk-core speaks", c.MetadataVersion),
			Fix: "use " + strings.Join(iam.MetadataVersions, " or ") + ", or leave it unset"}
	}
	if p := c.Profile(); len(slices.DeleteFunc([]string{p.ID, p.CRN, p.Name}, func(s string) bool { return s == "" })) > 1 {
		return &Error{Cause: "more than one of --profile-id, --profile-crn and --profile-name is set",
			Fix: "give exactly one, or none for the instance's default trusted profile"}
	}
	switch c.mode() {
	case SourceAuto, SourceAPIKey, SourceVPCMetadata:
	default:
		return &Error{Cause: fmt.Sprintf("--token-source %q is not one of auto, vpc-metadata, api-key", c.TokenSource), Fix: "choose one of them"}
	}
	if v := strings.TrimSpace(c.APIKeyFile); v != "" && !filepath.IsAbs(v) {
		// Often the key itself, typed where its file belongs: never shown,
		// and redacted wherever else it might appear.
		secret.Add(v)
		return &Error{Cause: "the value of --api-key-file (ICR_API_KEY_FILE) is not a path to a file: it does not start with /",
			Fix: "give the absolute path of a root-only file that holds the key; the key itself goes in that file, never in a flag or the kubelet config"}
	}
	if v := strings.TrimSpace(c.DiskCacheDir()); v != "" && !filepath.IsAbs(v) {
		return &Error{Cause: fmt.Sprintf("--cache-dir %q is a relative path", c.DiskCacheDir()),
			Fix: "give an absolute path: the kubelet runs the plugin from a working directory of its own"}
	}
	_, err := c.Hosts()
	return err
}

// Warnings are the settings that are allowed but worth a warning.
func (c *Config) Warnings() []string {
	if u, err := url.Parse(c.EffectiveIAMURL()); err == nil && u.Scheme == "http" && !provider.IsLoopback(u.Hostname()) {
		return []string{"--iam-url " + c.EffectiveIAMURL() + " is plain http to a host that is not this machine (--allow-insecure-iam): API keys and tokens cross the network in clear text"}
	}
	return nil
}

// checkURL is the one rule for endpoint URLs: absolute http or https with a
// host and no user info, query or fragment (they would travel with secrets,
// or be dropped); plain http only to loopback unless insecureOK.
func checkURL(flag, value string, insecureOK bool) error {
	if value == "" {
		return nil
	}
	u, err := url.Parse(value)
	shown := value
	if err == nil {
		shown = u.Redacted() // a password in the URL is not repeated
	} else if strings.Contains(value, "@") {
		shown = "(a URL with user info)"
	}
	bad := &Error{Cause: fmt.Sprintf("%s %q is not a base URL", flag, shown), Fix: "give one such as https://iam.cloud.ibm.com or http://169.254.169.254, without user info, query or fragment"}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return bad
	}
	if _, err := provider.NormalizeHost(u.Host); err != nil {
		return bad
	}
	if u.Scheme == "http" && !insecureOK && !provider.IsLoopback(u.Hostname()) {
		return &Error{Cause: fmt.Sprintf("%s %q is plain http to a host that is not this machine: API keys and tokens would cross the network in clear text", flag, value),
			Fix: "use https, or give --allow-insecure-iam (ICR_ALLOW_INSECURE_IAM=true) if you mean it"}
	}
	return nil
}

func (c *Config) mode() string {
	return cmp.Or(strings.ToLower(strings.TrimSpace(c.TokenSource)), SourceAuto)
}

// Selection says which identity answers for the node, and why, from the
// settings alone (no file is read).
type Selection struct {
	Kind       string // SourceAPIKey or SourceVPCMetadata
	Why        string // which setting selected it, for logs and doctor
	KeyFromEnv bool   // the API key comes from $IBMCLOUD_API_KEY
}

// Select applies the selection rule: with --token-source auto an API key
// (--api-key-file, else $IBMCLOUD_API_KEY, read with getenv) wins, else the
// VPC metadata service; an explicit --token-source never falls back.
func (c *Config) Select(getenv func(string) string) (Selection, error) {
	if err := c.Validate(); err != nil {
		return Selection{}, err
	}
	keyConfigured := c.APIKeyFile != "" || getenv != nil && strings.TrimSpace(getenv(APIKeyEnv)) != ""
	mode := c.mode()
	if mode == SourceVPCMetadata || (mode == SourceAuto && !keyConfigured) {
		why := "--token-source vpc-metadata"
		if mode != SourceVPCMetadata {
			why = "no API key is configured (--api-key-file, $" + APIKeyEnv + ")"
		}
		return Selection{Kind: SourceVPCMetadata, Why: why}, nil
	}
	if c.Profile() != (iam.Profile{}) {
		return Selection{}, &Error{Cause: "--profile-id/--profile-crn/--profile-name select a trusted profile for the VPC metadata identity, but an API key is in use",
			Fix: "remove one of them, or set --token-source vpc-metadata"}
	}
	if !keyConfigured {
		return Selection{}, &Error{Cause: "--token-source api-key but no API key is configured",
			Fix: "set --api-key-file (ICR_API_KEY_FILE) to a file holding the key, mode 0600"}
	}
	sel := Selection{Kind: SourceAPIKey, Why: "--api-key-file " + c.APIKeyFile}
	if c.APIKeyFile == "" {
		sel.Why, sel.KeyFromEnv = "$"+APIKeyEnv+" is set", true
	}
	if mode == SourceAPIKey {
		sel.Why = "--token-source api-key, key from " + strings.TrimPrefix(sel.Why, "--api-key-file ")
	}
	return sel, nil
}

// Identity is a resolved identity: a token source, uncached, and what is
// known about it without any secret.
type Identity struct {
	Selection
	Source      token.Source // uncached: every call asks IAM or the metadata service
	Key         string       // the token cache's key; no secret in it
	Describe    string       // names the identity for logs and doctor
	Fingerprint string       // the API key's secret.Fingerprint, if one is used
	Warnings    []string     // non-fatal findings (a world-readable key file, plain http)
}

// iamOptions sets opts' endpoints from c.
func (c *Config) iamOptions(opts iam.Options) iam.Options {
	opts.IAMURL = c.EffectiveIAMURL()
	opts.MetadataURL = c.MetadataURL
	opts.MetadataVersion = strings.TrimSpace(c.MetadataVersion)
	return opts
}

// Node resolves the node identity (reading the API key if one is used).
// opts tunes package iam (timeouts, transports); the endpoints come from c.
func (c *Config) Node(getenv func(string) string, opts iam.Options) (*Identity, error) {
	sel, err := c.Select(getenv)
	if err != nil {
		return nil, err
	}
	opts = c.iamOptions(opts)
	id := &Identity{Selection: sel, Warnings: c.Warnings()}
	if sel.Kind == SourceVPCMetadata {
		src := iam.NewVPCSource(c.Profile(), opts)
		id.Source, id.Key, id.Describe = src, src.CacheKey(), src.Describe()
		return id, nil
	}
	key, origin, warns := "", c.APIKeyFile, []string(nil)
	if sel.KeyFromEnv {
		origin = "$" + APIKeyEnv
		var problem string
		if key, problem = parseAPIKey([]byte(getenv(APIKeyEnv))); problem != "" {
			return nil, &Error{Cause: origin + " " + problem, Fix: "set it to the API key alone, or use --api-key-file"}
		}
	} else if key, warns, err = LoadAPIKeyFile(c.APIKeyFile); err != nil {
		return nil, err
	}
	src := iam.NewAPIKeySource(key, origin, opts)
	id.Source, id.Key, id.Describe, id.Fingerprint = src, src.CacheKey(), src.Describe(), secret.Fingerprint(key)
	id.Warnings = append(id.Warnings, warns...)
	return id, nil
}

// NodeSource is the node identity behind the token cache, resolved (and its
// warnings logged) on each call, so that an answer that needs no token needs
// no configuration, and a rotated key file is read again.
func (c *Config) NodeSource(getenv func(string) string) token.Source {
	return token.SourceFunc(func(ctx context.Context) (token.Token, error) {
		id, err := c.Node(getenv, iam.Options{})
		if err != nil {
			return token.Token{}, err
		}
		for _, w := range id.Warnings {
			klog.Warning(w)
		}
		klog.V(2).InfoS("Node identity", "source", id.Describe, "why", id.Why)
		return c.Cached(id.Source, id.Key).Token(ctx)
	})
}

// Cached wraps src in the token cache: the process's memory, then the disk
// cache directory, then src.
func (c *Config) Cached(src token.Source, key string) token.Source {
	return cache.New(src, key, cache.Options{Dir: c.DiskCacheDir(), Memory: c.Memory})
}

// WorkloadSource is the identity of a pod's service account (w names its
// trusted profile and carries its token) behind the token cache.
func (c *Config) WorkloadSource(w provider.Workload) (token.Source, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	for _, warn := range c.Warnings() {
		klog.Warning(warn)
	}
	src, err := iam.NewCRTokenSource(w.ServiceAccountToken, iam.Profile{ID: w.ProfileID, Name: w.ProfileName}, c.iamOptions(iam.Options{}))
	if err != nil {
		return nil, fmt.Errorf("the pod's service account asks for %s: %w", w, err)
	}
	klog.V(2).InfoS("Workload identity", "source", src.Describe())
	return c.Cached(src, src.CacheKey()), nil
}
