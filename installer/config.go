package installer

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// Marker is the first line of every config file the installer writes (a
// YAML comment); a file without it is only replaced with --force.
const Marker = "# Written by icr-credential-provider install"

// header precedes the YAML of a written config.
const header = Marker + `; changes here are lost at the next install.
# To manage this file by hand, delete the first line: the installer then leaves it alone.
`

// DefaultName is the file name of the binary in the kubelet's bin dir and
// the provider's name in the config: the kubelet runs <bin-dir>/<name>.
const DefaultName = "icr-credential-provider"

// DefaultCacheDuration is the config's defaultCacheDuration, which the
// kubelet requires although the plugin always sets cacheDuration.
const DefaultCacheDuration = 10 * time.Minute

// ProviderAPIVersion is the exec protocol version the config asks for.
const ProviderAPIVersion = "credentialprovider.kubelet.k8s.io/v1"

// DefaultMatchImages cover every registry the plugin serves by default.
// Globs match label by label: "*.icr.io" matches neither "icr.io" nor
// "private.us.icr.io"; it matches cp.icr.io, which gets an empty answer.
func DefaultMatchImages() []string {
	return []string{"icr.io", "*.icr.io", "private.icr.io", "private.*.icr.io", "registry.bluemix.net", "registry.*.bluemix.net"}
}

// ServiceAccountTokenAttributes is service-account mode's tokenAttributes:
// the kubelet passes the pod's service-account token (audience iam) and the
// profile annotations; pods without one still get the node identity.
func ServiceAccountTokenAttributes() *kubeletv1.ServiceAccountTokenAttributes {
	return &kubeletv1.ServiceAccountTokenAttributes{
		ServiceAccountTokenAudience:          provider.ServiceAccountAudience,
		CacheType:                            kubeletv1.ServiceAccountServiceAccountTokenCacheType,
		RequireServiceAccount:                new(false),
		OptionalServiceAccountAnnotationKeys: []string{provider.AnnotationProfileID, provider.AnnotationProfileName},
	}
}

// Provider is what the installer puts in the config's single provider entry.
type Provider struct {
	Name                 string                                   // the binary's file name in the bin dir; "": DefaultName
	MatchImages          []string                                 // empty: DefaultMatchImages()
	Args                 []string                                 // the plugin's logging flags (--v, …): not settings
	Env                  []kubeletv1.ExecEnvVar                   // the ICR_* settings, never a secret (a key goes by file)
	TokenAttributes      *kubeletv1.ServiceAccountTokenAttributes // non-nil: service-account mode
	DefaultCacheDuration time.Duration                            // 0: DefaultCacheDuration
	// APIKeyFileWritten is the key file install wrote (--api-key-from), as
	// the host sees it: named in a comment so that uninstall removes it.
	APIKeyFileWritten string
}

const apiKeyComment = "# API key file written by install (uninstall removes it): "

// APIKeyFileWritten returns the key file a config written by install says
// it wrote, "" if none.
func APIKeyFileWritten(content []byte) string {
	if !WrittenByInstaller(content) {
		return ""
	}
	for line := range strings.SplitSeq(string(content), "\n") {
		if !strings.HasPrefix(line, "#") {
			break
		}
		if p, ok := strings.CutPrefix(line, apiKeyComment); ok {
			return strings.TrimSpace(p)
		}
	}
	return ""
}

// Config renders the CredentialProviderConfig for p: the marker line, then
// YAML, checked by decoding it strictly again.
func Config(p Provider) ([]byte, error) {
	p.Name = cmp.Or(p.Name, DefaultName)
	if err := validName(p.Name); err != nil {
		return nil, err
	}
	if len(p.MatchImages) == 0 {
		p.MatchImages = DefaultMatchImages()
	}
	p.DefaultCacheDuration = cmp.Or(p.DefaultCacheDuration, DefaultCacheDuration)
	if p.DefaultCacheDuration < 0 {
		return nil, fmt.Errorf("default cache duration %v is negative", p.DefaultCacheDuration)
	}
	for _, e := range p.Env {
		if e.Name == "IBMCLOUD_API_KEY" || e.Name == "ICR_API_KEY" {
			return nil, fmt.Errorf("%s would put a secret into the kubelet config: reference a file with ICR_API_KEY_FILE instead", e.Name)
		}
	}
	cfg := kubeletv1.CredentialProviderConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: kubeletv1.SchemeGroupVersion.String(), Kind: "CredentialProviderConfig"},
		Providers: []kubeletv1.CredentialProvider{{
			Name:                 p.Name,
			APIVersion:           ProviderAPIVersion,
			MatchImages:          p.MatchImages,
			DefaultCacheDuration: &metav1.Duration{Duration: p.DefaultCacheDuration},
			Args:                 p.Args,
			Env:                  p.Env,
			TokenAttributes:      p.TokenAttributes,
		}},
	}
	y, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("rendering the kubelet config: %v", err)
	}
	out := []byte(header)
	if p.APIKeyFileWritten != "" {
		if strings.ContainsAny(p.APIKeyFileWritten, "\n\r") {
			return nil, fmt.Errorf("API key file %q has a line break", p.APIKeyFileWritten)
		}
		out = append(out, apiKeyComment+p.APIKeyFileWritten+"\n"...)
	}
	out = append(out, y...)
	if _, err := DecodeConfig(out); err != nil {
		return nil, fmt.Errorf("the rendered kubelet config does not decode: %v", err)
	}
	return out, nil
}

// DecodeConfig decodes a CredentialProviderConfig as the kubelet does
// (decodeAnyVersion) and requires the version install writes.
func DecodeConfig(data []byte) (*kubeletv1.CredentialProviderConfig, error) {
	v, cfg, err := decodeAnyVersion(data)
	if err != nil {
		return nil, err
	}
	if v != kubeletv1.SchemeGroupVersion.String() {
		return nil, fmt.Errorf("apiVersion %q, want %s", v, kubeletv1.SchemeGroupVersion)
	}
	return cfg, nil
}

// WrittenByInstaller reports whether content's first line carries the Marker.
func WrittenByInstaller(content []byte) bool {
	first, _, _ := bytes.Cut(content, []byte("\n"))
	return strings.HasPrefix(strings.TrimSpace(string(first)), Marker)
}

func validName(name string) error {
	if name == "." || name == ".." || strings.ContainsAny(name, "/ \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("binary name %q is not a plain file name: the kubelet runs <bin-dir>/<provider name>", name)
	}
	return nil
}
