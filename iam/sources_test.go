package iam

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
)

func TestAPIKeySource(t *testing.T) {
	srv := iamtest.NewServer(iamtest.WithTokenLifetime(20 * time.Minute))
	defer srv.Close()
	src, sl := keySource(srv.IAMURL(), iamtest.DefaultAPIKey, Options{})
	tok, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Lifetime(); got < 20*time.Minute-time.Second || got > 20*time.Minute {
		t.Errorf("lifetime %v, want 20m (not assumed to be an hour)", got)
	}
	if srv.Grants() != 1 || srv.Count(iamtest.EndpointIAMToken) != 1 || len(sl.waits()) != 0 {
		t.Errorf("%d grants, %d calls, waits %v", srv.Grants(), srv.Count(iamtest.EndpointIAMToken), sl.waits())
	}
	for _, s := range []string{src.CacheKey(), src.Describe()} {
		if strings.Contains(s, iamtest.DefaultAPIKey) {
			t.Errorf("%q holds the API key", s)
		}
	}
	other, _ := keySource(srv.IAMURL(), iamtest.DefaultAPIKey+"x", Options{})
	elsewhere, _ := keySource(srv.IAMURL()+"/", iamtest.DefaultAPIKey, Options{})
	if other.CacheKey() == src.CacheKey() || elsewhere.CacheKey() != src.CacheKey() {
		t.Errorf("cache keys: another key %v, same endpoint with a slash %v", other.CacheKey() == src.CacheKey(), elsewhere.CacheKey() == src.CacheKey())
	}
}

func TestVPCSource(t *testing.T) {
	srv := iamtest.NewServer(iamtest.WithTokenLifetime(5 * time.Minute))
	defer srv.Close()
	tests := []struct {
		name    string
		profile Profile
		version string
		wantErr Reason
		wantFix string
	}{
		{name: "default profile, SDK's default version"},
		{name: "by id", profile: Profile{ID: iamtest.DefaultProfileID}},
		{name: "by name", profile: Profile{Name: iamtest.DefaultProfileName}},
		{name: "by CRN", profile: Profile{CRN: iamtest.DefaultProfileCRN}},
		{name: "version 2025-08-26 paths", profile: Profile{ID: iamtest.DefaultProfileID}, version: iamtest.MetadataV2Version},
		{name: "older version paths", profile: Profile{ID: iamtest.DefaultProfileID}, version: "2022-03-01"},
		{name: "a version the SDK does not know", profile: Profile{ID: iamtest.DefaultProfileID}, version: "2024-11-12", wantErr: ReasonConfig, wantFix: "leave it unset"},
		{name: "two profile fields", profile: Profile{ID: iamtest.DefaultProfileID, Name: iamtest.DefaultProfileName}, wantErr: ReasonConfig, wantFix: "at most one of"},
		{name: "profile not linked", profile: Profile{ID: "Profile-00000000-0000-0000-0000-000000000000"}, wantErr: ReasonRejected, wantFix: "trusted-profile-link-create"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.Reset()
			src, sl := vpcSource(srv.MetadataURL(), tc.profile, Options{MetadataVersion: tc.version})
			tok, err := src.Token(context.Background())
			if tc.wantErr != "" {
				checkError(t, err, tc.wantErr, tc.wantFix)
				if len(sl.waits()) != 0 {
					t.Errorf("retried: %v", sl.waits())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tok.Lifetime(); got < 5*time.Minute-time.Second || got > 5*time.Minute {
				t.Errorf("lifetime %v, want 5m", got)
			}
			if !tok.Fresh(time.Now()) || srv.Grants() != 1 {
				t.Errorf("token not fresh, or %d grants", srv.Grants())
			}
			if srv.Count(iamtest.EndpointIAMToken) != 0 {
				t.Errorf("the VPC source called IAM directly")
			}
		})
	}
	a, _ := vpcSource(srv.MetadataURL(), Profile{ID: "p1"}, Options{})
	b, _ := vpcSource(srv.MetadataURL(), Profile{Name: "p1"}, Options{})
	if a.CacheKey() == b.CacheKey() {
		t.Errorf("profile id and name share a cache key")
	}
}

// Environment of TestProxyHelperProcess.
const envProxyHelper = "ICR_IAM_TEST_PROXY_HELPER"

// TestTransportProxies: IAM goes through the proxies the plugin inherits
// from the kubelet; the link-local metadata service never does. The
// environment is read once per process by net/http, so the check runs in a
// child process with the variables set; nothing is dialled.
func TestTransportProxies(t *testing.T) {
	if fn := NewIAMTransport().Proxy; fn == nil || reflect.ValueOf(fn).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Errorf("IAM transport does not use http.ProxyFromEnvironment")
	}
	if NewMetadataTransport(time.Second).Proxy != nil {
		t.Errorf("metadata transport has a proxy")
	}
	opts := Options{}.withDefaults()
	if tr, ok := opts.MetadataTransport.(*http.Transport); !ok || tr.Proxy != nil {
		t.Errorf("default metadata transport %T has a proxy", opts.MetadataTransport)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestProxyHelperProcess$", "-test.count=1", "-test.v")
	env := []string{envProxyHelper + "=1",
		"HTTPS_PROXY=http://proxy.example:3128", "HTTP_PROXY=http://plain-proxy.example:8080",
		"NO_PROXY=private.iam.cloud.ibm.com,.internal.example"}
	for _, kv := range os.Environ() {
		switch strings.ToUpper(strings.SplitN(kv, "=", 2)[0]) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "REQUEST_METHOD":
			continue // the test's own values only
		}
		env = append(env, kv)
	}
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PROXIES-CHECKED") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestProxyHelperProcess is the child of TestTransportProxies.
func TestProxyHelperProcess(t *testing.T) {
	if os.Getenv(envProxyHelper) != "1" {
		t.Skip("helper process for TestTransportProxies")
	}
	iamTr := Options{}.withDefaults().Transport.(*http.Transport)
	for _, tc := range []struct {
		url  string
		want string // proxy URL, "" for none
	}{
		{DefaultIAMURL + "/identity/token", "http://proxy.example:3128"},
		{"https://iam.cloud.ibm.com/identity/token", "http://proxy.example:3128"},
		{"http://iam.test.example/identity/token", "http://plain-proxy.example:8080"},
		{PrivateIAMURL + "/identity/token", ""},
		{"https://iam.internal.example/identity/token", ""},
	} {
		req, err := http.NewRequest(http.MethodPost, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		u, err := iamTr.Proxy(req)
		got := ""
		if u != nil {
			got = u.String()
		}
		if err != nil || got != tc.want {
			t.Errorf("IAM proxy for %s: %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
	for _, tr := range []*http.Transport{NewMetadataTransport(time.Second), Options{}.withDefaults().MetadataTransport.(*http.Transport)} {
		if tr.Proxy != nil {
			t.Errorf("metadata transport has a proxy with HTTP_PROXY set")
		}
	}
	if !t.Failed() {
		t.Log("PROXIES-CHECKED")
	}
}

// TestMetadataPathFallback: a metadata service that knows only one of the
// two path sets is reached through the other version's paths; one that
// knows neither is explained.
func TestMetadataPathFallback(t *testing.T) {
	for _, tc := range []struct {
		name, only, version string
	}{
		{"only the 2025-08-26 paths, default version", "/identity/v1", ""},
		{"only the old paths, version 2025-08-26", "/instance_identity/v1", "2025-08-26"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := iamtest.NewServer(iamtest.WithOnlyMetadataPaths(tc.only))
			defer srv.Close()
			src, _ := vpcSource(srv.MetadataURL(), Profile{ID: iamtest.DefaultProfileID}, Options{MetadataVersion: tc.version})
			if _, err := src.Token(context.Background()); err != nil {
				t.Fatalf("no fallback to the other path set: %v", err)
			}
		})
	}
	srv := iamtest.NewServer(iamtest.WithOnlyMetadataPaths("/nowhere"))
	defer srv.Close()
	src, _ := vpcSource(srv.MetadataURL(), Profile{}, Options{})
	_, err := src.Token(context.Background())
	checkError(t, err, ReasonNotSupported, "serves neither API version's paths")
}

// TestMetadataOutageIsTheMetadataService: a failing metadata service is
// named as such, not as IAM.
func TestMetadataOutageIsTheMetadataService(t *testing.T) {
	srv := iamtest.NewServer(iamtest.WithFault(iamtest.EndpointMetadataIAMToken, iamtest.HTTPError(500)))
	defer srv.Close()
	src, _ := vpcSource(srv.MetadataURL(), Profile{}, Options{MaxAttempts: 1})
	_, err := src.Token(context.Background())
	e := checkError(t, err, ReasonUnavailable, "VPC metadata service is failing")
	if strings.Contains(e.Fix, "IAM is failing") {
		t.Errorf("fix blames IAM: %s", e.Fix)
	}
}
