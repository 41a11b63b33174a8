// Package provider implements the kubelet's exec credential provider
// protocol for IBM Cloud Container Registry: it decodes a
// CredentialProviderRequest (v1, v1beta1 or v1alpha1) with the kubelet's own
// scheme, decides whether the image's registry is served, and answers with a
// CredentialProviderResponse in the request's own API version. It knows
// nothing about HTTP or IAM; tokens come from a Credentials value.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"

	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// Username is what ICR expects as the user name with an IAM access token.
const Username = "iambearer"

// MaxRequestSize bounds the request read from stdin. A real request is a few
// hundred bytes, a few kilobytes with a service-account token.
const MaxRequestSize = 1 << 20

// NotServedCacheDuration is how long the kubelet may remember that this
// plugin has no credentials for a registry. The answer only changes when the
// plugin's configuration changes, which needs a kubelet restart anyway.
const NotServedCacheDuration = 24 * time.Hour

// StaleCacheDuration bounds how long the kubelet keeps a token that is past
// its refresh point: one served because IAM or the metadata service failed
// (stale-if-error). The kubelet asks again soon, when IAM may be back.
const StaleCacheDuration = time.Minute

// Supported API versions of credentialprovider.kubelet.k8s.io, newest first.
var supportedVersions = []string{"v1", "v1beta1", "v1alpha1"}

// Request is what the plugin needs to know about one kubelet request.
type Request struct {
	// Image is the image as the kubelet passed it.
	Image string
	// Host is the image's registry host, lower case, with port if any.
	Host string
	// ServiceAccountToken is the pod's service-account token when the
	// kubelet is configured to pass one. A secret: never log it.
	ServiceAccountToken string
	// ServiceAccountAnnotations are the annotations the kubelet passed.
	ServiceAccountAnnotations map[string]string
}

// Credentials yields the IAM token to answer a request with.
type Credentials interface {
	Token(ctx context.Context, req Request) (iam.Token, error)
}

// CredentialsFunc adapts a function to Credentials.
type CredentialsFunc func(ctx context.Context, req Request) (iam.Token, error)

// Token calls f.
func (f CredentialsFunc) Token(ctx context.Context, req Request) (iam.Token, error) {
	return f(ctx, req)
}

// Plugin answers kubelet requests. Its fields are read-only once in use;
// Run is safe for concurrent use.
type Plugin struct {
	// Hosts are the registries served.
	Hosts *HostSet
	// Credentials supplies tokens for served registries.
	Credentials Credentials
	// Now is the clock (time.Now).
	Now func() time.Time
}

// InputError is a request the plugin cannot read. Its message names the
// problem and what to send instead.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

const sampleHint = "the kubelet sends a CredentialProviderRequest; by hand, pipe one such as examples/requests/v1.json"

var (
	schemeOnce sync.Once
	scheme     *runtime.Scheme
	codecs     serializer.CodecFactory
)

// kubeletScheme is the kubelet's own scheme for the credential provider API,
// built on first use so that commands that never decode pay nothing.
func kubeletScheme() (*runtime.Scheme, serializer.CodecFactory) {
	schemeOnce.Do(func() {
		scheme = runtime.NewScheme()
		install.Install(scheme)
		codecs = serializer.NewCodecFactory(scheme)
	})
	return scheme, codecs
}

// DecodeRequest reads and decodes one request, returning it with the API
// version it came in.
func DecodeRequest(r io.Reader) (*credentialprovider.CredentialProviderRequest, schema.GroupVersion, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRequestSize+1))
	if err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("cannot read the request from stdin: %v", err)
	}
	if len(data) > MaxRequestSize {
		return nil, schema.GroupVersion{}, inputErrorf("request on stdin is larger than %d KiB: %s", MaxRequestSize>>10, sampleHint)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, schema.GroupVersion{}, inputErrorf("no request on stdin: %s", sampleHint)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("request on stdin is not a JSON object (%v): %s", jsonProblem(err), sampleHint)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil || tm.APIVersion == "" {
		return nil, schema.GroupVersion{}, inputErrorf("request has apiVersion %q: want %s/v1 (or v1beta1, v1alpha1)", tm.APIVersion, credentialprovider.GroupName)
	}
	if gv.Group != credentialprovider.GroupName {
		return nil, schema.GroupVersion{}, inputErrorf("request has API group %q: want %s/v1 (or v1beta1, v1alpha1)", gv.Group, credentialprovider.GroupName)
	}
	if !supported(gv.Version) {
		return nil, schema.GroupVersion{}, inputErrorf("request has unsupported API version %q: this plugin speaks %s/v1, v1beta1 and v1alpha1; set apiVersion in the kubelet's CredentialProviderConfig to one of them", tm.APIVersion, credentialprovider.GroupName)
	}
	if tm.Kind != "CredentialProviderRequest" {
		return nil, schema.GroupVersion{}, inputErrorf("request has kind %q: want CredentialProviderRequest", tm.Kind)
	}
	_, codecs := kubeletScheme()
	obj, _, err := codecs.UniversalDecoder(credentialprovider.SchemeGroupVersion).Decode(data, nil, nil)
	if err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("cannot decode the %s request: %v: %s", gv.Version, err, sampleHint)
	}
	req, ok := obj.(*credentialprovider.CredentialProviderRequest)
	if !ok {
		return nil, schema.GroupVersion{}, inputErrorf("request decoded to %T, not a CredentialProviderRequest", obj)
	}
	return req, gv, nil
}

func supported(v string) bool {
	for _, s := range supportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// jsonProblem describes a JSON error without quoting the input, which may
// hold a service-account token.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends early"
	}
	return "invalid JSON"
}

// EncodeResponse encodes resp in version gv with the kubelet's scheme.
func EncodeResponse(resp *credentialprovider.CredentialProviderResponse, gv schema.GroupVersion) ([]byte, error) {
	_, codecs := kubeletScheme()
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		return nil, errors.New("no JSON serializer in the kubelet scheme")
	}
	return runtime.Encode(codecs.EncoderForVersion(info.Serializer, gv), resp)
}

// Run reads one request from in and writes the response to out. On error
// nothing is written to out.
func (p *Plugin) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	req, gv, err := DecodeRequest(in)
	if err != nil {
		return err
	}
	resp, err := p.Respond(ctx, req)
	if err != nil {
		return err
	}
	data, err := EncodeResponse(resp, gv)
	if err != nil {
		return fmt.Errorf("encode the response: %w", err)
	}
	// One write of a complete document: the kubelet never sees half an
	// answer from us.
	if _, err := out.Write(data); err != nil {
		return fmt.Errorf("write the response to stdout: %w", err)
	}
	return nil
}

// Respond builds the response for a decoded request.
func (p *Plugin) Respond(ctx context.Context, req *credentialprovider.CredentialProviderRequest) (*credentialprovider.CredentialProviderResponse, error) {
	if req.Image == "" {
		return nil, inputErrorf("request has no image: %s", sampleHint)
	}
	host, ok := RegistryHost(req.Image)
	if !ok || !p.Hosts.Serves(host) {
		return &credentialprovider.CredentialProviderResponse{
			CacheKeyType:  credentialprovider.RegistryPluginCacheKeyType,
			CacheDuration: &metav1.Duration{Duration: NotServedCacheDuration},
		}, nil
	}
	tok, err := p.Credentials.Token(ctx, Request{
		Image:                     req.Image,
		Host:                      host,
		ServiceAccountToken:       req.ServiceAccountToken,
		ServiceAccountAnnotations: req.ServiceAccountAnnotations,
	})
	if err != nil {
		return nil, err
	}
	now := p.now()
	if !tok.Valid(now) {
		return nil, fmt.Errorf("the token for %s expired at %s before it could be used: check the node's clock", host, tok.Expiry.UTC().Format(time.RFC3339))
	}
	auth := make(map[string]credentialprovider.AuthConfig, len(p.Hosts.Hosts()))
	for _, h := range p.Hosts.Hosts() {
		auth[h] = credentialprovider.AuthConfig{Username: Username, Password: tok.AccessToken}
	}
	return &credentialprovider.CredentialProviderResponse{
		CacheKeyType:  credentialprovider.GlobalPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: CacheDuration(tok, now)},
		Auth:          auth,
	}, nil
}

// CacheDuration is how long the kubelet may keep tok: until its refresh
// point (its expiry minus its refresh margin), so that the kubelet never
// holds a token inside that margin; for a token already past its refresh
// point (served stale because a refresh failed), briefly.
func CacheDuration(tok iam.Token, now time.Time) time.Duration {
	if d := tok.RefreshAt().Sub(now); d > 0 {
		return d.Truncate(time.Second)
	}
	d := tok.Expiry.Sub(now) / 2
	if d > StaleCacheDuration {
		d = StaleCacheDuration
	}
	return d.Truncate(time.Second)
}

func (p *Plugin) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}
