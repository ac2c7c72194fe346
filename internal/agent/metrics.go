package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are karmord's Prometheus series, on a registry of the agent's own so that tests can run
// several agents in one process. Label values come from a fixed set (never from the peer), so a
// client cannot grow the series without bound.
type metrics struct {
	registry *prometheus.Registry

	events        *prometheus.CounterVec // stage, kind, source, result
	hookLatency   prometheus.Histogram   // as the hook reported it
	spoolReplays  *prometheus.CounterVec // result: applied, quarantined
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
		Help: "Errors by kind: malformed, unknown_type, panic, write, spool, reconcile, seq."}, []string{"kind"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "karmord_requests_total",
		Help: "Requests served, by envelope type."}, []string{"type"})
	m.watchDrops = prometheus.NewCounter(prometheus.CounterOpts{Name: "karmord_watch_drops_total",
		Help: "Watchers dropped because they fell behind."})
	m.applyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "karmord_apply_duration_seconds",
		Help: "Time to apply one event to the table, including the wait for its lock.", Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)})
	for _, c := range []prometheus.Collector{m.events, m.hookLatency, m.spoolReplays, m.reconcile, m.reconcileRuns, m.containers,
		m.connections, m.openConns, m.watchers, m.errors, m.requests, m.watchDrops, m.applyDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		m.registry.MustRegister(c)
	}
	return m
}
