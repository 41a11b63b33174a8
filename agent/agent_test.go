package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	kubeletv1 "k8s.io/kubelet/config/v1"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/iam/iamtest"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
)

func TestMain(m *testing.M) { os.Exit(iam.RunLoopbackOnly(m)) }

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// node is one node's world: the emulator, the kubelet config install
// wrote for it, the shared cache directory.
type node struct {
	emu      *iamtest.Server
	cfgPath  string
	cacheDir string
	clock    *clock
}

func newNode(t *testing.T, lifetime time.Duration, opts ...iamtest.Option) *node {
	t.Helper()
	emu := iamtest.NewServer(append([]iamtest.Option{iamtest.WithTokenLifetime(lifetime)}, opts...)...)
	t.Cleanup(emu.Close)
	dir := t.TempDir()
	n := &node{emu: emu, cfgPath: filepath.Join(dir, "config.yaml"), cacheDir: filepath.Join(dir, "cache"), clock: &clock{now: time.Now()}}
	cfg, err := installer.Config(installer.Provider{Env: []kubeletv1.ExecEnvVar{
		{Name: "ICR_IAM_URL", Value: emu.IAMURL()},
		{Name: "ICR_METADATA_URL", Value: emu.MetadataURL()},
		{Name: "ICR_PROFILE_ID", Value: iamtest.DefaultProfileID},
		{Name: "ICR_CACHE_DIR", Value: n.cacheDir},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.cfgPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *node) agent(lead time.Duration, pub Publisher, m *Metrics) *Agent {
	return New(Options{KubeletConfig: n.cfgPath, NodeName: "node-1", Lead: lead, Now: n.clock.Now, Publisher: pub, Metrics: m,
		IAM: iam.Options{Now: n.clock.Now}})
}

// plugin fetches the node identity's token as a new plugin process would:
// the settings from the kubelet config, a memory of its own, no lead.
func (n *node) plugin(t *testing.T) (cache.Result, error) {
	t.Helper()
	p, err := installer.ReadProvider(n.cfgPath, installer.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.FromPluginArgs(p.Args, p.Env)
	if err != nil {
		t.Fatal(err)
	}
	id, err := cfg.Node(func(string) string { return "" }, iam.Options{Now: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return cache.New(id.Source, id.Key, cache.Options{Dir: cfg.DiskCacheDir(), Memory: cache.NewMemory(), Now: n.clock.Now}).Fetch(context.Background())
}

// TestRefreshAhead: the agent refreshes before the plugin would, through
// the shared cache, so that the plugin's next run makes no IAM call.
func TestRefreshAhead(t *testing.T) {
	n := newNode(t, 10*time.Minute)
	a := n.agent(5*time.Minute, nil, nil)
	next, err := a.Refresh(context.Background())
	if err != nil || n.emu.Grants() != 1 {
		t.Fatalf("cold refresh: %v, %d grants", err, n.emu.Grants())
	}
	// A 10 min token: the plugin refreshes at 8 min; the agent halfway
	// through that (its lead is longer than the fresh window allows).
	if next != 4*time.Minute {
		t.Errorf("next refresh in %v, want 4m", next)
	}
	if r, err := n.plugin(t); err != nil || r.Origin != cache.FromDisk || n.emu.Grants() != 1 {
		t.Fatalf("plugin after the agent: %v from %v, %d grants", err, r.Origin, n.emu.Grants())
	}
	n.clock.Advance(next)
	if _, err := a.Refresh(context.Background()); err != nil || n.emu.Grants() != 2 {
		t.Fatalf("refresh ahead: %v, %d grants", err, n.emu.Grants())
	}
	// The plugin, at the point where it would have refreshed itself, finds
	// the agent's token fresh.
	n.clock.Advance(4*time.Minute + time.Second)
	r, err := n.plugin(t)
	if err != nil || r.Origin != cache.FromDisk || !r.Token.Fresh(n.clock.Now()) || n.emu.Grants() != 2 {
		t.Fatalf("plugin at its refresh point: %v from %v, %d grants", err, r.Origin, n.emu.Grants())
	}
}

// TestOutageKeepsTheToken: when IAM fails (an outage, or a rejection) while
// the cached token is still fresh for the plugin, the agent reports it and
// never removes the token: the plugin keeps serving it.
func TestOutageKeepsTheToken(t *testing.T) {
	for _, fault := range []iamtest.Fault{iamtest.HTTPError(503), iamtest.APIError(403, "trusted_profile_not_linked", "not linked")} {
		t.Run(fault.String(), func(t *testing.T) {
			n := newNode(t, time.Hour)
			a := n.agent(15*time.Minute, nil, nil)
			if _, err := a.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			n.clock.Advance(40 * time.Minute) // due for the agent, fresh for the plugin
			n.emu.SetFault(iamtest.EndpointMetadataIAMToken, fault)
			if _, err := a.Refresh(context.Background()); err == nil {
				t.Fatal("a failed refresh was not reported")
			}
			r, err := n.plugin(t)
			if err != nil || r.Stale || !r.Token.Fresh(n.clock.Now()) {
				t.Fatalf("plugin during the outage: %v, stale %v", err, r.Stale)
			}
		})
	}
}

// TestHealthOnTheNode: the checks' outcome is the Node's ICRCredentialsReady
// condition, with an Event on every change and only then; no object holds
// a token.
func TestHealthOnTheNode(t *testing.T) {
	n := newNode(t, time.Hour)
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})
	m := NewMetrics()
	a := n.agent(5*time.Minute, &NodeStatus{Client: client, NodeName: "node-1"}, m)
	ctx := context.Background()

	condition := func() corev1.NodeCondition {
		t.Helper()
		node, err := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range node.Status.Conditions {
			if c.Type == ConditionType {
				return c
			}
		}
		t.Fatalf("no %s condition: %+v", ConditionType, node.Status.Conditions)
		return corev1.NodeCondition{}
	}
	events := func() []corev1.Event {
		t.Helper()
		l, err := client.CoreV1().Events(EventNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}

	if h := a.Check(ctx); !h.OK {
		t.Fatalf("healthy node: %+v", h)
	}
	if c := condition(); c.Status != corev1.ConditionTrue || c.Reason != "CredentialsReady" {
		t.Fatalf("condition %+v", c)
	}
	if ev := events(); len(ev) != 1 || ev[0].Type != corev1.EventTypeNormal || ev[0].InvolvedObject.Name != "node-1" {
		t.Fatalf("events %+v", ev)
	}
	a.Check(ctx)
	if len(events()) != 1 {
		t.Error("an Event without a change")
	}

	n.emu.SetFault(iamtest.EndpointMetadataIAMToken, iamtest.APIError(403, "trusted_profile_not_linked", "Trusted profile is not linked to this instance."))
	n.clock.Advance(time.Minute)
	if h := a.Check(ctx); h.OK {
		t.Fatal("the profile is not linked, yet the node is healthy")
	}
	c := condition()
	if c.Status != corev1.ConditionFalse || c.Reason != "IdentityTrustedProfile" || !strings.Contains(c.Message, "trusted-profile-link-create") {
		t.Fatalf("condition %+v", c)
	}
	if !c.LastTransitionTime.Time.Equal(n.clock.Now().Truncate(time.Second)) && c.LastTransitionTime.Time.Before(c.LastHeartbeatTime.Time.Add(-time.Second)) {
		t.Errorf("transition time %v, heartbeat %v", c.LastTransitionTime, c.LastHeartbeatTime)
	}
	ev := events()
	if len(ev) != 2 || ev[1].Type != corev1.EventTypeWarning || ev[1].Reason != "IdentityTrustedProfile" {
		t.Fatalf("events %+v", ev)
	}

	// No token anywhere: the Node, the Events, the metrics.
	node, _ := client.CoreV1().Nodes().Get(ctx, "node-1", metav1.GetOptions{})
	all, _ := json.Marshal([]any{node, ev})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	scraped, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, tok := range n.emu.Minted() {
		if strings.Contains(string(all), tok[:40]) || strings.Contains(string(scraped), tok[:40]) {
			t.Fatal("a token in a Kubernetes object or the metrics")
		}
	}
	for _, want := range []string{
		`icr_credential_provider_credentials_ready 0`,
		`icr_credential_provider_check_status{check="identity.trusted-profile",status="fail"} 1`,
		`icr_credential_provider_check_last_run_timestamp_seconds `,
	} {
		if !strings.Contains(string(scraped), want) {
			t.Errorf("metrics lack %q:\n%s", want, scraped)
		}
	}
}

// TestMetricsOfRefreshes: expiry, refreshes and failures by cause.
func TestMetricsOfRefreshes(t *testing.T) {
	n := newNode(t, time.Hour)
	m := NewMetrics()
	a := n.agent(5*time.Minute, nil, m)
	if _, err := a.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	n.clock.Advance(50 * time.Minute)
	n.emu.SetFault(iamtest.EndpointMetadataIAMToken, iamtest.HTTPError(503))
	a.Refresh(context.Background())
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"icr_credential_provider_token_refreshes_total 1",
		`icr_credential_provider_token_refresh_failures_total{reason="Unavailable"} 1`,
		"icr_credential_provider_token_expiry_timestamp_seconds ",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %q:\n%s", want, b)
		}
	}
}
