package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// MatchImage reports whether the kubelet would run a provider with
// matchImages pattern for image, with the kubelet's own rule
// (credentialprovider.URLsMatchStr): the same number of host labels, each
// label matched as a path.Match glob, equal ports (none matches none only),
// and the pattern's path a prefix of the image's path.
func MatchImage(pattern, image string) bool {
	g, gErr := url.Parse("https://" + pattern)
	t, tErr := url.Parse("https://" + image)
	if gErr != nil || tErr != nil {
		return false
	}
	gParts, gPort := splitHost(g.Host)
	tParts, tPort := splitHost(t.Host)
	if gPort != tPort || len(gParts) != len(tParts) || !strings.HasPrefix(t.Path, g.Path) {
		return false
	}
	for i := range gParts {
		if ok, err := filepath.Match(gParts[i], tParts[i]); err != nil || !ok {
			return false
		}
	}
	return true
}

func splitHost(hostport string) ([]string, string) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, ""
	}
	return strings.Split(host, "."), port
}

// kubeletSeen is what doctor learned of the node's kubelet: its flags,
// or why it did not pick one.
type kubeletSeen struct {
	flags   map[string]string
	origin  string   // where the flags came from
	problem string   // several kubelets run as root: none is picked
	ignored []string // processes named kubelet that are not trusted
}

// findKubelet finds the kubelet's flags: from the command line of the one
// trusted process named kubelet (hostfile.Processes: root, from a root-only
// executable; a user's "kubelet" is ignored and said to be), else from the
// kubelet-arg entries of k3s's or RKE2's config (hostRoot/etc/rancher/
// {k3s,rke2}/config.yaml and config.yaml.d/*.yaml, in the order they
// apply), read only if root can trust them.
func findKubelet(procDir, hostRoot string) kubeletSeen {
	var seen kubeletSeen
	var trusted []hostfile.Process
	for _, p := range hostfile.Processes(procDir, "kubelet") {
		if p.Untrusted != "" {
			seen.ignored = append(seen.ignored, fmt.Sprintf("PID %d (%s)", p.PID, p.Untrusted))
			continue
		}
		trusted = append(trusted, p)
	}
	switch len(trusted) {
	case 0:
	case 1:
		seen.flags, seen.origin = parseKubeletArgs(trusted[0].Argv[1:]), fmt.Sprintf("the running kubelet (PID %d)", trusted[0].PID)
		return seen
	default:
		var pids []string
		for _, p := range trusted {
			pids = append(pids, strconv.Itoa(p.PID))
		}
		seen.problem = fmt.Sprintf("%d processes named kubelet run as root (PIDs %s): doctor does not guess which one pulls images", len(trusted), strings.Join(pids, ", "))
		return seen
	}
	flags := map[string]string{}
	for _, dist := range []string{"k3s", "rke2"} {
		dir := filepath.Join(hostRoot, "etc/rancher", dist)
		files, _ := filepath.Glob(filepath.Join(dir, "config.yaml.d", "*.yaml"))
		for _, f := range append([]string{filepath.Join(dir, "config.yaml")}, files...) {
			b, err := hostfile.ReadTrusted(f, installer.MaxConfigFile)
			if err != nil {
				continue
			}
			var c struct {
				KubeletArg []string `json:"kubelet-arg"`
			}
			if yaml.Unmarshal(b, &c) != nil {
				continue
			}
			for _, a := range c.KubeletArg {
				if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
					flags[k] = v
				}
			}
			seen.origin = dist + "'s kubelet-arg"
		}
	}
	if len(flags) > 0 {
		seen.flags = flags
	}
	return seen
}

func parseKubeletArgs(args []string) map[string]string {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		if k, v, ok := strings.Cut(a, "="); ok {
			flags[k] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			flags[a] = args[i+1]
			i++
		}
	}
	return flags
}

func (r *run) checkKubelet() {
	seen := findKubelet(r.env.ProcDir, r.env.HostRoot)
	// Processes named kubelet that doctor did not trust are said, whatever
	// the config check finds.
	withIgnored := func(c Check) Check {
		if len(seen.ignored) > 0 && c.ID == CheckKubeletConfig {
			if c.Details == nil {
				c.Details = map[string]string{}
			}
			c.Details["ignored"] = strings.Join(seen.ignored, "; ")
			c.Summary += fmt.Sprintf("; ignored %d process(es) named kubelet not running as root from a root-only executable: %s", len(seen.ignored), strings.Join(limit(seen.ignored, 3), "; "))
		}
		return c
	}
	// stop adds c, which ends the chain, and skips the checks after it.
	stop := func(c Check) {
		r.add(withIgnored(c))
		for _, id := range []string{CheckKubeletProvider, CheckMatchImages, CheckBinary, CheckTokenAttributes} {
			if id != c.ID {
				r.add(skipped(id, "", c.ID))
			}
		}
	}
	path, origin := r.env.KubeletConfig, "--kubelet-config"
	switch {
	case path != "":
	case seen.problem != "":
		stop(Check{ID: CheckKubeletConfig, Status: StatusWarn, Summary: seen.problem,
			Fix: "pass --kubelet-config and --bin-dir with the values of the kubelet's --image-credential-provider-config and --image-credential-provider-bin-dir"})
		return
	case seen.flags["image-credential-provider-config"] != "":
		path, origin = seen.flags["image-credential-provider-config"], seen.origin+"'s --image-credential-provider-config"
	default:
		for _, p := range r.env.KubeletConfigPaths {
			if _, err := os.Stat(p); err == nil {
				path, origin = p, "found at a common path"
				break
			}
		}
	}
	if path == "" {
		stop(Check{ID: CheckKubeletConfig, Status: StatusWarn,
			Summary: "no kubelet credential provider config found (looked at " + strings.Join(r.env.KubeletConfigPaths, ", ") + ")",
			Fix:     "pass --kubelet-config FILE (the kubelet's --image-credential-provider-config) to check it; without one the kubelet never runs the plugin"})
		return
	}
	kc, err := installer.ReadKubeletConfig(path)
	if err != nil {
		stop(kubeletConfigError(path, origin, err))
		return
	}
	apiVersion := strings.Join(slices.Compact(slices.Clone(kc.APIVersions)), ", ")
	files := ""
	if len(kc.Files) > 1 || kc.Files[0] != path {
		files = ": " + strings.Join(kc.Files, ", ")
	}
	cfgCheck := Check{ID: CheckKubeletConfig, Status: StatusOK, Details: map[string]string{"path": path, "apiVersion": apiVersion, "origin": origin, "files": strings.Join(kc.Files, ",")},
		Summary: fmt.Sprintf("%s (%s%s) decodes strictly as %s with %d provider(s)", path, origin, files, apiVersion, len(kc.Providers))}
	if old := slices.DeleteFunc(slices.Clone(kc.APIVersions), func(v string) bool { return v == kubeletv1.SchemeGroupVersion.String() }); len(old) > 0 {
		cfgCheck.Status = StatusWarn
		cfgCheck.Fix = "switch to apiVersion kubelet.config.k8s.io/v1 (GA since Kubernetes 1.26); " + old[0] + " is deprecated"
	}
	r.add(withIgnored(cfgCheck))
	i := slices.IndexFunc(kc.Providers, func(cp kubeletv1.CredentialProvider) bool { return cp.Name == r.env.ProviderName })
	if i < 0 {
		var names []string
		for _, cp := range kc.Providers {
			names = append(names, cp.Name)
		}
		stop(Check{ID: CheckKubeletProvider, Status: StatusFail,
			Summary: fmt.Sprintf("%s has no provider named %s (providers: %s)", path, r.env.ProviderName, strings.Join(names, ", ")),
			Fix:     "add a provider entry with name " + r.env.ProviderName + " (the binary's name in the bin dir); see the README's kubelet configuration"})
		return
	}
	p := &kc.Providers[i]
	r.checkProviderEntry(p)
	r.checkMatchImages(p)
	r.checkBinary(p, seen)
	r.checkTokenAttributes(p)
}

// kubeletConfigError is the failed kubelet.config check for an error of
// installer.ReadKubeletConfig.
func kubeletConfigError(path, origin string, err error) Check {
	c := Check{ID: CheckKubeletConfig, Status: StatusFail, Details: map[string]string{"path": path, "origin": origin},
		Fix: "pass --kubelet-config with the kubelet's CredentialProviderConfig file"}
	var untrusted *hostfile.UntrustedError
	var decode *installer.DecodeError
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
		c.Details, c.Summary = nil, "cannot read kubelet config "+path+": "+config.Bare(err).Error()
		c.Fix = "pass --kubelet-config with the file the kubelet's --image-credential-provider-config names"
		if errors.Is(err, fs.ErrPermission) {
			c.Fix = "run doctor as root to read it"
		}
	case errors.As(err, &untrusted):
		c.Summary = "kubelet config " + path + " is not read: " + untrusted.Error() + ", and the kubelet runs what it names as root"
		c.Fix = untrusted.Fix
	case errors.Is(err, hostfile.ErrNotRegular) || errors.Is(err, hostfile.ErrTooLarge):
		c.Summary = "kubelet config " + path + " (" + origin + ") is not read: " + err.Error()
	case errors.As(err, &decode):
		c.Summary = "kubelet config " + path + " (" + origin + ") does not decode strictly: " + decode.Error()
		c.Fix = "the kubelet refuses to start with it: fix it (apiVersion kubelet.config.k8s.io/v1, kind CredentialProviderConfig, no unknown fields); see examples/kubelet"
	default:
		c.Summary = "kubelet config " + path + " (" + origin + ") is not usable: " + secret.Line(err.Error(), 300)
	}
	return c
}

// supportedRequestVersion: the plugin answers a provider's apiVersion.
func supportedRequestVersion(apiVersion string) bool {
	v, ok := strings.CutPrefix(apiVersion, credentialprovider.GroupName+"/")
	return ok && slices.Contains(provider.SupportedVersions, v)
}

func (r *run) checkProviderEntry(p *kubeletv1.CredentialProvider) {
	d := map[string]string{"apiVersion": p.APIVersion}
	if p.DefaultCacheDuration != nil {
		d["defaultCacheDuration"] = p.DefaultCacheDuration.Duration.String()
	}
	env := map[string]string{}
	for _, v := range p.Env {
		env[v.Name] = v.Value
		d["env."+v.Name] = envShown(v.Name, v.Value)
	}
	c := Check{ID: CheckKubeletProvider, Status: StatusFail, Details: d}
	_, keyInEnv := env["IBMCLOUD_API_KEY"]
	switch {
	case !supportedRequestVersion(p.APIVersion):
		c.Summary = fmt.Sprintf("provider %s has apiVersion %q, which the kubelet and the plugin do not both speak", p.Name, p.APIVersion)
		c.Fix = "set apiVersion: credentialprovider.kubelet.k8s.io/v1"
	case p.DefaultCacheDuration == nil:
		c.Summary, c.Fix = "provider "+p.Name+" has no defaultCacheDuration, which the kubelet requires", `add defaultCacheDuration: "10m"`
	case p.DefaultCacheDuration.Duration < 0:
		c.Summary, c.Fix = "provider "+p.Name+" has a negative defaultCacheDuration", `set defaultCacheDuration: "10m"`
	case keyInEnv:
		c.Status = StatusWarn
		c.Summary = "provider " + p.Name + " passes IBMCLOUD_API_KEY in the kubelet config's env: the key sits in a world-readable node file"
		c.Fix = "put the key in a root-only file and set ICR_API_KEY_FILE instead"
	case p.DefaultCacheDuration.Duration > time.Hour:
		c.Status = StatusWarn
		c.Summary = "provider " + p.Name + " has defaultCacheDuration " + p.DefaultCacheDuration.Duration.String() + ", longer than an IAM token lives"
		c.Fix = `the plugin always sets cacheDuration itself; still, use defaultCacheDuration: "10m" so that a missing one can never outlive the token`
	default:
		c.Status = StatusOK
		c.Summary = fmt.Sprintf("provider %s: apiVersion %s, defaultCacheDuration %s", p.Name, p.APIVersion, p.DefaultCacheDuration.Duration)
		if len(env) > 0 {
			c.Summary += ", env " + strings.Join(slices.Sorted(maps.Keys(env)), ",") + " (run doctor with the same settings)"
		}
	}
	r.add(c)
}

// envShown is what doctor shows of an environment variable from the
// kubelet config: "(set)" for what may be a credential (a name with KEY,
// TOKEN, SECRET, PASSWORD or CREDENTIAL, or a *_FILE that is not an
// absolute path, i.e. a key typed where its file belongs), a URL without its
// password (proxies), else the value.
func envShown(name, value string) string {
	upper := strings.ToUpper(name)
	file := strings.HasSuffix(upper, "_FILE")
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"} {
		if strings.Contains(upper, w) && (!file || !filepath.IsAbs(value)) {
			return "(set)"
		}
	}
	if u, err := url.Parse(value); err == nil && u.User != nil {
		u.User = nil // a user name alone may be a token
		return u.String() + " (user info not shown)"
	}
	if strings.Contains(value, "@") {
		return "(set: has user info)" // a URL without a scheme, with a password perhaps
	}
	return value
}

// suggestedPatterns cover every default host (see the README).
var suggestedPatterns = []string{"icr.io", "*.icr.io", "private.*.icr.io", "registry.bluemix.net", "registry.*.bluemix.net"}

// checkMatchImages checks that matchImages routes every served host (and
// the image) to the plugin, with the kubelet's matching rule.
func (r *run) checkMatchImages(p *kubeletv1.CredentialProvider) {
	matches := func(target string) bool {
		return slices.ContainsFunc(p.MatchImages, func(m string) bool {
			pat := strings.TrimPrefix(m, "https://")
			if !strings.Contains(target, "/") {
				// A host-level question: ignore the pattern's path.
				pat, _, _ = strings.Cut(pat, "/")
			}
			return MatchImage(pat, target)
		})
	}
	served := provider.DefaultHosts()
	if hs, err := r.env.Config.Hosts(); err == nil {
		served = hs.Hosts()
	}
	var missed, missedPublic []string
	for _, h := range served {
		if !matches(h) {
			missed = append(missed, h)
			if !strings.HasPrefix(h, "private.") && !strings.HasPrefix(h, "registry.") {
				missedPublic = append(missedPublic, h)
			}
		}
	}
	d := map[string]string{"matchImages": strings.Join(p.MatchImages, ",")}
	if len(missed) > 0 {
		d["not_covered"] = strings.Join(missed, ",")
	}
	if r.env.Image != "" {
		if img, err := provider.ParseImage(r.env.Image); err == nil {
			if full := img.Host + "/" + img.Repository; !matches(full) {
				missedPublic = append([]string{full}, missedPublic...)
			}
		}
	}
	fix := "matchImages globs match label by label (*.icr.io matches neither icr.io nor private.us.icr.io): use \"" + strings.Join(suggestedPatterns, `", "`) + `"`
	c := Check{ID: CheckMatchImages, Status: StatusOK, Details: d, Summary: fmt.Sprintf("matchImages covers all %d served hosts", len(served))}
	switch {
	case len(missedPublic) > 0:
		c.Status, c.Fix = StatusFail, fix
		c.Summary = "the kubelet never runs the plugin for " + strings.Join(limit(missedPublic, 8), ", ") + ": no matchImages pattern matches"
	case len(missed) > 0:
		c.Status, c.Fix = StatusWarn, "if nodes pull from those hosts, "+fix
		c.Summary = "matchImages does not cover " + strings.Join(limit(missed, 8), ", ")
	case matches("cp.icr.io"):
		// The recommended *.icr.io routes the entitled registry to the plugin
		// too: harmless (no credentials, so the pull secret is used).
		c.Summary += " (and cp.icr.io, which the plugin answers with no credentials)"
	}
	r.add(c)
}

func limit(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(slices.Clone(s[:n]), fmt.Sprintf("and %d more", len(s)-n))
}

// checkBinary checks that the kubelet can execute the plugin, the file
// named like the provider entry in the bin dir, and that no one but root
// can change it or its directories (the kubelet runs it as root).
func (r *run) checkBinary(p *kubeletv1.CredentialProvider, seen kubeletSeen) {
	dir, origin := r.env.BinDir, "--bin-dir"
	if dir == "" && seen.flags["image-credential-provider-bin-dir"] != "" {
		dir, origin = seen.flags["image-credential-provider-bin-dir"], seen.origin+"'s --image-credential-provider-bin-dir"
	}
	dirs := []string{dir}
	if dir == "" {
		dirs, origin = r.env.BinDirs, "a common bin dir"
	}
	for _, d := range dirs {
		bin := filepath.Join(d, p.Name)
		fi, err := os.Stat(bin)
		if err != nil {
			continue
		}
		c := Check{ID: CheckBinary, Status: StatusFail, Details: map[string]string{"path": bin, "mode": fmt.Sprintf("%04o", fi.Mode().Perm()), "origin": origin}}
		var untrusted *hostfile.UntrustedError
		switch err := hostfile.CheckPath(bin); {
		case errors.As(err, &untrusted):
			c.Summary = untrusted.Error() + ": whoever can change it runs code as root when the kubelet pulls"
			c.Fix = untrusted.Fix + "; then reinstall the plugin (icr-credential-provider install)"
		case err != nil:
			c.Summary, c.Fix = "cannot check who can change "+bin+": "+config.Bare(err).Error(), "run doctor as root"
		case !fi.Mode().IsRegular():
			c.Summary, c.Fix = bin+" is not a regular file", "install the plugin binary as "+bin
		case fi.Mode().Perm()&0o111 == 0:
			target := bin
			if resolved, err := filepath.EvalSymlinks(bin); err == nil {
				target = resolved // CheckPath found root's all the way
			}
			c.Summary, c.Fix = bin+" is not executable (mode "+c.Details["mode"]+")", hostfile.ModeFix(target, 0o755)
		default:
			c.Status, c.Summary = StatusOK, bin+" is present, executable and only root can change it"
			if origin == "a common bin dir" {
				c.Summary += " (assuming the kubelet's --image-credential-provider-bin-dir is " + d + "; pass --bin-dir to check another)"
			}
		}
		r.add(c)
		return
	}
	if dir != "" {
		r.add(Check{ID: CheckBinary, Status: StatusFail, Details: map[string]string{"bin_dir": dir, "origin": origin},
			Summary: "no executable " + p.Name + " in " + dir + " (" + origin + "): the kubelet cannot run the plugin",
			Fix:     "install it there: 'install -m 0755 icr-credential-provider " + filepath.Join(dir, p.Name) + "' (or run the installer DaemonSet)"})
		return
	}
	r.add(Check{ID: CheckBinary, Status: StatusWarn,
		Summary: "no " + p.Name + " binary in the common bin dirs (" + strings.Join(r.env.BinDirs, ", ") + ")",
		Fix:     "pass --bin-dir with the kubelet's --image-credential-provider-bin-dir to check it; the binary must be named " + p.Name})
}

func (r *run) checkTokenAttributes(p *kubeletv1.CredentialProvider) {
	ta := p.TokenAttributes
	if ta == nil {
		r.add(Check{ID: CheckTokenAttributes, Status: StatusOK, Summary: "no tokenAttributes: every pod pulls with the node identity (service-account mode is off)"})
		return
	}
	d := map[string]string{"audience": ta.ServiceAccountTokenAudience, "cacheType": string(ta.CacheType),
		"required": strings.Join(ta.RequiredServiceAccountAnnotationKeys, ","), "optional": strings.Join(ta.OptionalServiceAccountAnnotationKeys, ",")}
	add := func(status Status, sum, fix string) {
		r.add(Check{ID: CheckTokenAttributes, Status: status, Details: d, Summary: sum, Fix: fix})
	}
	keys := slices.Concat(ta.RequiredServiceAccountAnnotationKeys, ta.OptionalServiceAccountAnnotationKeys)
	hasID, hasName := slices.Contains(keys, provider.AnnotationProfileID), slices.Contains(keys, provider.AnnotationProfileName)
	switch {
	case p.APIVersion != "credentialprovider.kubelet.k8s.io/v1":
		add(StatusFail, "tokenAttributes needs the provider's apiVersion credentialprovider.kubelet.k8s.io/v1, not "+p.APIVersion, "set apiVersion: credentialprovider.kubelet.k8s.io/v1")
	case ta.ServiceAccountTokenAudience != "iam":
		add(StatusFail, fmt.Sprintf("serviceAccountTokenAudience is %q: IAM only accepts service-account tokens for audience \"iam\"", ta.ServiceAccountTokenAudience), `set serviceAccountTokenAudience: "iam"`)
	case ta.RequireServiceAccount == nil:
		add(StatusFail, "tokenAttributes.requireServiceAccount is missing, which the kubelet requires", "set requireServiceAccount: false (pods without the annotation keep the node identity)")
	case !hasID && !hasName:
		add(StatusFail, "neither "+provider.AnnotationProfileID+" nor "+provider.AnnotationProfileName+" is in the annotation keys: the plugin never learns a pod's trusted profile",
			"add both to optionalServiceAccountAnnotationKeys")
	case slices.Contains(ta.RequiredServiceAccountAnnotationKeys, provider.AnnotationProfileID) && slices.Contains(ta.RequiredServiceAccountAnnotationKeys, provider.AnnotationProfileName):
		add(StatusFail, "both profile annotations are required: a service account with both is rejected as ambiguous, so no pod can pull",
			"move them to optionalServiceAccountAnnotationKeys")
	case len(ta.RequiredServiceAccountAnnotationKeys) > 0 && !*ta.RequireServiceAccount:
		add(StatusFail, "requiredServiceAccountAnnotationKeys is set but requireServiceAccount is false, which the kubelet rejects", "use optionalServiceAccountAnnotationKeys, or set requireServiceAccount: true")
	case ta.CacheType != kubeletv1.ServiceAccountServiceAccountTokenCacheType:
		add(StatusWarn, fmt.Sprintf("cacheType is %q: the kubelet asks again for every new service-account token", ta.CacheType),
			"set cacheType: ServiceAccount (the plugin's answer depends only on the service account and its annotations)")
	case !hasID || !hasName:
		add(StatusWarn, "only one of the two profile annotation keys is passed to the plugin",
			"add both "+provider.AnnotationProfileID+" and "+provider.AnnotationProfileName+" to optionalServiceAccountAnnotationKeys")
	default:
		add(StatusOK, "service-account mode: audience iam, cacheType "+string(ta.CacheType)+", profile annotations passed", "")
	}
}
