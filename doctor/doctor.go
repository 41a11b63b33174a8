// Package doctor explains, from the node, whether image pulls from IBM Cloud
// Container Registry can authenticate, and what to do when they cannot.
//
// Run performs chains of checks (configuration → identity → token →
// registry; kubelet configuration; clock), each ok, warn, fail or skip with
// one line of cause and one of fix; a check whose prerequisite failed is
// skipped, so every chain stops at its first broken link. Secrets are only
// described (a fingerprint, the token's claims), and every string of the
// report is scrubbed of the run's secrets.
package doctor

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

type Status string

// Statuses, in increasing order of severity (skip aside).
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
	StatusSkip Status = "skip"
)

// Schema names the JSON document Report marshals to. It changes only when a
// field is removed or changes meaning; fields may be added.
const Schema = "icr-credential-provider/doctor/v1"

// Check is the result of one check. Its JSON form is part of the stable
// schema (see docs/troubleshooting.md).
type Check struct {
	ID      string            `json:"id"`                // one of the Check* constants
	Target  string            `json:"target,omitempty"`  // for an ID run more than once: the registry host
	Status  Status            `json:"status"`            // "ok" | "warn" | "fail" | "skip"
	Summary string            `json:"summary"`           // one line: what was found, or why skipped
	Fix     string            `json:"fix,omitempty"`     // one line: what to do
	Details map[string]string `json:"details,omitempty"` // facts, never a secret; keys vary by check
}

const (
	CheckSettings         = "config.settings"
	CheckAPIKey           = "config.api-key"
	CheckCacheDir         = "config.cache-dir"
	CheckMetadata         = "identity.metadata"
	CheckTrustedProfile   = "identity.trusted-profile"
	CheckIdentityAPIKey   = "identity.api-key"
	CheckToken            = "token.iam"
	CheckRegistryHost     = "registry.host"
	CheckRegistryAuth     = "registry.challenge"
	CheckRegistryToken    = "registry.token"
	CheckRegistryManifest = "registry.manifest"
	CheckKubeletConfig    = "kubelet.config"
	CheckKubeletProvider  = "kubelet.provider"
	CheckMatchImages      = "kubelet.match-images"
	CheckBinary           = "kubelet.binary"
	CheckTokenAttributes  = "kubelet.token-attributes"
	CheckClock            = "clock.skew"
)

// Report is the outcome of Run.
type Report struct {
	Schema string  `json:"schema"` // the constant Schema
	OK     bool    `json:"ok"`     // false when any check failed (warnings do not count)
	Checks []Check `json:"checks"` // in the order they ran
}

// Find returns the first check with id.
func (r *Report) Find(id string) (Check, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

func (r *Report) Counts() map[Status]int {
	m := map[Status]int{}
	for _, c := range r.Checks {
		m[c.Status]++
	}
	return m
}

// Env is everything the checks touch. Zero values select the defaults
// given on each field.
type Env struct {
	Config  config.Config       // the identity configuration, as in kubelet mode
	Getenv  func(string) string // reads the environment (IBMCLOUD_API_KEY); nil reads nothing
	Origins map[string]string   // by flag name: "flag", "env ICR_…" or "default"; shown in config.settings
	// Image is the image to check a pull of (host/namespace/repo[:tag]);
	// empty: only the authentication at RegistryHosts is checked.
	Image         string
	RegistryHosts []string // nil: DefaultRegistryHosts
	// KubeletConfig is the kubelet's CredentialProviderConfig file; empty:
	// the running kubelet's, else the first of KubeletConfigPaths that exists.
	KubeletConfig      string
	KubeletConfigPaths []string // nil: DefaultKubeletConfigPaths
	// BinDir is the kubelet's --image-credential-provider-bin-dir; empty:
	// the running kubelet's, else the first of BinDirs holding the plugin.
	BinDir         string
	BinDirs        []string          // nil: DefaultBinDirs
	ProcDir        string            // where the running kubelet's command line is looked for; "": /proc, "-": nowhere
	HostRoot       string            // where the host's / is (for k3s's and RKE2's kubelet-arg files); "": /
	ProviderName   string            // the plugin's name in the kubelet config; "": ProviderName
	IAM            iam.Options       // MaxAttempts defaults to 2 here, so that a failing IAM is reported in seconds
	Transport      http.RoundTripper // registry and clock requests; nil: iam.NewIAMTransport()
	RequestTimeout time.Duration     // per registry or clock request; <= 0: 8s
	Now            func() time.Time  // nil: time.Now
	Euid           int               // doctor's effective user id, to explain ownership findings
}

// ProviderName is the plugin's name: the executable's name in the kubelet's
// bin dir and the provider entry's name in the kubelet config.
const ProviderName = "icr-credential-provider"

// DefaultRegistryHosts are checked when no image is given: the global host
// only, so that doctor stays fast and bounded.
var DefaultRegistryHosts = []string{"icr.io"}

// DefaultKubeletConfigPaths are where kubelet credential provider configs are commonly installed.
var DefaultKubeletConfigPaths = []string{
	"/etc/kubernetes/icr-credential-provider/config.yaml", // where install writes it
	"/etc/kubernetes/credential-provider-config.yaml",
	"/var/lib/kubelet/credential-provider-config.yaml",
	"/etc/kubernetes/image-credential-provider-config.yaml",
	"/etc/kubernetes/credential-provider/config.yaml",
	"/etc/kubernetes/credential-provider-config.json",
}

// DefaultBinDirs are where kubelet credential provider binaries are commonly installed
// (the kubelet's --image-credential-provider-bin-dir has no default of its own).
var DefaultBinDirs = []string{
	"/opt/icr-credential-provider/bin", // where install puts it
	"/usr/local/bin",
	"/etc/kubernetes/credential-provider",
	"/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec",
	"/var/lib/kubelet/credential-provider",
	"/opt/credential-provider/bin",
}

func (e *Env) defaults() {
	if e.Getenv == nil {
		e.Getenv = func(string) string { return "" }
	}
	if e.RegistryHosts == nil {
		e.RegistryHosts = DefaultRegistryHosts
	}
	if e.KubeletConfigPaths == nil {
		e.KubeletConfigPaths = DefaultKubeletConfigPaths
	}
	if e.BinDirs == nil {
		e.BinDirs = DefaultBinDirs
	}
	e.ProcDir = cmp.Or(e.ProcDir, "/proc")
	e.ProviderName = cmp.Or(e.ProviderName, ProviderName)
	e.IAM.MaxAttempts = cmp.Or(e.IAM.MaxAttempts, 2)
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.IAM.Now == nil {
		e.IAM.Now = e.Now
	}
	if e.RequestTimeout <= 0 {
		e.RequestTimeout = 8 * time.Second
	}
	if e.Transport == nil {
		e.Transport = iam.NewIAMTransport()
	}
}

// run is the state of one Run.
type run struct {
	env      *Env
	checks   []Check
	id       *config.Identity
	token    token.Token
	claims   *claims
	idErr    *iam.Error // the identity check's failure, if any
	hostsErr error
}

func (r *run) add(c Check) {
	r.checks = append(r.checks, c)
}

// skipped is a check not run because prerequisite did not pass.
func skipped(id, target, prerequisite string) Check {
	return Check{ID: id, Target: target, Status: StatusSkip, Summary: "not checked: " + prerequisite + " did not pass"}
}

// Run performs every check and returns the report. It never returns a
// secret in any field. ctx bounds the whole run.
func Run(ctx context.Context, env Env) *Report {
	env.defaults()
	r := &run{env: &env}
	r.checkAPIKey()
	r.checkSettings()
	r.checkCacheDir()
	r.checkIdentity(ctx)
	r.checkToken()
	r.checkRegistries(ctx)
	r.checkKubelet()
	r.checkClock(ctx)
	rep := &Report{Schema: Schema, Checks: r.checks}
	for i := range rep.Checks {
		c := &rep.Checks[i]
		c.Target, c.Summary, c.Fix = scrub(c.Target), scrub(c.Summary), scrub(c.Fix)
		if c.Details != nil {
			scrubbed := make(map[string]string, len(c.Details))
			for k, v := range c.Details {
				scrubbed[scrub(k)] = scrub(v)
			}
			c.Details = scrubbed
		}
	}
	rep.OK = rep.Counts()[StatusFail] == 0
	return rep
}

// maxLine bounds every string of the report.
const maxLine = 1000

// scrub puts s on one bounded line without any secret the process handled
// and without anything shaped like a JWT.
func scrub(s string) string { return secret.Line(redactJWTs(s), maxLine) }

// redactJWTs replaces anything that looks like a JWT (eyJ….….) with
// [redacted]: no legitimate message of doctor contains one.
func redactJWTs(s string) string {
	for {
		i := strings.Index(s, "eyJ")
		if i < 0 {
			return s
		}
		j := i
		for j < len(s) && strings.IndexByte(jwtChars, s[j]) >= 0 {
			j++
		}
		s = s[:i] + secret.Mask + s[j:]
	}
}

const jwtChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=."

func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report for a terminal: one line per check, a "fix:"
// line under each warning or failure, and a tally. Run has scrubbed every
// field (secret.Line): text from outside (paths, server messages, file
// values) arrives escaped, unable to move the cursor or fake a line.
func (rep *Report) WriteText(w io.Writer) error {
	label := map[Status]string{StatusOK: " ok ", StatusWarn: "WARN", StatusFail: "FAIL", StatusSkip: "skip"}
	var b strings.Builder
	for _, c := range rep.Checks {
		name := c.ID
		if c.Target != "" {
			name += " (" + c.Target + ")"
		}
		fmt.Fprintf(&b, "[%s] %-26s %s\n", label[c.Status], name, c.Summary)
		if c.Fix != "" && (c.Status == StatusFail || c.Status == StatusWarn) {
			fmt.Fprintf(&b, "       fix: %s\n", c.Fix)
		}
	}
	n := rep.Counts()
	warnings := fmt.Sprintf("%d warnings", n[StatusWarn])
	if n[StatusWarn] == 1 {
		warnings = "1 warning"
	}
	verdict := "image pulls from ICR should authenticate"
	if !rep.OK {
		verdict = "image pulls from ICR will fail: see FAIL above"
	}
	fmt.Fprintf(&b, "\n%d ok, %s, %d failed, %d skipped: %s\n", n[StatusOK], warnings, n[StatusFail], n[StatusSkip], verdict)
	_, err := io.WriteString(w, b.String())
	return err
}
