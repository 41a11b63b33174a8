package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/hostfile"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// checkAPIKey: the API key file's existence, type, permissions and content
// (a fingerprint of the key, never the key), or $IBMCLOUD_API_KEY, when the
// configuration would use one.
func (r *run) checkAPIKey() {
	c := r.env.Config
	sel, err := c.Select(r.env.Getenv)
	if err != nil || sel.Kind != config.SourceAPIKey {
		sum := "no API key is configured: the node identity comes from the VPC metadata service"
		if err != nil {
			sum = "not checked: the settings do not select an identity (see " + CheckSettings + ")"
		} else if c.APIKeyFile != "" || r.env.Getenv(config.APIKeyEnv) != "" {
			sum = "an API key is configured but ignored: --token-source vpc-metadata"
		}
		r.add(Check{ID: CheckAPIKey, Status: StatusSkip, Summary: sum})
		return
	}
	if sel.KeyFromEnv {
		id, err := c.Node(r.env.Getenv, r.env.IAM)
		if err != nil {
			r.add(failedWith(CheckAPIKey, err, nil))
			return
		}
		fp := id.Fingerprint
		r.add(Check{ID: CheckAPIKey, Status: StatusWarn,
			Summary: "API key from $" + config.APIKeyEnv + " (fingerprint " + fp + ")",
			Fix:     "an environment variable is visible to every process of the kubelet's user and in its unit file; prefer --api-key-file with a 0600 file",
			Details: map[string]string{"source": "$" + config.APIKeyEnv, "fingerprint": fp}})
		return
	}

	path := c.APIKeyFile
	d := map[string]string{"path": path}
	if fi := lstatDetails(path, d); fi != nil {
		d["size"] = strconv.FormatInt(fi.Size(), 10)
		if fi.Mode()&fs.ModeSymlink != 0 {
			d["symlink"] = "true"
		}
	}
	key, warns, err := config.LoadAPIKeyFile(path)
	if err != nil {
		r.add(failedWith(CheckAPIKey, err, d))
		return
	}
	fp := secret.Fingerprint(key)
	d["fingerprint"] = fp
	chk := Check{ID: CheckAPIKey, Status: StatusOK, Details: d,
		Summary: fmt.Sprintf("API key file %s holds a key (fingerprint %s), mode %s", path, fp, d["mode"])}
	if len(warns) > 0 {
		chk.Status = StatusWarn
		chk.Summary, chk.Fix = "API key file "+path+" (fingerprint "+fp+") is readable by other users (mode "+d["mode"]+")", hostfile.ModeFix(path, 0o600)
	}
	if uid, ok := d["owner_uid"]; ok && uid != "0" && chk.Status == StatusOK {
		chk.Status = StatusWarn
		chk.Summary += ", owned by uid " + uid
		chk.Fix = "the kubelet runs the plugin as root, and the file's owner chooses its identity: " + hostfile.ModeFix(path, 0o600)
	}
	r.add(chk)
}

// failedWith is the failed check id for err: the cause, fix and facts
// (not d) of an *iam.Error, the cause and fix of a *config.Error; any other
// error is all cause.
func failedWith(id string, err error, d map[string]string) Check {
	c := Check{ID: id, Status: StatusFail, Summary: err.Error(), Details: d}
	var ie *iam.Error
	var ce *config.Error
	switch {
	case errors.As(err, &ie):
		c.Summary, c.Fix = ie.Cause(), ie.Fix
		c.Details = map[string]string{"reason": string(ie.Reason)}
		if ie.Status != 0 {
			c.Details["http_status"] = fmt.Sprint(ie.Status)
		}
		if ie.Attempts > 0 {
			c.Details["attempts"] = fmt.Sprint(ie.Attempts)
		}
		setNonEmpty(c.Details, map[string]string{"endpoint": ie.Endpoint, "path": ie.Path,
			"code": ie.Code, "message": ie.Message})
	case errors.As(err, &ce):
		c.Summary, c.Fix = ce.Cause, ce.Fix
	}
	return c
}

// checkSettings resolves the node identity as kubelet mode would and shows
// what is in force and why.
func (r *run) checkSettings() {
	c := r.env.Config
	d := map[string]string{
		"iam_url":      c.EffectiveIAMURL(),
		"metadata_url": c.MetadataURL,
		"token_source": c.TokenSource,
		"cache_dir":    c.CacheDir,
	}
	setNonEmpty(d, map[string]string{"registries": strings.Join(c.Registries, ","),
		"profile_id": c.ProfileID, "profile_crn": c.ProfileCRN, "profile_name": c.ProfileName, "api_key_file": c.APIKeyFile})
	if r.env.Getenv(config.APIKeyEnv) != "" {
		d["IBMCLOUD_API_KEY"] = "set"
	}
	for name, origin := range r.env.Origins {
		if origin != "default" {
			d["origin."+name] = origin
		}
	}
	if _, err := c.Hosts(); err != nil {
		r.hostsErr = err
		r.add(failedWith(CheckSettings, err, d))
		return
	}
	id, err := c.Node(r.env.Getenv, r.env.IAM)
	if err != nil {
		if slices.ContainsFunc(r.checks, func(c Check) bool { return c.ID == CheckAPIKey && c.Status == StatusFail }) {
			r.add(skipped(CheckSettings, "", CheckAPIKey))
			return
		}
		r.add(failedWith(CheckSettings, err, d))
		return
	}
	r.id = id
	d["identity"] = id.Describe
	d["why"] = id.Why
	chk := Check{ID: CheckSettings, Status: StatusOK, Details: d,
		Summary: fmt.Sprintf("identity: %s (token source %s, because %s); IAM %s", id.Describe, id.Kind, id.Why, c.EffectiveIAMURL())}
	if w := c.Warnings(); len(w) > 0 {
		chk.Status, chk.Fix = StatusWarn, w[0]
	}
	r.add(chk)
}

// lstatDetails adds the mode and owner of path (not following a link) to d.
func lstatDetails(path string, d map[string]string) fs.FileInfo {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil
	}
	d["mode"] = fmt.Sprintf("%04o", fi.Mode().Perm())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		d["owner_uid"] = strconv.Itoa(int(st.Uid))
	}
	return fi
}

// checkCacheDir checks the on-disk token cache directory as the plugin
// would use it (cache.CheckDir: ownership, mode, no symbolic link).
func (r *run) checkCacheDir() {
	dir := r.env.Config.DiskCacheDir()
	if dir == "" {
		r.add(Check{ID: CheckCacheDir, Status: StatusSkip, Summary: "the disk token cache is off (--cache-dir none): each kubelet invocation with a cold in-process cache asks IAM for a token"})
		return
	}
	d := map[string]string{"path": dir}
	lstatDetails(dir, d)
	asWho := ""
	if r.env.Euid != 0 {
		asWho = fmt.Sprintf(" (doctor runs as uid %d; the kubelet runs the plugin as root: run doctor as root for the kubelet's view)", r.env.Euid)
	}
	err := cache.CheckDir(dir)
	switch {
	case err == nil:
		r.add(Check{ID: CheckCacheDir, Status: StatusOK, Details: d, Summary: "token cache dir " + dir + " is usable (mode " + d["mode"] + ", owner uid " + d["owner_uid"] + ")"})
	case errors.Is(err, fs.ErrNotExist):
		r.add(Check{ID: CheckCacheDir, Status: StatusOK, Details: d, Summary: "token cache dir " + dir + " does not exist yet; the plugin creates it (0700) on first use"})
	case errors.Is(err, cache.ErrUnsafeDir):
		r.add(Check{ID: CheckCacheDir, Status: StatusWarn, Details: d,
			Summary: "the plugin will not use token cache dir " + dir + ": " + err.Error() + asWho,
			Fix:     "tokens are then not shared between invocations (more IAM calls): " + hostfile.ModeFix(dir, 0o700)})
	default:
		r.add(Check{ID: CheckCacheDir, Status: StatusWarn, Details: d,
			Summary: "token cache dir " + dir + " is not usable: " + err.Error() + asWho,
			Fix:     "make " + dir + " a directory owned by root, mode 0700, or set --cache-dir to one (tmpfs such as /run is best)"})
	}
}
