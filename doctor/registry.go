package doctor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// manifestAccept is what a container runtime sends when it resolves a tag.
var manifestAccept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// hostOnly is hostport without its port, if it has one.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// isLoopback: only a loopback host ("h" or "h:port") is spoken to over http.
func isLoopback(host string) bool { return provider.IsLoopback(hostOnly(host)) }

// regions are the IBM Cloud regions of ICR hosts' namespaces.
var regions = map[string]string{
	"icr.io": "global", "registry.bluemix.net": "global",
	"us.icr.io": "us-south", "registry.ng.bluemix.net": "us-south",
	"uk.icr.io": "eu-gb", "registry.eu-gb.bluemix.net": "eu-gb",
	"de.icr.io": "eu-de", "registry.eu-de.bluemix.net": "eu-de",
	"au.icr.io": "au-syd", "registry.au-syd.bluemix.net": "au-syd",
	"jp.icr.io": "jp-tok", "jp2.icr.io": "jp-osa", "ca.icr.io": "ca-tor", "br.icr.io": "br-sao", "es.icr.io": "eu-es",
}

// regionOf is an ICR host's region (private or not); "REGION" if unknown.
func regionOf(host string) string {
	return cmp.Or(regions[strings.TrimPrefix(strings.ToLower(host), "private.")], "REGION")
}

// policyCommand is the ibmcloud command that grants the token's identity
// Reader on the namespace.
func (r *run) policyCommand(img provider.Image) string {
	ns := cmp.Or(img.Namespace(), "NAMESPACE")
	tail := " --roles Reader --service-name container-registry --region " + regionOf(img.Host) + " --resource-type namespace --resource " + ns
	c := r.claims
	if c == nil {
		return "ibmcloud iam service-policy-create SERVICE_ID" + tail + " (or trusted-profile-policy-create PROFILE for a trusted profile)"
	}
	id := cmp.Or(c.Sub, strings.TrimPrefix(c.IAMID, "iam-"))
	switch c.SubType {
	case "Profile":
		return "ibmcloud iam trusted-profile-policy-create " + id + tail
	case "ServiceId":
		return "ibmcloud iam service-policy-create " + id + tail
	case "User", "":
		return "ibmcloud iam user-policy-create USER_EMAIL" + tail
	}
	return "grant " + c.SubType + " " + c.IAMID + " the Reader role on service container-registry, region " + regionOf(img.Host) + ", namespace " + ns
}

func (r *run) checkRegistries(ctx context.Context) {
	if r.env.Image != "" {
		img, err := provider.ParseImage(r.env.Image)
		if err != nil {
			r.add(Check{ID: CheckRegistryHost, Target: r.env.Image, Status: StatusFail, Summary: fmt.Sprintf("%q is not an image reference: %v", r.env.Image, err),
				Fix: "pass --image HOST/NAMESPACE/REPOSITORY[:TAG], e.g. us.icr.io/team/app:1.2"})
			return
		}
		r.checkRegistry(ctx, img.Host, &img)
		return
	}
	for _, h := range r.env.RegistryHosts {
		r.checkRegistry(ctx, h, nil)
	}
}

func (r *run) checkRegistry(ctx context.Context, host string, img *provider.Image) {
	target := host
	if img != nil {
		target = img.String()
	}
	fail := func(id, summary, fix string) {
		r.add(Check{ID: id, Target: target, Status: StatusFail, Summary: summary, Fix: fix})
	}
	// A token goes only to a host the plugin serves (so an explicit
	// --registries entry, never a host the image names alone), over https
	// unless the host is this machine.
	if r.hostsErr != nil {
		r.add(skipped(CheckRegistryHost, target, CheckSettings))
		return
	}
	if hosts, _ := r.env.Config.Hosts(); !hosts.Serves(host) {
		fix := "add it with --registries " + host + " (ICR_REGISTRIES) if it is an IBM Cloud Container Registry host"
		if strings.EqualFold(host, "cp.icr.io") {
			fix = "cp.icr.io (the entitled registry) takes an entitlement key, not IAM tokens: use an image pull secret for it"
		}
		fail(CheckRegistryHost, host+" is not a registry this plugin serves: the kubelet gets no credentials from it for this image", fix)
		return
	}
	if r.token.AccessToken == "" {
		r.add(skipped(CheckRegistryAuth, target, CheckToken))
		return
	}
	base := "https://" + host
	if isLoopback(host) {
		base = "http://" + host
	}

	// 1. the challenge
	resp, err := r.do(ctx, http.MethodGet, base+"/v2/", nil)
	if err != nil {
		fail(CheckRegistryAuth, "cannot reach the registry at "+base+": "+netText(err),
			"check the node's network path to "+host+" (firewall, DNS, HTTPS_PROXY/NO_PROXY in the kubelet's environment); nodes without public egress pull from private."+strings.TrimPrefix(host, "private."))
		return
	}
	resp.Body.Close()
	var realm, service string
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		var ok bool
		realm, service, ok = parseChallenge(resp.Header.Get("WWW-Authenticate"))
		if !ok {
			fail(CheckRegistryAuth, fmt.Sprintf("%s/v2/ answered 401 without a Bearer challenge (WWW-Authenticate %q)", base, secret.Line(resp.Header.Get("WWW-Authenticate"), 120)),
				"this is not a Docker registry API answer; check for a proxy answering in the registry's stead")
			return
		}
	case http.StatusOK:
		r.add(Check{ID: CheckRegistryAuth, Target: target, Status: StatusWarn, Summary: base + "/v2/ answered 200 without authentication",
			Fix: "an IBM Cloud Container Registry always asks for authentication; check that " + host + " is the registry you mean"})
		return
	default:
		fail(CheckRegistryAuth, fmt.Sprintf("%s/v2/ answered HTTP %d, not a 401 challenge", base, resp.StatusCode),
			"check for a proxy or firewall answering in the registry's stead, and https://cloud.ibm.com/status")
		return
	}
	ru, err := url.Parse(realm)
	if err != nil || !trustedRealm(ru, host) {
		fail(CheckRegistryAuth, "the registry's token realm "+secret.Line(realm, 200)+" is not an IBM Cloud registry host: doctor will not send the IAM token there",
			"check DNS and proxies for "+host+": something other than ICR answers")
		return
	}
	r.add(Check{ID: CheckRegistryAuth, Target: target, Status: StatusOK, Summary: fmt.Sprintf("%s/v2/ asks for a Bearer token from %s (service %q)", base, realm, service),
		Details: map[string]string{"realm": realm, "service": service}})

	// 2. the token exchange with iambearer
	q := ru.Query()
	if service != "" {
		q.Set("service", service)
	}
	if img != nil {
		q.Set("scope", "repository:"+img.Repository+":pull")
	}
	ru.RawQuery = q.Encode()
	resp, err = r.do(ctx, http.MethodGet, ru.String(), func(req *http.Request) { req.SetBasicAuth("iambearer", r.token.AccessToken) })
	if err != nil {
		fail(CheckRegistryToken, "cannot reach the registry's token service "+realm+": "+netText(err),
			"check the node's network path to "+ru.Host+" (firewall, DNS, HTTPS_PROXY/NO_PROXY)")
		return
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(body, &tr)
	}
	regTok := cmp.Or(tr.Token, tr.AccessToken)
	secret.Add(regTok)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		fail(CheckRegistryToken, fmt.Sprintf("the registry's token service refused the IAM token as iambearer (HTTP %d%s)", resp.StatusCode, regCode(body)),
			"the IAM token is not accepted by ICR: check that it comes from IAM of the same IBM Cloud (--iam-url, --private-endpoints) and that the account "+r.account()+" owns the registry namespace")
		return
	case resp.StatusCode != http.StatusOK:
		fail(CheckRegistryToken, fmt.Sprintf("the registry's token service answered HTTP %d%s", resp.StatusCode, regCode(body)),
			"the registry is failing; retry later and watch https://cloud.ibm.com/status")
		return
	case regTok == "":
		fail(CheckRegistryToken, "the registry's token service answered 200 without a token", "check for a proxy that rewrites the registry's answers")
		return
	}
	if img == nil {
		r.add(Check{ID: CheckRegistryToken, Target: target, Status: StatusOK, Summary: "the registry accepted the IAM token as iambearer and issued a registry token"})
		return
	}
	r.add(Check{ID: CheckRegistryToken, Target: target, Status: StatusOK,
		Summary: "the registry accepted the IAM token as iambearer and issued a registry token for repository:" + img.Repository + ":pull"})
	// 3. the manifest
	murl := base + "/v2/" + img.Repository + "/manifests/" + img.Ref
	auth := func(req *http.Request) {
		req.Header.Set("Authorization", "Bearer "+regTok)
		req.Header.Set("Accept", strings.Join(manifestAccept, ", "))
	}
	resp, err = r.do(ctx, http.MethodHead, murl, auth)
	if err != nil {
		fail(CheckRegistryManifest, "cannot reach "+murl+": "+netText(err), "check the node's network path to "+host)
		return
	}
	resp.Body.Close()
	status := resp.StatusCode
	code := ""
	if status >= 400 {
		// A HEAD answer has no body: ask again with GET for the error code.
		if g, err := r.do(ctx, http.MethodGet, murl, auth); err == nil {
			b, _ := io.ReadAll(io.LimitReader(g.Body, 64<<10))
			g.Body.Close()
			if g.StatusCode == status {
				code = regCode(b)
			}
		}
	}
	c := Check{ID: CheckRegistryManifest, Target: target, Status: StatusFail, Details: map[string]string{"url": murl, "http_status": fmt.Sprint(status)}}
	switch {
	case status == http.StatusOK:
		c.Details["digest"] = resp.Header.Get("Docker-Content-Digest")
		c.Details["media_type"] = resp.Header.Get("Content-Type")
		c.Status, c.Summary = StatusOK, "the identity may pull "+target+" (manifest "+c.Details["digest"]+")"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		c.Summary = fmt.Sprintf("pull of %s denied (HTTP %d%s): %s has no IAM policy granting Reader on namespace %s", target, status, code, r.who(), img.Namespace())
		c.Fix = r.policyCommand(*img)
	case status == http.StatusNotFound:
		what := "image or tag not found"
		if strings.Contains(code, "NAME_UNKNOWN") {
			what = "repository " + img.Repository + " not found"
		} else if strings.Contains(code, "MANIFEST_UNKNOWN") {
			what = "tag or digest " + img.Ref + " not found in " + img.Repository
		}
		c.Summary = fmt.Sprintf("%s (HTTP 404%s); authentication works", what, code)
		c.Fix = "check the image name and tag: 'ibmcloud cr images --restrict " + img.Repository + "' (in region " + regionOf(img.Host) + ") lists what exists"
	default:
		c.Summary = fmt.Sprintf("the registry answered HTTP %d%s for the manifest", status, code)
		c.Fix = "retry later and watch https://cloud.ibm.com/status"
	}
	r.add(c)
}

func (r *run) who() string {
	if r.claims == nil {
		return "the identity"
	}
	return r.claims.SubType + " " + r.claims.IAMID
}

func (r *run) account() string {
	if r.claims == nil || r.claims.Account.BSS == "" {
		return "of the identity"
	}
	return r.claims.Account.BSS
}

// do performs one request within the per-request timeout (reading the body
// included), never following a redirect (with credentials attached).
func (r *run) do(ctx context.Context, method, u string, prep func(*http.Request)) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "icr-credential-provider-doctor")
	if prep != nil {
		prep(req)
	}
	c := &http.Client{Transport: r.env.Transport, Timeout: r.env.RequestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return c.Do(req)
}

// netText names a network failure without the request URL (which the
// caller names) and never with credentials.
func netText(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "no answer in time"
	}
	return secret.Line(err.Error(), 200)
}

// regCode is ", CODE: message" of a registry error body.
func regCode(body []byte) string {
	var v struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Errors) == 0 {
		return ""
	}
	return ", " + secret.Line(v.Errors[0].Code+": "+v.Errors[0].Message, 160)
}

// parseChallenge parses a Bearer WWW-Authenticate header (quoted or
// unquoted values, as ICR has been seen to send both).
func parseChallenge(h string) (realm, service string, ok bool) {
	scheme, params, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "", false
	}
	for params != "" {
		params = strings.TrimLeft(params, " ,")
		k, rest, found := strings.Cut(params, "=")
		if !found {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := strings.Index(rest[1:], `"`)
			if end < 0 {
				v, rest = rest[1:], ""
			} else {
				v, rest = rest[1:1+end], rest[2+end:]
			}
		} else {
			v, rest, _ = strings.Cut(rest, ",")
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "realm":
			realm = v
		case "service":
			service = v
		}
		params = rest
	}
	return realm, service, realm != ""
}

// trustedRealm reports whether the IAM token may be sent to the realm: the
// registry host itself, or an IBM Cloud registry host over HTTPS; loopback
// registries (tests, the emulator) may use loopback realms.
func trustedRealm(u *url.URL, registryHost string) bool {
	if u == nil || u.Host == "" || u.User != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if isLoopback(registryHost) {
		return isLoopback(u.Host) && (u.Scheme == "http" || u.Scheme == "https")
	}
	if u.Scheme != "https" {
		return false
	}
	return host == strings.ToLower(hostOnly(registryHost)) ||
		host == "icr.io" || strings.HasSuffix(host, ".icr.io") || strings.HasSuffix(host, ".bluemix.net")
}
