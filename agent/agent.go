// Package agent is the node agent's logic (cmd/icr-node-agent, the
// DaemonSet's long-running container). It does two things no plugin run can:
//
//   - it refreshes the node identity's token in the plugin's shared cache
//     (same cache code, lock and files) ahead of the plugin's refresh point,
//     so that no kubelet-started plugin run waits for the metadata service
//     or IAM, and an IAM outage shorter than the lead costs nothing;
//   - it runs doctor's checks that need no image and reports the result
//     where operators look: a Node condition, an Event on every change, and
//     Prometheus metrics.
//
// It reads the kubelet's CredentialProviderConfig that install wrote, so it
// uses exactly the plugin's settings and cache key.
package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"k8s.io/klog/v2"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/config"
	"github.com/icr-credential-provider/icr-credential-provider/doctor"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
	"github.com/icr-credential-provider/icr-credential-provider/installer"
	"github.com/icr-credential-provider/icr-credential-provider/secret"
)

// Defaults of Options.
const (
	DefaultLead          = 5 * time.Minute
	DefaultCheckInterval = 5 * time.Minute
	// retryMin and retryMax bound the wait after a failed refresh: IAM down
	// for hours is retried every few minutes, not hammered.
	retryMin = 10 * time.Second
	retryMax = 5 * time.Minute
)

// Options configure an Agent.
type Options struct {
	KubeletConfig string // the kubelet's CredentialProviderConfig (file or directory) that install wrote
	BinDir        string // the kubelet's provider bin dir, for doctor's binary check ("": search the common dirs)
	NodeName      string // the node's name (downward API), for jitter and messages
	// Lead is how long before the plugin's refresh point the agent
	// refreshes; each node adds a jitter of up to half of it, fixed per
	// node, so that a fleet does not refresh at once.
	Lead          time.Duration
	CheckInterval time.Duration // how often the health checks run
	// ProbeRegistry, if set, is a registry host whose token exchange the
	// checks include; ProbeImage, an image whose manifest they fetch.
	ProbeRegistry, ProbeImage string
	Publisher                 Publisher           // receives every check result (nil: none)
	Metrics                   *Metrics            // updated if set
	Getenv                    func(string) string // reads the environment ($IBMCLOUD_API_KEY); nil reads nothing
	IAM                       iam.Options         // tunes the token sources
	Now                       func() time.Time    // the clock (time.Now)
	Log                       klog.Logger         // one line per change of state
}

// Agent refreshes ahead and checks; Run runs both until its context ends.
type Agent struct {
	o      Options
	ahead  time.Duration
	memory *cache.Memory
	last   struct {
		refreshErr string
		health     *Health
	}
}

// New returns an agent; it does no I/O.
func New(o Options) *Agent {
	if o.Lead <= 0 {
		o.Lead = DefaultLead
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = DefaultCheckInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log.GetSink() == nil {
		o.Log = klog.Background()
	}
	h := fnv.New64a()
	h.Write([]byte(o.NodeName))
	jitter := time.Duration(h.Sum64() % uint64(o.Lead/2+1))
	return &Agent{o: o, ahead: o.Lead + jitter, memory: cache.NewMemory()}
}

// Ahead is how long before the plugin's refresh point this agent refreshes.
func (a *Agent) Ahead() time.Duration { return a.ahead }

// Settings reads the plugin's settings from the kubelet config.
func (a *Agent) Settings() (*config.Config, error) {
	p, err := installer.ReadProvider(a.o.KubeletConfig, installer.DefaultName)
	if err != nil {
		return nil, err
	}
	cfg, err := config.FromPluginArgs(p.Args, p.Env)
	if err != nil {
		return nil, fmt.Errorf("the %s provider in %s: %w", installer.DefaultName, a.o.KubeletConfig, err)
	}
	cfg.Memory = a.memory
	return cfg, nil
}

// Refresh makes sure the shared cache holds a token that stays fresh for
// the plugin for at least Ahead: it refreshes when the cached one does not
// (under the cache's lock, so that concurrent plugin runs and the agent make
// one call). It returns when to call it again.
func (a *Agent) Refresh(ctx context.Context) (next time.Duration, err error) {
	defer func() { a.noteRefresh(err) }()
	cfg, err := a.Settings()
	if err != nil {
		return retryMax, err
	}
	id, err := cfg.Node(a.o.Getenv, a.o.IAM)
	if err != nil {
		return retryMax, err
	}
	src := cache.New(id.Source, id.Key, cache.Options{Dir: cfg.DiskCacheDir(), Memory: a.memory, Ahead: a.ahead, Now: a.o.Now, Logger: a.o.Log})
	r, err := src.Fetch(ctx)
	now := a.o.Now()
	if a.o.Metrics != nil {
		a.o.Metrics.refreshed(r, err)
	}
	if err == nil && r.RefreshErr != nil {
		err = r.RefreshErr // served from the cache, but the refresh failed
	}
	if err != nil {
		return retryMin, err
	}
	// Due Ahead before the plugin's refresh point, or halfway through the
	// token's fresh window for tokens too short-lived for that.
	t := r.Token
	due := t.RefreshAt().Add(-a.ahead)
	if half := t.IssuedAt.Add(t.RefreshAt().Sub(t.IssuedAt) / 2); due.Before(half) {
		due = half
	}
	return max(time.Second, due.Sub(now)), nil
}

// noteRefresh logs a refresh failure once per distinct cause, and the
// recovery.
func (a *Agent) noteRefresh(err error) {
	msg := ""
	if err != nil {
		msg = secret.Line(err.Error(), 1000)
	}
	if msg == a.last.refreshErr {
		return
	}
	if msg == "" {
		a.o.Log.Info("Token refresh works again")
	} else {
		a.o.Log.Info("Token refresh failed; the plugin keeps serving the cached token while it is valid", "err", msg)
	}
	a.last.refreshErr = msg
}

// Check runs the checks and publishes the result.
func (a *Agent) Check(ctx context.Context) Health {
	env := doctor.Env{Getenv: a.o.Getenv, KubeletConfig: a.o.KubeletConfig, BinDir: a.o.BinDir, ProcDir: "-", IAM: a.o.IAM, Now: a.o.Now, RegistryHosts: []string{}, Image: a.o.ProbeImage}
	if a.o.ProbeRegistry != "" {
		env.RegistryHosts = []string{a.o.ProbeRegistry}
	}
	var h Health
	if cfg, err := a.Settings(); err != nil {
		h = Health{Reason: "KubeletConfigUnusable", Message: secret.Line(err.Error(), maxMessage)}
	} else {
		env.Config = *cfg
		h = healthOf(doctor.Run(ctx, env))
	}
	h.At = a.o.Now()
	changed := a.last.health == nil || a.last.health.OK != h.OK || a.last.health.Reason != h.Reason
	if changed {
		a.o.Log.Info("Pull credentials health", "ready", h.OK, "reason", h.Reason, "message", h.Message)
	}
	if a.o.Metrics != nil {
		a.o.Metrics.checked(h)
	}
	if a.o.Publisher != nil {
		if err := a.o.Publisher.Publish(ctx, h, changed); err != nil {
			a.o.Log.V(2).Info("Could not publish the node's health", "err", err.Error())
		}
	}
	a.last.health = &h
	return h
}

// Run refreshes and checks until ctx is done: a check at once and every
// CheckInterval, a refresh at once and whenever the token comes due, with
// a growing wait after failures. It never returns an error: every failure
// is reported and retried.
func (a *Agent) Run(ctx context.Context) {
	refresh := time.NewTimer(0)
	check := time.NewTimer(0)
	defer refresh.Stop()
	defer check.Stop()
	backoff := retryMin
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			next, err := a.Refresh(ctx)
			if err != nil {
				next, backoff = backoff, min(2*backoff, retryMax)
			} else {
				backoff = retryMin
			}
			refresh.Reset(next)
		case <-check.C:
			a.Check(ctx)
			check.Reset(a.o.CheckInterval)
		}
	}
}
