package test

// Per-workload identity (issue 5) through the kubelet's own plugin manager:
// the service-account example config, the kubelet's TokenRequest for
// audience "iam" (faked by the harness's getter, as the API server would
// answer it), the kubelet's annotation filtering, its per-service-account
// cache (cacheType: ServiceAccount) and its logging of plugin failures.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	kubeletv1 "k8s.io/kubelet/config/v1"
	"sigs.k8s.io/yaml"

	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/provider"
)

// saImage is the ICR image every service-account lookup pulls.
const saImage = "us.icr.io/team/app"

// saVerbosity is the kubelet's -v in these tests: high enough that the
// kubelet's debug logging of credential providers is in the log the
// no-secret assertions read.
const saVerbosity = 6

// klogFailure is the message the kubelet logs (klog.ErrorS) when a
// provider fails; the error it carries holds the plugin's stderr.
const klogFailure = "Failed to provide credentials for image"

// newSA is a service account with a token for audience "iam", valid for an
// hour, as the API server would mint it.
func newSA(ns, name string, annotations map[string]string) ServiceAccount {
	uid := "uid-" + ns + "-" + name
	return ServiceAccount{
		Namespace: ns, Name: name, UID: uid, Annotations: annotations,
		Tokens: map[string]string{
			iamtest.DefaultAudience: iamtest.ServiceAccountToken(ns, name, uid, iamtest.DefaultAudience, time.Now().Add(time.Hour)),
		},
	}
}

// podLookup pulls saImage for a pod that runs as sa.
func podLookup(sa ServiceAccount, pod string) Lookup {
	return Lookup{Image: saImage, Pod: &Pod{Namespace: sa.Namespace, Name: pod, UID: "poduid-" + pod, ServiceAccountName: sa.Name}}
}

func byProfileID(id string) map[string]string {
	return map[string]string{provider.AnnotationProfileID: id}
}

// saKubelet is a kubelet with the service-account example config pointed
// at emu, the node identity being the emulator's default profile.
func saKubelet(t *testing.T, emu *iamtest.Server, cacheDir string, sas ...ServiceAccount) Kubelet {
	t.Helper()
	cfg := WriteConfig(t, filepath.Join(examplesDir, "service-account.yaml"), ConfigOptions{
		Emulator: emu, CacheDir: cacheDir,
		Env: map[string]string{"ICR_PROFILE_ID": iamtest.DefaultProfileID},
	})
	return Kubelet{ConfigPath: cfg, ServiceAccounts: sas, Verbosity: saVerbosity}
}

// runSA runs the kubelet and checks what every run must show: the config
// was accepted, one result per lookup, no secret in the kubelet's log.
func runSA(t *testing.T, k Kubelet, lookups ...Lookup) KubeletOutput {
	t.Helper()
	out := k.Run(t, lookups...)
	if out.RegisterError != "" {
		t.Fatalf("the kubelet refused the config: %s", out.RegisterError)
	}
	if len(out.Results) != len(lookups) {
		t.Fatalf("%d results for %d lookups", len(out.Results), len(lookups))
	}
	if k.Verbosity >= 4 && !strings.Contains(out.Stderr, "Generating per pod credential provider") {
		t.Errorf("the kubelet's debug log (-v=%d) is missing:\n%s", k.Verbosity, out.Stderr)
	}
	AssertNoSecrets(t, k, out)
	return out
}

// claimsOf decodes the IAM token of a result that must hold exactly one
// iambearer credential.
func claimsOf(t *testing.T, r LookupResult) iamtest.Claims {
	t.Helper()
	if !r.Found || len(r.Auths) != 1 {
		t.Fatalf("%s: found %v, %d credentials; want one", r.Image, r.Found, len(r.Auths))
	}
	c, err := iamtest.DecodeClaims(r.Auths[0].Password)
	if err != nil {
		t.Fatalf("%s: the password is not an IAM token: %v", r.Image, err)
	}
	return c
}

// assertSAToken checks that r's credential is a token of the default
// profile minted by a cr-token grant for service account ns/name, that the
// kubelet tracks it as sa's, and that the emulator's registry takes it.
func assertSAToken(t *testing.T, emu *iamtest.Server, r LookupResult, sa ServiceAccount) iamtest.Claims {
	t.Helper()
	assertMinted(t, emu, r, iamtest.DefaultProfileID)
	c := claimsOf(t, r)
	if want := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name; c.Authn == nil || c.Authn.Sub != want {
		t.Errorf("token authenticated %+v, want %s", c.Authn, want)
	}
	if c.GrantType != iamtest.GrantTypeCRToken {
		t.Errorf("grant type %q", c.GrantType)
	}
	if want := sa.Namespace + "/" + sa.Name + "/" + sa.UID; r.Auths[0].ServiceAccount != want {
		t.Errorf("the kubelet tracks the credential as %q, want %q", r.Auths[0].ServiceAccount, want)
	}
	return c
}

// assertTokenRequests checks the kubelet's TokenRequests: one per lookup,
// for the pod's service account, audience iam, bound to the pod.
func assertTokenRequests(t *testing.T, out KubeletOutput, lookups ...Lookup) {
	t.Helper()
	if len(out.TokenRequests) != len(lookups) {
		t.Fatalf("token requests %+v, want one per lookup (%d)", out.TokenRequests, len(lookups))
	}
	for i, l := range lookups {
		tr := out.TokenRequests[i]
		if tr.Namespace != l.Pod.Namespace || tr.Name != l.Pod.ServiceAccountName || tr.BoundPod != l.Pod.Name ||
			len(tr.Audiences) != 1 || tr.Audiences[0] != iamtest.DefaultAudience {
			t.Errorf("token request %d: %+v, want %s/%s audience iam bound to pod %s", i, tr, l.Pod.Namespace, l.Pod.ServiceAccountName, l.Pod.Name)
		}
	}
}

// klogHeader starts a klog text entry ("E1125 20:12:37.127410   19742
// plugin.go:416] ..."); a multi-line value (err=<...>) continues it on the
// following lines.
var klogHeader = regexp.MustCompile(`^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} `)

// klogLines returns the kubelet's log entries (each with its continuation
// lines) that contain msg.
func klogLines(stderr, msg string) []string {
	var entries []string
	for _, l := range strings.Split(stderr, "\n") {
		if klogHeader.MatchString(l) || len(entries) == 0 {
			entries = append(entries, l)
		} else {
			entries[len(entries)-1] += "\n" + l
		}
	}
	var out []string
	for _, e := range entries {
		if strings.Contains(e, msg) {
			out = append(out, e)
		}
	}
	return out
}

// The example config is the one under test, with the tokenAttributes the
// issue asks for; the cache assertions below rely on cacheType.
func TestKubeletServiceAccountExampleTokenAttributes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(examplesDir, "service-account.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg kubeletv1.CredentialProviderConfig
	if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
		t.Fatal(err)
	}
	ta := cfg.Providers[0].TokenAttributes
	if ta == nil || ta.ServiceAccountTokenAudience != iamtest.DefaultAudience || ta.CacheType != kubeletv1.ServiceAccountServiceAccountTokenCacheType ||
		ta.RequireServiceAccount == nil || *ta.RequireServiceAccount || len(ta.RequiredServiceAccountAnnotationKeys) != 0 ||
		strings.Join(ta.OptionalServiceAccountAnnotationKeys, ",") != provider.AnnotationProfileID+","+provider.AnnotationProfileName {
		t.Errorf("tokenAttributes %+v", ta)
	}
}

// 1. An annotated service account in a namespace the profile trusts: the
// kubelet requests its token for audience iam, passes it with the
// annotation, and the keyring returns the profile's token minted by a
// cr-token grant for that service account. The node identity is not asked.
func TestKubeletServiceAccountAnnotated(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		form string
	}{
		{"profile id", byProfileID(iamtest.DefaultProfileID), "profile_id=" + iamtest.DefaultProfileID},
		{"profile name", map[string]string{provider.AnnotationProfileName: iamtest.DefaultProfileName}, "profile_name=" + iamtest.DefaultProfileName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu := iamtest.NewServer()
			defer emu.Close()
			// An annotation the config does not list is not passed on.
			ann := map[string]string{"example.com/unrelated": "x"}
			for k, v := range tc.ann {
				ann[k] = v
			}
			sa := newSA(iamtest.DefaultSANamespace, "puller", ann)
			k := saKubelet(t, emu, t.TempDir(), sa)
			l := podLookup(sa, "pod-1")
			out := runSA(t, k, l)
			assertSAToken(t, emu, out.Results[0], sa)
			assertTokenRequests(t, out, l)
			if n := emu.Count(iamtest.EndpointIAMToken); n != 1 {
				t.Errorf("%d IAM token requests, want 1 (the exchange)", n)
			}
			if req, ok := emu.LastRequest(iamtest.EndpointIAMToken); !ok || req.Form.Get("grant_type") != iamtest.GrantTypeCRToken ||
				!strings.Contains(req.Form.Encode(), tc.form) {
				t.Errorf("IAM request form %v, want the cr-token grant with %s", req.Form, tc.form)
			}
			if n := emu.Count(iamtest.EndpointMetadataToken) + emu.Count(iamtest.EndpointMetadataIAMToken); n != 0 {
				t.Errorf("the metadata service (node identity) was asked %d times", n)
			}
			if lines := klogLines(out.Stderr, klogFailure); len(lines) != 0 {
				t.Errorf("the kubelet logged failures: %q", lines)
			}
		})
	}
}

// 2. A service account without the annotation: the kubelet still mints and
// passes its token (tokenAttributes apply to every pod with a service
// account), and the node identity answers (VPC metadata), no exchange.
func TestKubeletServiceAccountUnannotated(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	sa := newSA(iamtest.DefaultSANamespace, "plain", map[string]string{"example.com/unrelated": "x"})
	k := saKubelet(t, emu, t.TempDir(), sa)
	l := podLookup(sa, "pod-1")
	out := runSA(t, k, l)
	r := out.Results[0]
	assertMinted(t, emu, r, iamtest.DefaultProfileID)
	c := claimsOf(t, r)
	if c.Authn == nil || strings.HasPrefix(c.Authn.Sub, "system:serviceaccount:") || c.Authn.Name != iamtest.DefaultInstanceID {
		t.Errorf("token authenticated %+v, want the VPC instance %s", c.Authn, iamtest.DefaultInstanceID)
	}
	assertTokenRequests(t, out, l)
	if n := emu.Count(iamtest.EndpointMetadataIAMToken); n != 1 {
		t.Errorf("%d metadata IAM token requests, want 1 (the node identity)", n)
	}
	if n := emu.Count(iamtest.EndpointIAMToken); n != 0 {
		t.Errorf("%d IAM token requests: no exchange expected", n)
	}
}

// With a config without tokenAttributes the kubelet neither mints a token
// nor reads the service account, so the plugin never sees the annotation:
// an annotated service account gets the node identity. (The plugin's own
// "annotation but no token" error is unreachable through the kubelet; the
// binary-level tests cover it.)
func TestKubeletServiceAccountAnnotatedWithoutTokenAttributes(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	sa := newSA(iamtest.DefaultSANamespace, "puller", byProfileID(iamtest.DefaultProfileID))
	cfg := WriteConfig(t, filepath.Join(examplesDir, "service-account.yaml"), ConfigOptions{
		Emulator: emu, CacheDir: t.TempDir(), NoTokenAttributes: true,
		Env: map[string]string{"ICR_PROFILE_ID": iamtest.DefaultProfileID},
	})
	k := Kubelet{ConfigPath: cfg, ServiceAccounts: []ServiceAccount{sa}, Verbosity: saVerbosity}
	out := runSA(t, k, podLookup(sa, "pod-1"))
	c := claimsOf(t, out.Results[0])
	if c.Authn == nil || c.Authn.Name != iamtest.DefaultInstanceID {
		t.Errorf("token authenticated %+v, want the node identity", c.Authn)
	}
	if len(out.TokenRequests) != 0 || emu.Count(iamtest.EndpointIAMToken) != 0 {
		t.Errorf("token requests %+v, %d IAM requests: want none", out.TokenRequests, emu.Count(iamtest.EndpointIAMToken))
	}
}

// 3. A service account whose annotation names an unknown profile, or a
// profile that does not trust it, or both annotations: no credentials for
// the ICR image, the kubelet logs the failure with the plugin's error (IAM's
// code, the service account, the fix), the node identity is never asked,
// and the kubelet does not cache the failure (its next pull runs the plugin
// again; the plugin itself may answer that run from its recent-failure
// record instead of asking IAM again). A trusted service account pulling
// after the failures, on the same profile, still gets its own token.
func TestKubeletServiceAccountWrongProfile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sa       ServiceAccount
		want     []string
		exchange bool // the plugin reaches IAM
	}{
		{
			name:     "unknown profile id",
			sa:       newSA(iamtest.DefaultSANamespace, "puller", byProfileID("Profile-00000000-dead-beef-0000-000000000000")),
			want:     []string{iamtest.CodeProfileNotFound, "Profile-00000000-dead-beef-0000-000000000000", provider.AnnotationProfileID},
			exchange: true,
		},
		{
			name:     "unknown profile name",
			sa:       newSA(iamtest.DefaultSANamespace, "puller", map[string]string{provider.AnnotationProfileName: "no-such-profile"}),
			want:     []string{iamtest.CodeProfileNotFound, "no-such-profile"},
			exchange: true,
		},
		{
			name:     "profile does not trust the namespace",
			sa:       newSA("team-x", "puller", byProfileID(iamtest.DefaultProfileID)),
			want:     []string{iamtest.CodeProfileNotEligible, "team-x/puller", iamtest.DefaultProfileID, "trusted-profile-rule-create"},
			exchange: true,
		},
		{
			name: "both annotations",
			sa: newSA(iamtest.DefaultSANamespace, "puller", map[string]string{
				provider.AnnotationProfileID: iamtest.DefaultProfileID, provider.AnnotationProfileName: iamtest.DefaultProfileName,
			}),
			want: []string{"keep exactly one"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu := iamtest.NewServer()
			defer emu.Close()
			good := newSA(iamtest.DefaultSANamespace, "good", byProfileID(iamtest.DefaultProfileID))
			k := saKubelet(t, emu, t.TempDir(), tc.sa, good)
			ls := []Lookup{podLookup(tc.sa, "pod-1"), podLookup(tc.sa, "pod-2")}
			out := runSA(t, k, append(ls, podLookup(good, "pod-good"))...)
			assertSAToken(t, emu, out.Results[len(ls)], good)
			out.TokenRequests = out.TokenRequests[:len(ls)]
			for _, r := range out.Results[:len(ls)] {
				if r.Found || len(r.Auths) != 0 {
					t.Errorf("%s: %d credentials, want none", r.Image, len(r.Auths))
				}
			}
			assertTokenRequests(t, out, ls...)
			lines := klogLines(out.Stderr, klogFailure)
			if len(lines) != len(ls) {
				t.Fatalf("the kubelet logged %d failures, want %d (failures are not cached):\n%s", len(lines), len(ls), out.Stderr)
			}
			for _, line := range lines {
				if !strings.HasPrefix(line, "E") {
					t.Errorf("not logged as an error: %s", line)
				}
				for _, w := range append([]string{
					`image="` + saImage + `"`, `serviceAccount="` + tc.sa.Namespace + "/" + tc.sa.Name + `"`, "exit status 1",
				}, tc.want...) {
					if !strings.Contains(line, w) {
						t.Errorf("the kubelet's log line lacks %q:\n%s", w, line)
					}
				}
			}
			if n := emu.Count(iamtest.EndpointMetadataToken) + emu.Count(iamtest.EndpointMetadataIAMToken); n != 0 {
				t.Errorf("the node identity was asked (%d metadata requests)", n)
			}
			if g := emu.Grants(); g != 1 {
				t.Errorf("%d tokens granted, want 1 (service account good)", g)
			}
			// Besides good's exchange: the failing one's, once at least.
			if n := emu.Count(iamtest.EndpointIAMToken) - 1; tc.exchange && (n < 1 || n > len(ls)) || !tc.exchange && n != 0 {
				t.Errorf("%d IAM token requests for the failing service account", n)
			}
		})
	}
}

// 4. Service accounts never share a token. Three service accounts, one
// profile (which trusts both namespaces): team-a and team-b in one
// namespace, and a second "team-a" in another namespace. The plugin says
// cacheKeyType Global, yet the kubelet (cacheType: ServiceAccount) keys its
// cache by service account: each gets its own token, a second pod of the
// same service account is served from the kubelet's cache, and no service
// account is served another's. The plugin's disk cache is off so that
// every plugin run is one grant.
func TestKubeletServiceAccountsNeverShare(t *testing.T) {
	p := iamtest.DefaultProfile()
	p.TrustedServiceAccounts = append(p.TrustedServiceAccounts, iamtest.ServiceAccount{Namespace: "team-ns"})
	emu := iamtest.NewServer(iamtest.WithTrustedProfile(p))
	defer emu.Close()
	ann := byProfileID(iamtest.DefaultProfileID)
	sas := []ServiceAccount{
		newSA(iamtest.DefaultSANamespace, "team-a", ann),
		newSA(iamtest.DefaultSANamespace, "team-b", ann),
		newSA("team-ns", "team-a", ann),
	}
	k := saKubelet(t, emu, "none", sas...)
	var ls []Lookup
	for round := range 2 {
		for i, sa := range sas {
			ls = append(ls, podLookup(sa, "pod-"+string(rune('a'+i))+string(rune('0'+round))))
		}
	}
	out := runSA(t, k, ls...)
	assertTokenRequests(t, out, ls...)

	n := len(sas)
	seen := map[string]string{}
	for i, sa := range sas {
		first, second := out.Results[i], out.Results[n+i]
		c := assertSAToken(t, emu, first, sa)
		assertSAToken(t, emu, second, sa)
		if t.Failed() {
			t.FailNow()
		}
		who := sa.Namespace + "/" + sa.Name
		if other, ok := seen[c.JTI]; ok {
			t.Errorf("%s and %s were served the same token", other, who)
		}
		seen[c.JTI] = who
		if first.Auths[0].Password != second.Auths[0].Password {
			t.Errorf("%s: the second pod was not served from the kubelet's cache", who)
		}
	}
	// One plugin run (one grant) per service account: the kubelet's cache
	// served the second round, and never across service accounts.
	if g, r := emu.Grants(), emu.Count(iamtest.EndpointIAMToken); g != n || r != n {
		t.Errorf("%d grants, %d IAM requests; want %d (one per service account)", g, r, n)
	}
}

// 4b. The plugin's own disk cache, shared by kubelet processes (as by
// successive plugin runs on a node): service account B, looked up after A
// in a new kubelet, gets its own token, and A's token comes back from the
// disk cache for A only.
func TestKubeletServiceAccountsNeverShareDiskCache(t *testing.T) {
	emu := iamtest.NewServer()
	defer emu.Close()
	cache := t.TempDir()
	ann := byProfileID(iamtest.DefaultProfileID)
	a := newSA(iamtest.DefaultSANamespace, "team-a", ann)
	b := newSA(iamtest.DefaultSANamespace, "team-b", ann)
	k := saKubelet(t, emu, cache, a, b)

	pa := runSA(t, k, podLookup(a, "pod-a1")).Results[0]
	ca := assertSAToken(t, emu, pa, a)
	pb := runSA(t, k, podLookup(b, "pod-b1")).Results[0]
	cb := assertSAToken(t, emu, pb, b)
	if ca.JTI == cb.JTI || pa.Auths[0].Password == pb.Auths[0].Password {
		t.Fatal("team-a and team-b were served the same token")
	}
	pa2 := runSA(t, k, podLookup(a, "pod-a2")).Results[0]
	assertSAToken(t, emu, pa2, a)
	if pa2.Auths[0].Password != pa.Auths[0].Password {
		t.Error("team-a's token was not reused from the plugin's disk cache")
	}
	if g := emu.Grants(); g != 2 {
		t.Errorf("%d grants, want 2 (one per service account)", g)
	}
}
