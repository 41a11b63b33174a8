package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/kubelet/pkg/apis/credentialprovider"
	"k8s.io/kubelet/pkg/apis/credentialprovider/install"

	"github.com/icr-credential-provider/icr-credential-provider/provider"
	"github.com/icr-credential-provider/icr-credential-provider/token"
)

// The fuzz targets of this file run their seeds as ordinary tests; `make
// fuzz` runs them with -fuzz for a bounded time (see mk/reliability.mk).

const fuzzToken = "FUZZ-iam-token-eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig"

var fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fuzzExtra is a configured extra registry for the fuzz targets.
const fuzzExtra = "registry.example.com:5000"

// strictDecoder decodes like the kubelet's plugin manager: strict, into
// the internal type.
var strictDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	install.Install(s)
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDecoder(credentialprovider.SchemeGroupVersion)
}()

func addRequestSeeds(f *testing.F) {
	// The sample requests shipped with the plugin.
	files, _ := filepath.Glob("../examples/requests/*.json")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		``,
		`{`,
		`null`,
		`[]`,
		`{}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/team/app"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","kind":"CredentialProviderRequest","image":"icr.io/a/b:1.2"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","kind":"CredentialProviderRequest","image":"registry.example.com:5000/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"cp.icr.io/cp/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io.evil.com/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":""}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"US.ICR.IO:443/x","serviceAccountToken":"eyJSECRET-sa-token-0123456789","serviceAccountAnnotations":{"a":"b"}}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":5,"serviceAccountToken":"eyJSECRET-sa-token-0123456789"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/x","image":"docker.io/y"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/x","unknown":[1,2,{"z":null}]}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v2","kind":"CredentialProviderRequest","image":"us.icr.io/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderResponse","image":"us.icr.io/x"}`,
		`{"apiVersion":"v1","kind":"CredentialProviderRequest","image":"us.icr.io/x"}`,
		"apiVersion: credentialprovider.kubelet.k8s.io/v1\nkind: CredentialProviderRequest\nimage: us.icr.io/x\n",
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/x"} trailing`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io/x"}{"b":1}`,
		"\xef\xbb\xbf{\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"kind\":\"CredentialProviderRequest\",\"image\":\"us.icr.io/x\"}",
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"us.icr.io\u0000/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"user@us.icr.io/x"}`,
		`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","kind":"CredentialProviderRequest","image":"uѕ.icr.io/x"}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzRun feeds arbitrary stdin to Plugin.Run with a fake Credentials that
// either succeeds or fails: it must not panic, and stdout must be either
// nothing (with an error) or one complete response that the kubelet's strict
// decoder accepts, in the request's own version, with credentials only for
// a served registry.
func FuzzRun(f *testing.F) {
	addRequestSeeds(f)
	hosts, err := provider.NewHostSet([]string{fuzzExtra})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, credsFail := range []bool{false, true} {
			var calls int
			var gotSAToken string
			src := func(saToken string) token.Source {
				return token.SourceFunc(func(ctx context.Context) (token.Token, error) {
					calls++
					gotSAToken = saToken
					if credsFail {
						return token.Token{}, errors.New("fake token source failure")
					}
					return token.Token{AccessToken: fuzzToken, IssuedAt: fuzzNow, Expiry: fuzzNow.Add(time.Hour)}, nil
				})
			}
			p := &provider.Plugin{
				Hosts:    hosts,
				Now:      func() time.Time { return fuzzNow },
				Node:     src(""),
				Workload: func(w provider.Workload) (token.Source, error) { return src(w.ServiceAccountToken), nil },
			}
			var out bytes.Buffer
			runErr := p.Run(context.Background(), bytes.NewReader(data), &out)

			// DecodeRequest on its own must agree with Run about the input.
			req, gv, decErr := provider.DecodeRequest(context.Background(), bytes.NewReader(data))
			var workload bool
			var workloadErr error
			if decErr == nil {
				_, workload, workloadErr = provider.WorkloadOf(provider.Request{ServiceAccountToken: req.ServiceAccountToken, ServiceAccountAnnotations: req.ServiceAccountAnnotations})
			}
			if decErr != nil && runErr == nil {
				t.Fatalf("DecodeRequest fails (%v) but Run succeeds", decErr)
			}
			if runErr != nil {
				if out.Len() != 0 {
					t.Fatalf("Run failed (%v) and still wrote %d bytes to stdout", runErr, out.Len())
				}
				if strings.Contains(runErr.Error(), fuzzToken) {
					t.Fatalf("error quotes the token: %v", runErr)
				}
				assertNoSAToken(t, data, runErr.Error())
				if decErr == nil && req.Image != "" && !credsFail && workloadErr == nil {
					t.Fatalf("a decodable request with an image failed with working credentials: %v", runErr)
				}
				continue
			}
			if out.Len() == 0 {
				t.Fatal("Run succeeded with nothing on stdout")
			}
			obj, gvk, err := strictDecoder.Decode(out.Bytes(), nil, nil)
			if err != nil {
				t.Fatalf("the kubelet would reject the response: %v\n%s", err, out.Bytes())
			}
			if gvk.Kind != "CredentialProviderResponse" || gvk.GroupVersion() != gv {
				t.Fatalf("response is %v, request was %v", gvk, gv)
			}
			resp := obj.(*credentialprovider.CredentialProviderResponse)
			switch resp.CacheKeyType {
			case credentialprovider.ImagePluginCacheKeyType, credentialprovider.RegistryPluginCacheKeyType, credentialprovider.GlobalPluginCacheKeyType:
			default:
				t.Fatalf("cacheKeyType %q", resp.CacheKeyType)
			}
			if resp.CacheDuration == nil || resp.CacheDuration.Duration <= 0 {
				t.Fatalf("cacheDuration %v", resp.CacheDuration)
			}
			host, ok := provider.RegistryHost(req.Image)
			served := ok && hosts.Serves(host)
			if !served {
				if len(resp.Auth) != 0 || calls != 0 {
					t.Fatalf("image %q is not served, yet auth has %d entries (%d token calls)", req.Image, len(resp.Auth), calls)
				}
				continue
			}
			if credsFail {
				t.Fatalf("served image %q answered although the credentials failed", req.Image)
			}
			if workload != (gotSAToken != "") || (workload && gotSAToken != req.ServiceAccountToken) {
				t.Fatalf("the workload identity answered %v, want %v", gotSAToken != "", workload)
			}
			if len(resp.Auth) != len(hosts.Hosts()) {
				t.Fatalf("auth has %d entries, want one per served host (%d)", len(resp.Auth), len(hosts.Hosts()))
			}
			for h, a := range resp.Auth {
				if !hosts.Serves(h) || a.Username != provider.Username || a.Password != fuzzToken {
					t.Fatalf("auth entry %q: user %q", h, a.Username)
				}
			}
		}
	})
}

// assertNoSAToken fails if msg quotes the request's service-account token.
// Only a token that appears once in the input and is long enough to be
// distinctive is checked (a token equal to, say, the kind would be quoted
// as the kind).
func assertNoSAToken(t *testing.T, data []byte, msg string) {
	t.Helper()
	var v struct {
		SAToken string `json:"serviceAccountToken"`
	}
	if json.Unmarshal(data, &v) != nil || len(v.SAToken) < 16 {
		return
	}
	raw, _ := json.Marshal(v.SAToken)
	if bytes.Count(data, []byte(v.SAToken)) != 1 || !bytes.Contains(data, raw) {
		return
	}
	if strings.Contains(msg, v.SAToken) {
		t.Fatalf("error quotes the service-account token: %s", msg)
	}
}

// FuzzRegistryHost checks the host extraction and matching invariants for
// any image reference and any configured extra registry: a served host is
// exactly the reference's own host, lower-cased, and is a default host or
// the configured extra modulo case and ":443"; nothing with user info,
// whitespace or non-ASCII characters in its host is ever served.
func FuzzRegistryHost(f *testing.F) {
	for _, h := range provider.DefaultHosts() {
		f.Add(h+"/team/app", "")
		f.Add(strings.ToUpper(h)+":443/team/app:1", "")
	}
	for _, s := range [][2]string{
		{"us.icr.io/team/app", ""},
		{"https://us.icr.io/team/app", ""},
		{"us.icr.io:443/x", ""},
		{"us.icr.io:5000/x", ""},
		{"cp.icr.io/cp/app", ""},
		{"cp.icr.io/cp/app", "cp.icr.io"},
		{"us.icr.io.evil.com/x", ""},
		{"evilicr.io/x", ""},
		{"user@us.icr.io/x", ""},
		{"us.icr.io@evil.com/x", ""},
		{"us.icr.io/x@sha256:0123", ""},
		{"uѕ.icr.io/x", ""},
		{"us.icr.io./x", ""},
		{" us.icr.io/x ", ""},
		{"us.icr.io /x", ""},
		{"us.icr.io\t/x", ""},
		{"iCr.io/\f0", ""},       // found by the fuzzer: \f is whitespace too
		{"u\u212a.icr.io/x", ""}, // the Kelvin sign lower-cases to an ASCII k
		{"\u212a.example.com/x", "k.example.com"},
		{"k.example.com/x", "\u212a.example.com"},
		{"us.icr.io/x\vy", ""},
		{"us.icr.io/x\u00a0", ""},
		{"us.icr.io/x\x00", ""},
		{"[::1]:5000/x", "[::1]:5000"},
		{"127.0.0.1:5000/x", "127.0.0.1:5000"},
		{"localhost/x", "localhost"},
		{"registry.example.com:5000/x", fuzzExtra},
		{"REGISTRY.example.com:5000/x", "registry.example.com:5000"},
		{"registry.example.com/x", "registry.example.com"},
		{"registry.example.com:443/x", "registry.example.com"},
		{"evil.example/x://us.icr.io/app", ""},
		{"docker.io/library/nginx", ""},
		{"nginx", ""},
		{"*.icr.io/x", "*.icr.io"},
	} {
		f.Add(s[0], s[1])
	}
	defaults := map[string]bool{}
	for _, h := range provider.DefaultHosts() {
		defaults[h] = true
	}
	f.Fuzz(func(t *testing.T, image, extra string) {
		hs, err := provider.NewHostSet([]string{extra})
		if err != nil {
			hs, err = provider.NewHostSet(nil)
			if err != nil {
				t.Fatal(err)
			}
			extra = ""
		}
		extraNorm := strings.ToLower(strings.TrimSpace(extra))
		for _, h := range hs.Hosts() {
			if !defaults[h] && h != extraNorm {
				t.Fatalf("NewHostSet(%q) serves %q, neither a default host nor the extra", extra, h)
			}
		}
		allowed := func(h string) bool {
			return defaults[h] || (extraNorm != "" && h == extraNorm)
		}
		// stripPort removes a default HTTPS port, as Serves does.
		stripPort := func(h string) string {
			if name, port, err := net.SplitHostPort(h); err == nil && port == "443" {
				return name
			}
			return h
		}

		// Serves on an arbitrary string.
		if hs.Serves(image) {
			l := strings.ToLower(image)
			if !allowed(l) && !allowed(stripPort(l)) {
				t.Fatalf("Serves(%q) with extra %q, but it is neither a default host nor the extra", image, extra)
			}
		}
		if hs.Serves(image) && strings.EqualFold(stripPort(image), "cp.icr.io") && !strings.EqualFold(extraNorm, "cp.icr.io") {
			t.Fatalf("cp.icr.io served without being configured")
		}

		host, ok := provider.RegistryHost(image)
		if !ok {
			return
		}
		if host == "" {
			t.Fatalf("RegistryHost(%q) = \"\", true", image)
		}
		if !hs.Serves(host) {
			return
		}
		// Served: the host must be the reference's own first component.
		ref := strings.TrimSpace(image)
		if i := strings.Index(ref, "://"); i > 0 && isScheme(ref[:i]) {
			ref = ref[i+3:]
		}
		first, _, _ := strings.Cut(ref, "/")
		if strings.ToLower(first) != host {
			t.Fatalf("RegistryHost(%q) = %q, served, but the reference's host is %q", image, host, first)
		}
		if !allowed(host) && !allowed(stripPort(host)) {
			t.Fatalf("RegistryHost(%q) = %q served, not a default host or the extra %q", image, host, extra)
		}
		for _, r := range first {
			if r == '@' || unicode.IsSpace(r) || r > unicode.MaxASCII || r < 0x20 {
				t.Fatalf("served host %q of %q contains %q", host, image, r)
			}
		}
		if strings.ContainsFunc(ref, unicode.IsSpace) || strings.ContainsFunc(ref, unicode.IsControl) {
			t.Fatalf("served an image reference with whitespace or a control character: %q", image)
		}
		if stripPort(host) == "cp.icr.io" && extraNorm != "cp.icr.io" {
			t.Fatalf("cp.icr.io served without being configured")
		}
	})
}

// isScheme reports whether s is a URL scheme (RFC 3986: ALPHA *( ALPHA /
// DIGIT / "+" / "-" / "." )).
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}
