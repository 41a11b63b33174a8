package agent

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/icr-credential-provider/icr-credential-provider/cache"
	"github.com/icr-credential-provider/icr-credential-provider/doctor"
	"github.com/icr-credential-provider/icr-credential-provider/iam"
)

// Metrics are the agent's Prometheus metrics. None of them carries a token
// or any part of one: only times, counts, check IDs and statuses.
type Metrics struct {
	registry *prometheus.Registry
	expiry   prometheus.Gauge
	refresh  prometheus.Counter
	failures *prometheus.CounterVec
	check    *prometheus.GaugeVec
	lastRun  prometheus.Gauge
	ready    prometheus.Gauge
}

// NewMetrics registers the agent's metrics on a registry of their own.
func NewMetrics() *Metrics {
	const ns = "icr_credential_provider"
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "token_expiry_timestamp_seconds",
			Help: "When the node identity's cached IAM token expires (Unix time)."}),
		refresh: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "token_refreshes_total",
			Help: "Tokens the agent obtained from IAM ahead of the plugin's refresh point."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "token_refresh_failures_total",
			Help: "Failed refreshes, by cause (iam.Reason, or Other)."}, []string{"reason"}),
		check: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "check_status",
			Help: "The last result of each check: 1 for its status (ok, warn, fail, skip), 0 for the others."}, []string{"check", "status"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "check_last_run_timestamp_seconds",
			Help: "When the checks last ran (Unix time)."}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "credentials_ready",
			Help: "1 when no check fails (the ICRCredentialsReady condition is True), else 0."}),
	}
	m.registry.MustRegister(m.expiry, m.refresh, m.failures, m.check, m.lastRun, m.ready)
	return m
}

func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}

func (m *Metrics) refreshed(r cache.Result, err error) {
	if err == nil {
		m.expiry.Set(float64(r.Token.Expiry.Unix()))
		if r.Origin == cache.FromSource {
			m.refresh.Inc()
		}
		err = r.RefreshErr
	}
	if err != nil {
		reason := "Other"
		var ie *iam.Error
		var rf *cache.RecentFailureError
		switch {
		case errors.As(err, &ie):
			reason = string(ie.Reason)
		case errors.As(err, &rf):
			reason = "RecentFailure"
		}
		m.failures.WithLabelValues(reason).Inc()
	}
}

// checked sets ready last: a scrape that sees this round's ready sees its
// checks too.
func (m *Metrics) checked(h Health) {
	for _, c := range h.Checks {
		for _, s := range []doctor.Status{doctor.StatusOK, doctor.StatusWarn, doctor.StatusFail, doctor.StatusSkip} {
			m.check.WithLabelValues(c.ID, string(s)).Set(one(c.Status == s))
		}
	}
	m.lastRun.Set(float64(h.At.Unix()))
	m.ready.Set(one(h.OK))
}

// one is a gauge's value for a condition: 1 if true, else 0.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
