package provider

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"

	"github.com/icr-credential-provider/icr-credential-provider/token"
)

const secretToken = "eyJhbGciOi.secret-iam-token.sig"

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func fixedToken(lifetime time.Duration) token.Token {
	return token.Token{AccessToken: secretToken, IssuedAt: now, Expiry: now.Add(lifetime)}
}

func newPlugin(t *testing.T, tok token.Token, err error, calls *int) *Plugin {
	t.Helper()
	hs, herr := NewHostSet(nil)
	if herr != nil {
		t.Fatal(herr)
	}
	return &Plugin{
		Hosts: hs,
		Now:   func() time.Time { return now },
		Node: token.SourceFunc(func(ctx context.Context) (token.Token, error) {
			if calls != nil {
				*calls++
			}
			return tok, err
		}),
	}
}

// kubeletDecode decodes a response the way the kubelet's plugin manager
// does: strict, into the internal type, and checks apiVersion and kind.
func kubeletDecode(t *testing.T, data []byte, wantAPIVersion string) *credentialprovider.CredentialProviderResponse {
	t.Helper()
	s := runtime.NewScheme()
	install.Install(s)
	codecs := serializer.NewCodecFactory(s, serializer.EnableStrict)
	obj, gvk, err := codecs.UniversalDecoder(credentialprovider.SchemeGroupVersion).Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("kubelet's strict decoder rejects the response: %v\n%s", err, data)
	}
	if gvk.Kind != "CredentialProviderResponse" {
		t.Fatalf("kind = %q", gvk.Kind)
	}
	if got := gvk.GroupVersion().String(); got != wantAPIVersion {
		t.Fatalf("response apiVersion = %q, want the request's %q", got, wantAPIVersion)
	}
	resp, ok := obj.(*credentialprovider.CredentialProviderResponse)
	if !ok {
		t.Fatalf("decoded %T", obj)
	}
	return resp
}

func request(apiVersion, image string) string {
	return `{"apiVersion":"` + apiVersion + `","kind":"CredentialProviderRequest","image":"` + image + `"}`
}

func TestRunAnswersInRequestVersion(t *testing.T) {
	for _, v := range []string{"v1", "v1beta1", "v1alpha1"} {
		t.Run(v, func(t *testing.T) {
			av := credentialprovider.GroupName + "/" + v
			var out bytes.Buffer
			p := newPlugin(t, fixedToken(time.Hour), nil, nil)
			if err := p.Run(context.Background(), strings.NewReader(request(av, "us.icr.io/team/app")), &out); err != nil {
				t.Fatal(err)
			}
			resp := kubeletDecode(t, out.Bytes(), av)
			if resp.CacheKeyType != credentialprovider.GlobalPluginCacheKeyType {
				t.Errorf("cacheKeyType = %q, want Global", resp.CacheKeyType)
			}
			if got, want := resp.CacheDuration.Duration, 50*time.Minute; got != want {
				t.Errorf("cacheDuration = %v, want %v (1h minus the 10m margin)", got, want)
			}
			if len(resp.Auth) != len(DefaultHosts()) {
				t.Errorf("auth has %d hosts, want %d", len(resp.Auth), len(DefaultHosts()))
			}
			for _, h := range DefaultHosts() {
				a, ok := resp.Auth[h]
				if !ok || a.Username != "iambearer" || a.Password != secretToken {
					t.Errorf("auth[%s] = %+v, %v", h, a.Username, ok)
				}
			}
			if _, ok := resp.Auth["cp.icr.io"]; ok {
				t.Error("auth includes cp.icr.io")
			}
		})
	}
}

// TestEveryVersionAsKubeletScheme: each supported version has its codec,
// which decodes a request into what the kubelet's whole scheme decodes and
// encodes a response into the bytes its codec factory writes.
func TestEveryVersionAsKubeletScheme(t *testing.T) {
	if len(versionCodecs) != len(SupportedVersions) {
		t.Errorf("%d codecs for %d versions", len(versionCodecs), len(SupportedVersions))
	}
	s := runtime.NewScheme()
	install.Install(s)
	codecs := serializer.NewCodecFactory(s)
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	resp := &credentialprovider.CredentialProviderResponse{
		CacheKeyType:  credentialprovider.GlobalPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: 50*time.Minute + time.Second},
		Auth: map[string]credentialprovider.AuthConfig{
			"us.icr.io": {Username: Username, Password: secretToken}, "icr.io": {Username: Username, Password: "<&>\"\u2028\xff"},
		},
	}
	for _, v := range SupportedVersions {
		gv := schema.GroupVersion{Group: credentialprovider.GroupName, Version: v}
		data := `{"apiVersion":"` + gv.String() + `","kind":"CredentialProviderRequest","image":"us.icr.io/a/b",` +
			`"serviceAccountToken":"sa","serviceAccountAnnotations":{"k":"v"}}`
		got, gotGV, err := DecodeRequest(context.Background(), strings.NewReader(data))
		if err != nil || gotGV != gv {
			t.Fatalf("%s: DecodeRequest = %v, %v", v, gotGV, err)
		}
		want, _, err := codecs.UniversalDecoder(credentialprovider.SchemeGroupVersion).Decode([]byte(data), nil, nil)
		if err != nil {
			t.Fatalf("%s: the kubelet's scheme: %v", v, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v, the kubelet's scheme %+v", v, got, want)
		}
		enc, err := EncodeResponse(resp, gv)
		if err != nil {
			t.Fatal(err)
		}
		wantEnc, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, gv), resp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, wantEnc) {
			t.Errorf("%s: encoded\n%s\nthe kubelet's codec factory\n%s", v, enc, wantEnc)
		}
	}
	if _, err := EncodeResponse(resp, schema.GroupVersion{Group: credentialprovider.GroupName, Version: "v2"}); err == nil {
		t.Error("EncodeResponse in an unsupported version succeeds")
	}
}

func TestRunNotServed(t *testing.T) {
	for _, image := range []string{"cp.icr.io/cp/app", "docker.io/library/nginx", "us.icr.io.evil.com/x", "user@us.icr.io/x"} {
		t.Run(image, func(t *testing.T) {
			calls := 0
			var out bytes.Buffer
			p := newPlugin(t, fixedToken(time.Hour), nil, &calls)
			av := credentialprovider.GroupName + "/v1"
			if err := p.Run(context.Background(), strings.NewReader(request(av, image)), &out); err != nil {
				t.Fatal(err)
			}
			resp := kubeletDecode(t, out.Bytes(), av)
			if len(resp.Auth) != 0 || resp.CacheKeyType != credentialprovider.RegistryPluginCacheKeyType || resp.CacheDuration.Duration != NotServedCacheDuration {
				t.Errorf("got %+v", resp)
			}
			if calls != 0 || strings.Contains(out.String(), secretToken) {
				t.Error("a token was fetched or handed out for a host that is not served")
			}
		})
	}
}

func TestRunBadInput(t *testing.T) {
	v1 := credentialprovider.GroupName + "/v1"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no request on stdin"},
		{"whitespace", " \n\t", "no request on stdin"},
		{"not json", "hello", "not a JSON object"},
		{"truncated", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderRequest","image":"us.icr.io/x`, "not a JSON object"},
		{"array", `[1,2]`, "not a JSON object"},
		{"no apiVersion", `{"kind":"CredentialProviderRequest","image":"us.icr.io/x"}`, `apiVersion ""`},
		{"wrong group", request("kubelet.config.k8s.io/v1", "us.icr.io/x"), `API group "kubelet.config.k8s.io"`},
		{"unknown version", request(credentialprovider.GroupName+"/v2", "us.icr.io/x"), `unsupported API version`},
		{"wrong kind", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderResponse","image":"us.icr.io/x"}`, `kind "CredentialProviderResponse"`},
		{"no image", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderRequest"}`, "no image"},
		{"image wrong type", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderRequest","image":42}`, "cannot decode"},
		{"too large", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderRequest","image":"us.icr.io/x","pad":"` + strings.Repeat("a", MaxRequestSize) + `"}`, "larger than 1024 KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := newPlugin(t, fixedToken(time.Hour), nil, nil).Run(context.Background(), strings.NewReader(tt.in), &out)
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want an InputError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is more than one line: %q", err)
			}
			if out.Len() != 0 {
				t.Errorf("stdout got %q on error", out.String())
			}
		})
	}
}

func TestRunDoesNotEchoServiceAccountToken(t *testing.T) {
	const saToken = "eyJhbGciOiJSUzI1NiJ9.sa-token-secret.sig"
	in := `{"apiVersion":"` + credentialprovider.GroupName + `/v1","kind":"CredentialProviderRequest","image":"us.icr.io/x","serviceAccountToken":"` + saToken + `","serviceAccountAnnotations":{"a":"b"}, "image": 3}`
	err := newPlugin(t, fixedToken(time.Hour), nil, nil).Run(context.Background(), strings.NewReader(in), &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), saToken) {
		t.Fatalf("err = %v", err)
	}
}

func TestRunTokenError(t *testing.T) {
	var out bytes.Buffer
	boom := errors.New("IAM said no: fix it")
	err := newPlugin(t, token.Token{}, boom, nil).Run(context.Background(), strings.NewReader(request(credentialprovider.GroupName+"/v1", "us.icr.io/x")), &out)
	if !errors.Is(err, boom) || out.Len() != 0 {
		t.Fatalf("err = %v, out = %q", err, out.String())
	}
}

func TestRunPassesServiceAccount(t *testing.T) {
	hs, _ := NewHostSet(nil)
	var got Workload
	p := &Plugin{Hosts: hs, Now: func() time.Time { return now },
		Node: token.SourceFunc(func(ctx context.Context) (token.Token, error) {
			t.Error("the node identity answered an annotated service account")
			return token.Token{}, errors.New("no")
		}),
		Workload: func(w Workload) (token.Source, error) {
			got = w
			return token.SourceFunc(func(context.Context) (token.Token, error) { return fixedToken(time.Hour), nil }), nil
		}}
	in := `{"apiVersion":"` + credentialprovider.GroupName + `/v1","kind":"CredentialProviderRequest","image":"de.icr.io/ns/app","serviceAccountToken":"sa","serviceAccountAnnotations":{"k":"v","` + AnnotationProfileName + `":"pullers"}}`
	if err := p.Run(context.Background(), strings.NewReader(in), &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if got != (Workload{ProfileName: "pullers", ServiceAccountToken: "sa"}) {
		t.Errorf("workload = %+v", got)
	}
}

// TestRunStdinBoundedByContext: a writer that never closes stdin does not
// keep the plugin past its deadline (or a SIGTERM, which cancels ctx).
func TestRunStdinBoundedByContext(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	go w.Write([]byte(`{"apiVersion":"`)) // a trickle, then nothing
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newPlugin(t, fixedToken(time.Hour), nil, nil).Run(ctx, r, &bytes.Buffer{}) }()
	cancel()
	err := <-done
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "stdin did not end") {
		t.Fatalf("err = %v, want an InputError about stdin", err)
	}
}

// waitCountingContext counts the calls to Done: the waits on it.
type waitCountingContext struct {
	context.Context
	waits int
}

func (c *waitCountingContext) Done() <-chan struct{} {
	c.waits++
	return c.Context.Done()
}

// TestReadInputComplete: input marked Complete is read without waiting on
// the context (not even a cancelled one), within the same size limit;
// other input makes ReadInput wait on it.
func TestReadInputComplete(t *testing.T) {
	ctx := &waitCountingContext{Context: context.Background()}
	got, err := ReadInput(ctx, Complete(strings.NewReader("request")), 16)
	if err != nil || string(got) != "request" || ctx.waits != 0 {
		t.Errorf("ReadInput(Complete) = %q, %v with %d waits on ctx; want the input, no wait", got, err, ctx.waits)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := ReadInput(cancelled, Complete(strings.NewReader("request")), 16); err != nil || string(got) != "request" {
		t.Errorf("ReadInput(cancelled, Complete) = %q, %v; want the input", got, err)
	}
	if _, err := ReadInput(context.Background(), Complete(strings.NewReader(strings.Repeat("x", 17))), 16); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("ReadInput(Complete) of too much = %v, want the size error", err)
	}
	if _, err := ReadInput(ctx, strings.NewReader("request"), 16); err != nil || ctx.waits != 1 {
		t.Errorf("ReadInput(plain reader) = %v with %d waits on ctx, want 1", err, ctx.waits)
	}
}

func TestCacheDuration(t *testing.T) {
	tests := []struct {
		name     string
		lifetime time.Duration
		age      time.Duration
		want     time.Duration
	}{
		{"fresh hour token", time.Hour, 0, 50 * time.Minute},
		{"half-used hour token", time.Hour, 30 * time.Minute, 20 * time.Minute},
		{"short token uses 20% margin", 10 * time.Minute, 0, 8 * time.Minute},
		{"stale: inside margin, 5m left", time.Hour, 55 * time.Minute, StaleCacheDuration},
		{"stale: 40s left", time.Hour, time.Hour - 40*time.Second, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := token.Token{AccessToken: "x", IssuedAt: now, Expiry: now.Add(tt.lifetime)}
			at := now.Add(tt.age)
			got := CacheDuration(tok, at)
			if got != tt.want {
				t.Errorf("CacheDuration = %v, want %v", got, tt.want)
			}
			if at.Add(got).After(tok.Expiry) {
				t.Errorf("kubelet would hold the token past its expiry")
			}
			if tok.Fresh(at) && at.Add(got).After(tok.RefreshAt()) {
				t.Errorf("kubelet would hold a fresh token inside its refresh margin")
			}
		})
	}
}

func TestExpiredTokenIsAnError(t *testing.T) {
	tok := token.Token{AccessToken: secretToken, IssuedAt: now.Add(-2 * time.Hour), Expiry: now.Add(-time.Hour)}
	err := newPlugin(t, tok, nil, nil).Run(context.Background(), strings.NewReader(request(credentialprovider.GroupName+"/v1", "us.icr.io/x")), &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), secretToken) {
		t.Fatalf("err = %v", err)
	}
}

// TestDeepJSON: a request nested beyond encoding/json's limit is said to
// be, not reported as a syntax error.
func TestDeepJSON(t *testing.T) {
	in := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	err := newPlugin(t, fixedToken(time.Hour), nil, nil).Run(context.Background(), strings.NewReader(in), &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "nested more than 10000 levels deep") {
		t.Fatalf("err = %v", err)
	}
}
