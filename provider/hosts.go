package provider

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// icrRegions are the regional IBM Cloud Container Registry hosts
// (REGION.icr.io), each also reachable privately as private.REGION.icr.io.
var icrRegions = []string{"au", "br", "ca", "ca2", "de", "es", "in", "in2", "jp", "jp2", "uk", "us"}

// legacyHosts are the retired registry.bluemix.net names that still resolve
// to ICR.
var legacyHosts = []string{
	"registry.bluemix.net",
	"registry.ng.bluemix.net",
	"registry.eu-de.bluemix.net",
	"registry.eu-gb.bluemix.net",
	"registry.au-syd.bluemix.net",
}

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

// HostSet is the set of registry hosts the plugin answers with credentials.
// Membership is exact (no globs) and case-insensitive. Immutable after
// construction, so safe for concurrent use.
type HostSet struct {
	hosts map[string]bool
	list  []string
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
			return nil, fmt.Errorf("--registries entry %q %v: give exact hosts such as registry.example.com or 127.0.0.1:5000, comma-separated", e, err)
		}
		h.add(norm)
	}
	sort.Strings(h.list)
	return h, nil
}

func (h *HostSet) add(host string) {
	if !h.hosts[host] {
		h.hosts[host] = true
		h.list = append(h.list, host)
	}
}

// Hosts lists the served hosts, sorted. The caller must not modify it.
func (h *HostSet) Hosts() []string { return h.list }

// Serves reports whether host ("host" or "host:port", as returned by
// RegistryHost) is served. A default HTTPS port (":443") is the same host.
func (h *HostSet) Serves(host string) bool {
	host, ok := lowerASCII(host)
	if !ok {
		return false
	}
	if h.hosts[host] {
		return true
	}
	if name, port, err := net.SplitHostPort(host); err == nil && port == "443" {
		return h.hosts[name]
	}
	return false
}

// NormalizeHost checks a registry host — a configured --registries entry,
// the first component of an image reference, a credential helper's server
// URL without scheme and path — and returns it normalised (lower case). It
// must be an ASCII DNS name or IP literal with an optional port, and nothing
// else: no scheme, path, user info, glob or trailing dot.
func NormalizeHost(s string) (string, error) {
	s, ok := lowerASCII(s)
	if !ok {
		return "", fmt.Errorf("has non-ASCII characters (give an IDNA name in its xn-- form)")
	}
	name, port := s, ""
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		n, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf("is not host or host:port")
		}
		name, port = n, p
		if pn, err := strconv.Atoi(port); err != nil || pn < 1 || pn > 65535 {
			return "", fmt.Errorf("has an invalid port")
		}
	}
	if ip := net.ParseIP(name); ip != nil {
		if ip.To4() == nil && port != "" {
			return "[" + name + "]:" + port, nil
		}
		return s, nil
	}
	if !isDNSName(name) {
		return "", fmt.Errorf("is not a valid host name (globs, schemes, paths and user info are not allowed)")
	}
	return s, nil
}

// lowerASCII lower-cases an ASCII string; ok is false if s has any other
// byte. strings.ToLower is not enough for host names: it maps the Kelvin
// sign U+212A to an ASCII "k", so "u\u212a.icr.io" would become uk.icr.io.
func lowerASCII(s string) (lower string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// isDNSName reports whether s is a lower-case DNS name of ASCII labels
// (IDNA names must be given in their xn-- form), without a trailing dot.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// RegistryHost returns the registry host ("host" or "host:port", lower case)
// of an image reference as the kubelet passes it ("us.icr.io/team/app",
// possibly with a tag or digest when run by hand). Following the Docker
// reference grammar, a first path component that has no "." or ":" and is
// not "localhost" is not a host: such images live on docker.io. ok is false
// when the reference has no valid host at all, so that nothing is served for
// anything odd (user info, spaces, non-ASCII look-alikes).
func RegistryHost(image string) (host string, ok bool) {
	image = strings.TrimSpace(image)
	if image == "" || strings.ContainsFunc(image, unsafeInReference) {
		return "", false
	}
	// Tolerate a scheme when run by hand; the kubelet never sends one. Only
	// a leading scheme: "evil.example/x://us.icr.io/app" is on evil.example.
	if i := strings.Index(image, "://"); i >= 0 && isScheme(image[:i]) {
		image = image[i+3:]
	}
	first, _, hasSlash := strings.Cut(image, "/")
	if !hasSlash {
		return "docker.io", true
	}
	if !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io", true
	}
	norm, err := NormalizeHost(first)
	if err != nil {
		return "", false
	}
	return norm, true
}

// unsafeInReference reports the runes that never occur in an image
// reference: any Unicode space or control character (not only " \t\r\n":
// "\f", "\v", U+0085 and U+00A0 are spaces too) and a backslash.
func unsafeInReference(r rune) bool {
	return r == '\\' || unicode.IsSpace(r) || unicode.IsControl(r)
}

// isScheme reports whether s is a URL scheme (RFC 3986: ALPHA *( ALPHA /
// DIGIT / "+" / "-" / "." )).
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}
