package provider

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// icrRegions are the regional ICR hosts (REGION.icr.io), each also
// reachable privately as private.REGION.icr.io.
var icrRegions = []string{"au", "br", "ca", "ca2", "de", "es", "in", "in2", "jp", "jp2", "uk", "us"}

// legacyHosts are the retired names that still resolve to ICR.
var legacyHosts = []string{"registry.bluemix.net", "registry.ng.bluemix.net", "registry.eu-de.bluemix.net", "registry.eu-gb.bluemix.net", "registry.au-syd.bluemix.net"}

// DefaultHosts returns the registry hosts served without configuration:
// icr.io, every regional host, the private form of each, and the legacy
// bluemix names. Never cp.icr.io: the entitled registry takes entitlement
// keys, not IAM tokens.
func DefaultHosts() []string {
	hosts := []string{"icr.io", "private.icr.io"}
	for _, r := range icrRegions {
		hosts = append(hosts, r+".icr.io", "private."+r+".icr.io")
	}
	return append(hosts, legacyHosts...)
}

// HostSet is the set of registry hosts the plugin answers with credentials:
// exact (no globs), case-insensitive, "h:443" the same as h. Immutable, so
// safe for concurrent use.
type HostSet struct {
	hosts map[string]bool // without ":443"
	list  []string        // as configured, sorted: the response's auth keys
}

// NewHostSet returns DefaultHosts plus extra, each "host" or "host:port".
func NewHostSet(extra []string) (*HostSet, error) {
	h := &HostSet{hosts: map[string]bool{}}
	for _, d := range DefaultHosts() {
		h.add(d)
	}
	for _, e := range extra {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		norm, err := NormalizeHost(e)
		if err != nil {
			return nil, fmt.Errorf("--registries entry %q %v", e, err)
		}
		h.add(norm)
	}
	slices.Sort(h.list)
	h.list = slices.Compact(h.list)
	return h, nil
}

// add adds a normalised host; "h:443" and h are both answered for (the
// kubelet matches a response's auth keys port by port).
func (h *HostSet) add(host string) {
	h.list = append(h.list, host, withoutHTTPSPort(host))
	h.hosts[withoutHTTPSPort(host)] = true
}

// withoutHTTPSPort drops a ":443" port.
func withoutHTTPSPort(host string) string {
	if name, port, err := net.SplitHostPort(host); err == nil && port == "443" {
		if strings.Contains(name, ":") {
			return "[" + name + "]"
		}
		return name
	}
	return host
}

// Hosts lists the served hosts, sorted. The caller must not modify it.
func (h *HostSet) Hosts() []string { return h.list }

// Serves reports whether host ("host" or "host:port", as returned by
// RegistryHost) is served.
func (h *HostSet) Serves(host string) bool {
	host, ok := lowerASCII(host)
	return ok && h.hosts[withoutHTTPSPort(host)]
}

// NormalizeHost checks a registry host (a --registries entry, an image's
// first component, a server URL's host) and returns it in lower case: an
// ASCII DNS name or IP literal (IPv6 in brackets) with an optional port and
// nothing else; no glob, trailing dot or all-numeric top-level label
// (999.1.1.1 is neither a name nor an address).
func NormalizeHost(s string) (string, error) {
	s, ok := lowerASCII(s)
	if !ok {
		return "", fmt.Errorf("has non-ASCII characters (give an IDNA name in its xn-- form)")
	}
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("is a URL (give the host, and port if any, without the scheme)")
	}
	name := s
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		n, p, err := net.SplitHostPort(s)
		if err != nil {
			if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
				return "", fmt.Errorf("is not host or host:port")
			}
			n = s[1 : len(s)-1] // [v6] without a port
		} else if pn, err := strconv.Atoi(p); err != nil || pn < 1 || pn > 65535 || p[0] == '0' {
			return "", fmt.Errorf("has an invalid port")
		}
		name = n
		if strings.HasPrefix(s, "[") {
			if ip := net.ParseIP(name); ip == nil || ip.To4() != nil || strings.Contains(name, "%") {
				return "", fmt.Errorf("has brackets around something other than an IPv6 address")
			}
		}
	}
	if ip := net.ParseIP(name); ip != nil {
		if ip.To4() == nil && !strings.HasPrefix(s, "[") {
			return "[" + name + "]", nil // bare IPv6: no port possible
		}
		return s, nil
	}
	if !isDNSName(name) {
		return "", fmt.Errorf("is not a valid host name (globs, schemes, paths and user info are not allowed)")
	}
	return s, nil
}

// lowerASCII lower-cases an ASCII string; ok is false for any other. Not
// strings.ToLower: it maps the Kelvin sign U+212A to "k", so that
// "u\u212a.icr.io" would become uk.icr.io.
func lowerASCII(s string) (lower string, ok bool) {
	if strings.ContainsFunc(s, nonASCII) {
		return "", false
	}
	return strings.ToLower(s), true
}

// nonASCII reports a rune outside ASCII, invalid UTF-8's U+FFFD included.
func nonASCII(r rune) bool { return r >= utf8.RuneSelf }

// isDNSName reports whether s is a lower-case ASCII DNS name (IDNA in xn--
// form) without a trailing dot whose last label is not all digits.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
			strings.Trim(label, lowerAlpha+digits+"-") != "" {
			return false
		}
	}
	return strings.Trim(labels[len(labels)-1], digits) != ""
}

const (
	lowerAlpha = "abcdefghijklmnopqrstuvwxyz"
	alpha      = lowerAlpha + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits     = "0123456789"
)

// Image is an image reference split into its parts.
type Image struct {
	Host       string // "host" or "host:port", lower case
	Repository string // the path in the registry ("team/app")
	// Ref is the tag or digest; "latest" if neither, as the kubelet's image
	// normalisation does.
	Ref string
}

// String is the reference: host/repository:tag or host/repository@digest.
func (i Image) String() string {
	if strings.Contains(i.Ref, ":") {
		return i.Host + "/" + i.Repository + "@" + i.Ref
	}
	return i.Host + "/" + i.Repository + ":" + i.Ref
}

// Namespace is the repository's first component (ICR's namespace).
func (i Image) Namespace() string { ns, _, _ := strings.Cut(i.Repository, "/"); return ns }

// ParseImage splits an image reference ("us.icr.io/team/app", with a tag,
// digest, or a scheme typed by hand) into host, repository and reference. As
// in the Docker grammar, a first component without "." or ":" that is not
// "localhost" is no host: the image lives on docker.io. Anything odd (user
// info, spaces, control characters, non-ASCII look-alikes) is refused, so
// that nothing is served for it.
func ParseImage(ref string) (Image, error) {
	s := strings.TrimSpace(ref)
	if s == "" {
		return Image{}, errors.New("the image reference is empty")
	}
	if strings.ContainsFunc(s, unsafeInReference) {
		return Image{}, errors.New("the image reference has spaces, control characters or a backslash")
	}
	// Tolerate a scheme when run by hand; the kubelet never sends one. Only
	// a leading scheme: "evil.example/x://us.icr.io/app" is on evil.example.
	if i := strings.Index(s, "://"); i >= 0 && isScheme(s[:i]) {
		s = s[i+3:]
	}
	img := Image{Host: "docker.io"}
	first, rest, hasSlash := strings.Cut(s, "/")
	if hasSlash && (strings.ContainsAny(first, ".:") || first == "localhost") {
		host, err := NormalizeHost(first)
		if err != nil {
			return Image{}, fmt.Errorf("the image's registry host %s", err)
		}
		img.Host, s = host, rest
	}
	img.Ref = "latest"
	if i := strings.Index(s, "@"); i >= 0 {
		s, img.Ref = s[:i], s[i+1:]
	} else if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		s, img.Ref = s[:i], s[i+1:]
	}
	if s == "" || img.Ref == "" {
		return Image{}, errors.New("the image reference has no repository")
	}
	img.Repository = s
	return img, nil
}

// RegistryHost returns the registry host of an image reference (see
// ParseImage); ok is false when it has no valid host at all.
func RegistryHost(image string) (host string, ok bool) {
	img, err := ParseImage(image)
	return img.Host, err == nil
}

// ServerHost returns the registry host of a server URL as credential helper
// clients send it ("us.icr.io:443", "https://us.icr.io/v2/",
// "us.icr.io/team/app"); a single label ("registry") is a host here, not
// docker.io. ok is false without a valid host, with user info, or with a
// scheme other than https — plain http only to loopback: a token is never
// handed out for a connection without TLS.
func ServerHost(serverURL string) (host string, ok bool) {
	s := strings.TrimSpace(serverURL)
	if s == "" || strings.ContainsFunc(s, notInServerURL) {
		return "", false
	}
	scheme := ""
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, s = strings.ToLower(s[:i]), s[i+3:]
		if scheme != "http" && scheme != "https" {
			return "", false
		}
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	h, err := NormalizeHost(s)
	if err != nil || scheme == "http" && !IsLoopback((&url.URL{Host: h}).Hostname()) {
		return "", false
	}
	return h, true
}

// unsafeInReference reports the runes never in an image reference: a
// backslash, and any Unicode space or control character (U+0085, U+00A0…).
func unsafeInReference(r rune) bool {
	return r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r)
}

// notInServerURL reports the runes a server URL never holds: user info's
// "@", non-ASCII (IDNA is sent in xn-- form), and unsafeInReference's.
func notInServerURL(r rune) bool {
	return r == '@' || nonASCII(r) || unsafeInReference(r)
}

// isScheme reports whether s is a URL scheme (RFC 3986: ALPHA *( ALPHA /
// DIGIT / "+" / "-" / "." )).
func isScheme(s string) bool {
	return s != "" && strings.IndexByte(alpha, s[0]) >= 0 && strings.Trim(s, alpha+digits+"+-.") == ""
}

// IsLoopback reports whether host (a name or an address, without a port)
// is this machine: "localhost" or a loopback address.
func IsLoopback(host string) bool {
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
