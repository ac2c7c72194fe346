package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/karmor/karmor/internal/policysource"
)

// metrics are karmord's Prometheus series, on a registry of the agent's own so that tests can run
// several agents in one process. Label values come from a fixed set (never from the peer), so a
// client cannot grow the series without bound.
type metrics struct {
	registry *prometheus.Registry

	events        *prometheus.CounterVec // stage, kind, source, result
	hookLatency   prometheus.Histogram   // as the hook reported it
	spoolReplays  *prometheus.CounterVec // result: applied, quarantined
	spoolDropped  prometheus.Gauge       // the spool's dropped-events count, as hooks keep it
	reconcile     *prometheus.CounterVec // result: added, removed
	reconcileRuns *prometheus.CounterVec // result: ok, error
	containers    prometheus.Gauge       // live containers
	connections   *prometheus.CounterVec // result: accepted, rejected, busy
	openConns     prometheus.Gauge       // connections being served
	watchers      prometheus.Gauge       // watch streams open
	errors        *prometheus.CounterVec // kind: see the errKind constants
	requests      *prometheus.CounterVec // type of request
	watchDrops    prometheus.Counter     // watchers dropped for falling behind
	applyDuration prometheus.Histogram   // time to apply one event, lock included
	policyLoads   *prometheus.CounterVec // source, result: loaded, failed, unverified
}

// Error kinds counted in karmord_errors_total.
const (
	errKindMalformed = "malformed"    // a frame that does not decode
	errKindUnknown   = "unknown_type" // a request type the agent does not serve
	errKindPanic     = "panic"        // a handler panicked (recovered)
	errKindWrite     = "write"        // an answer could not be written
	errKindSpool     = "spool"        // the spool could not be read or a file removed
	errKindReconcile = "reconcile"    // a runtime state entry could not be read
	errKindSeq       = "seq"          // the sequence reservation could not be written
	errKindForbidden = "forbidden"    // a read-only peer sent a write request
)

// knownStages are the OCI hook stages; anything else a peer sends is counted as "other".
var knownStages = map[string]bool{
	"prestart": true, "createRuntime": true, "createContainer": true, "startContainer": true,
	"poststart": true, "poststop": true, "reconcile": true, "": true,
}

func stageLabel(stage string) string {
	if knownStages[stage] {
		return stage
	}
	return "other"
}

func newMetrics() *metrics {
	m := &metrics{registry: prometheus.NewRegistry()}
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_events_total",
		Help: "Container lifecycle events received, by hook stage, kind, source (hook, spool, reconcile) and what applying them did."},
		[]string{"stage", "kind", "source", "result"})
	m.hookLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "karmord_hook_duration_seconds",
		Help:    "How long karmor-hook had been running when it sent its event, as it reported.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2}})
	m.spoolReplays = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_spool_replays_total",
		Help: "Spooled events replayed: applied, or quarantined because they did not decode."}, []string{"result"})
	m.spoolDropped = prometheus.NewGauge(prometheus.GaugeOpts{Name: "karmord_spool_dropped_events",
		Help: "Events karmor-hook dropped because the spool was full (oldest starts first, never a stop for a start): the count in <spool>/dropped, read at each spool scan."})
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_reconcile_containers_total",
		Help: "Containers added (missed by hooks) or removed (process gone) by reconciliation."}, []string{"result"})
	m.reconcileRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_reconcile_runs_total",
		Help: "Reconciliation passes, by outcome."}, []string{"result"})
	m.containers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "karmord_containers", Help: "Live containers in the table."})
	m.connections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_connections_total",
		Help: "Connections to the socket: accepted, rejected (peer credentials) or busy (connection limit)."}, []string{"result"})
	m.openConns = prometheus.NewGauge(prometheus.GaugeOpts{Name: "karmord_connections_open", Help: "Connections being served."})
	m.watchers = prometheus.NewGauge(prometheus.GaugeOpts{Name: "karmord_watchers", Help: "Watch streams open."})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_errors_total",
		Help: "Errors by kind: malformed, unknown_type, panic, write, spool, reconcile, seq, forbidden."}, []string{"kind"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_requests_total",
		Help: "Requests served, by envelope type."}, []string{"type"})
	m.watchDrops = prometheus.NewCounter(prometheus.CounterOpts{Name: "karmord_watch_drops_total",
		Help: "Watchers dropped because they fell behind."})
	m.applyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "karmord_apply_duration_seconds",
		Help: "Time to apply one event to the table, including the wait for its lock.", Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)})
	m.policyLoads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_policy_loads_total",
		Help: "Policy source changes: new content put in force (loaded), a check that failed (failed), or new content refused because no trusted signature covers it (unverified); a failure repeating unchanged counts once."},
		[]string{"source", "result"})
	for _, c := range []prometheus.Collector{m.events, m.hookLatency, m.spoolReplays, m.spoolDropped, m.reconcile, m.reconcileRuns, m.containers,
		m.connections, m.openConns, m.watchers, m.errors, m.requests, m.watchDrops, m.applyDuration, m.policyLoads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		m.registry.MustRegister(c)
	}
	return m
}

// policyCollector reports the policy set in force and each source's state when scraped, read
// from the Manager (its Current set without a lock, its status under its own short lock). Source
// names come from karmord's flags, so their number is fixed.
type policyCollector struct {
	m *policysource.Manager

	generation, policies, duplicates   *prometheus.Desc
	failing, sourcePolicies, fromCache *prometheus.Desc
	lastSuccess, lastError, loadedAt   *prometheus.Desc
}

func newPolicyCollector(m *policysource.Manager) *policyCollector {
	source := []string{"source"}
	return &policyCollector{
		m:          m,
		generation: prometheus.NewDesc("karmord_policy_generation", "Generation of the policy set in force (1 is the set loaded at start).", nil, nil),
		policies:   prometheus.NewDesc("karmord_policies", "Policies in force, every source together.", nil, nil),
		duplicates: prometheus.NewDesc("karmord_policy_duplicates", "Policies defined more than once in the set in force.", nil, nil),
		failing: prometheus.NewDesc("karmord_policy_source_failing",
			"1 when the latest check of the source failed (its last good policies stay in force).", source, nil),
		sourcePolicies: prometheus.NewDesc("karmord_policy_source_policies", "Policy documents of the source in force.", source, nil),
		fromCache: prometheus.NewDesc("karmord_policy_source_from_cache",
			"1 while the source's policies come from the on-disk cache, not yet confirmed by the registry.", source, nil),
		lastSuccess: prometheus.NewDesc("karmord_policy_source_last_success_timestamp_seconds",
			"When a check of the source last succeeded (0: never).", source, nil),
		lastError: prometheus.NewDesc("karmord_policy_source_last_error_timestamp_seconds",
			"When a check of the source last failed (0: never).", source, nil),
		loadedAt: prometheus.NewDesc("karmord_policy_source_loaded_timestamp_seconds",
			"When the source's content in force was put in force (0: never).", source, nil),
	}
}

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.generation, c.policies, c.duplicates, c.failing, c.sourcePolicies, c.fromCache,
		c.lastSuccess, c.lastError, c.loadedAt} {
		ch <- d
	}
}

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	set := c.m.Current()
	ch <- prometheus.MustNewConstMetric(c.generation, prometheus.GaugeValue, float64(set.Generation))
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, float64(set.Match.Len()))
	ch <- prometheus.MustNewConstMetric(c.duplicates, prometheus.GaugeValue, float64(len(set.Duplicates)))
	for _, st := range c.m.Status() {
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, boolValue(st.Failing), st.Name)
		ch <- prometheus.MustNewConstMetric(c.sourcePolicies, prometheus.GaugeValue, float64(st.Policies), st.Name)
		ch <- prometheus.MustNewConstMetric(c.fromCache, prometheus.GaugeValue, boolValue(st.FromCache), st.Name)
		ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, unixSeconds(st.LastSuccess), st.Name)
		ch <- prometheus.MustNewConstMetric(c.lastError, prometheus.GaugeValue, unixSeconds(st.LastErrorAt), st.Name)
		ch <- prometheus.MustNewConstMetric(c.loadedAt, prometheus.GaugeValue, unixSeconds(st.LoadedAt), st.Name)
	}
}

// unixSeconds is t in seconds since the epoch, 0 for the zero time (never).
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
