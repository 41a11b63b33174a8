// Package provider implements the kubelet's exec credential provider
// protocol for IBM Cloud Container Registry: it decodes a
// CredentialProviderRequest (v1, v1beta1 or v1alpha1) with the kubelet's own
// scheme and answers in the request's API version, with a token from a
// token.Source if the image's registry is served. No HTTP, no IAM.
package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/versioning"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	v1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"k8s.io/kubelet/pkg/apis/credentialprovider/v1alpha1"
	"k8s.io/kubelet/pkg/apis/credentialprovider/v1beta1"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// Username is what ICR expects as the user name with an IAM access token.
const Username = "iambearer"

// MaxRequestSize bounds the request read from stdin (a few KiB at most).
const MaxRequestSize = 1 << 20

// NotServedCacheDuration is how long the kubelet may remember that a
// registry is not served: only a change of configuration (and restart) can
// change that.
const NotServedCacheDuration = 24 * time.Hour

// StaleCacheDuration bounds how long the kubelet keeps a token past its
// refresh point (served because a refresh failed), so that it asks again
// soon, when IAM may be back.
const StaleCacheDuration = time.Minute

// SupportedVersions are the API versions of credentialprovider.kubelet.k8s.io
// the plugin speaks, newest first.
var SupportedVersions = []string{"v1", "v1beta1", "v1alpha1"}

// Request is what picks the identity that answers a kubelet request.
type Request struct {
	ServiceAccountToken       string            // the pod's, if the kubelet passes one; a secret: never log it
	ServiceAccountAnnotations map[string]string // as the kubelet passed them
}

// Plugin answers kubelet requests. Its fields are read-only once in use;
// Run is safe for concurrent use.
type Plugin struct {
	Hosts *HostSet     // the registries served
	Node  token.Source // the node's identity, for every service account that asks for none of its own
	// Workload returns the identity a pod's service account asks for; nil
	// when workload identities are off. Such a service account never gets
	// the node identity instead.
	Workload func(Workload) (token.Source, error)
	Now      func() time.Time // nil: time.Now
}

// InputError is a request the plugin cannot read. Its message names the
// problem and what to send instead.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

const sampleHint = "the kubelet sends a CredentialProviderRequest; by hand, pipe one such as examples/requests/v1.json"

// versionCodecs decode a request of one of SupportedVersions into the
// internal type and encode the response back into that version: the
// kubelet's scheme and JSON serializer for that version alone, the pieces
// its codec factory puts together (the tests hold the bytes equal). Each is
// built on first use: the whole factory cost the first decode and encode
// 0.06-0.35 ms more.
var versionCodecs = map[string]func() runtime.Codec{
	"v1":       codecFor(v1.SchemeGroupVersion, v1.AddToScheme),
	"v1beta1":  codecFor(v1beta1.SchemeGroupVersion, v1beta1.AddToScheme),
	"v1alpha1": codecFor(v1alpha1.SchemeGroupVersion, v1alpha1.AddToScheme),
}

func codecFor(gv schema.GroupVersion, addVersion func(*runtime.Scheme) error) func() runtime.Codec {
	return sync.OnceValue(func() runtime.Codec {
		scheme := runtime.NewScheme()
		utilruntime.Must(credentialprovider.AddToScheme(scheme))
		utilruntime.Must(addVersion(scheme))
		json := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{})
		return versioning.NewDefaultingCodecForScheme(scheme, json, json, gv, credentialprovider.SchemeGroupVersion)
	})
}

// Complete marks r as input whose reads cannot block: a regular file, or a
// pipe whose writing end is closed (the kubelet writes the request and
// closes the pipe as it starts the plugin). ReadInput reads it directly,
// never waiting on its context: a context that sets something up when first
// waited on (the plugin's SIGTERM handling) costs nothing then.
func Complete(r io.Reader) io.Reader { return complete{r} }

type complete struct{ io.Reader }

// ReadInput reads all of r, at most limit bytes (more is an error), until
// ctx is done: a writer that trickles or never closes its input does not
// keep the process past its deadline or a SIGTERM. (The read goes on in the
// background until the process exits.) Input marked Complete is read
// directly.
func ReadInput(ctx context.Context, r io.Reader, limit int64) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	var res result
	if c, ok := r.(complete); ok {
		res.data, res.err = io.ReadAll(io.LimitReader(c.Reader, limit+1))
	} else {
		// ctx.Done before the read starts: whatever a context does when first
		// waited on (listen for SIGTERM) is done before the read can block.
		stop := ctx.Done()
		done := make(chan result, 1)
		go func() {
			data, err := io.ReadAll(io.LimitReader(r, limit+1))
			done <- result{data, err}
		}()
		select {
		case res = <-done:
		case <-stop:
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, errors.New("stdin did not end within the invocation's time limit")
			}
			return nil, errors.New("stdin did not end before the process was told to stop")
		}
	}
	if res.err != nil {
		return nil, fmt.Errorf("cannot read stdin: %v", res.err)
	}
	if int64(len(res.data)) > limit {
		return nil, fmt.Errorf("stdin is larger than %d KiB", limit>>10)
	}
	return res.data, nil
}

// DecodeRequest reads and decodes one request, returning it with the API
// version it came in.
func DecodeRequest(ctx context.Context, r io.Reader) (*credentialprovider.CredentialProviderRequest, schema.GroupVersion, error) {
	data, err := ReadInput(ctx, r, MaxRequestSize)
	if err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("%v: %s", err, sampleHint)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, schema.GroupVersion{}, inputErrorf("no request on stdin: %s", sampleHint)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("request on stdin is not a JSON object (%s): %s", DescribeJSONError(err, data), sampleHint)
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil || tm.APIVersion == "" {
		return nil, schema.GroupVersion{}, inputErrorf("request has apiVersion %q: want %s/v1 (or v1beta1, v1alpha1)", tm.APIVersion, credentialprovider.GroupName)
	}
	if gv.Group != credentialprovider.GroupName {
		return nil, schema.GroupVersion{}, inputErrorf("request has API group %q: want %s/v1 (or v1beta1, v1alpha1)", gv.Group, credentialprovider.GroupName)
	}
	if !slices.Contains(SupportedVersions, gv.Version) {
		return nil, schema.GroupVersion{}, inputErrorf("request has unsupported API version %q: this plugin speaks %s/v1, v1beta1 and v1alpha1; set apiVersion in the kubelet's CredentialProviderConfig to one of them", tm.APIVersion, credentialprovider.GroupName)
	}
	if tm.Kind != "CredentialProviderRequest" {
		return nil, schema.GroupVersion{}, inputErrorf("request has kind %q: want CredentialProviderRequest", tm.Kind)
	}
	obj, _, err := versionCodecs[gv.Version]().Decode(data, nil, nil)
	if err != nil {
		return nil, schema.GroupVersion{}, inputErrorf("cannot decode the %s request: %v: %s", gv.Version, err, sampleHint)
	}
	req, ok := obj.(*credentialprovider.CredentialProviderRequest)
	if !ok {
		return nil, schema.GroupVersion{}, inputErrorf("request decoded to %T, not a CredentialProviderRequest", obj)
	}
	return req, gv, nil
}

// maxJSONDepth is encoding/json's nesting limit.
const maxJSONDepth = 10000

// DescribeJSONError describes why data did not decode (err) without quoting
// it: the input may hold a service-account token or a credential.
func DescribeJSONError(err error, data []byte) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case jsonDepth(data) > maxJSONDepth:
		return fmt.Sprintf("it is nested more than %d levels deep", maxJSONDepth)
	case errors.Is(err, io.EOF), len(bytes.TrimSpace(data)) == 0:
		return "it is empty"
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type (a JSON %s, not %s)", te.Field, te.Value, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "it ends early"
	}
	return "invalid JSON"
}

// jsonDepth is the deepest nesting of arrays and objects in data.
func jsonDepth(data []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// EncodeResponse encodes resp in version gv (one of SupportedVersions) with
// the kubelet's scheme.
func EncodeResponse(resp *credentialprovider.CredentialProviderResponse, gv schema.GroupVersion) ([]byte, error) {
	codec, ok := versionCodecs[gv.Version]
	if !ok || gv.Group != credentialprovider.GroupName {
		return nil, fmt.Errorf("cannot encode a response in %s", gv)
	}
	return runtime.Encode(codec(), resp)
}

// Run reads one request from in and writes the response to out, only on
// success.
func (p *Plugin) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	req, gv, err := DecodeRequest(ctx, in)
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
	// One write of a complete document: never half an answer.
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
	src, err := p.source(Request{ServiceAccountToken: req.ServiceAccountToken, ServiceAccountAnnotations: req.ServiceAccountAnnotations})
	if err != nil {
		return nil, err
	}
	tok, err := src.Token(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
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

// source is the identity that answers req: the workload identity its
// service account asks for, else the node's.
func (p *Plugin) source(req Request) (token.Source, error) {
	w, ok, err := WorkloadOf(req)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return p.Node, nil
	case p.Workload == nil:
		return nil, fmt.Errorf("the pod's service account asks for %s but workload identities are not enabled in this plugin", w)
	}
	return p.Workload(w)
}

// CacheDuration is how long the kubelet may keep tok: until its refresh
// point, so that the kubelet never holds a token inside its refresh margin;
// for a token already past it (served stale), briefly.
func CacheDuration(tok token.Token, now time.Time) time.Duration {
	if d := tok.RefreshAt().Sub(now); d > 0 {
		return d.Truncate(time.Second)
	}
	return min(tok.Expiry.Sub(now)/2, StaleCacheDuration).Truncate(time.Second)
}
