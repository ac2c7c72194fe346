package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's Prometheus series (namespace karmor_controller).
type metrics struct {
	checks          *prometheus.CounterVec // registry checks per source and outcome
	writes          *prometheus.CounterVec // object writes by operation
	reconcileErrors prometheus.Counter     // reconciles that returned an error (retried)
	reconcileTime   prometheus.Histogram   // reconcile durations, registry check included
	leader          prometheus.Gauge       // 1 while this replica leads
	ready           *prometheus.GaugeVec   // 1 per PolicySource whose Ready condition is True
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "karmor_controller", Name: "registry_checks_total",
			Help: "Registry checks of PolicySources, by source and result (ok, unchanged, FetchFailed, VerificationFailed, Invalid).",
		}, []string{"namespace", "name", "result"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "karmor_controller", Name: "object_writes_total",
			Help: "Writes of KubeArmor objects, by operation (create, update, restore after drift, delete) and kind.",
		}, []string{"operation", "kind"}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "karmor_controller", Name: "reconcile_errors_total",
			Help: "Reconciles that failed and were retried.",
		}),
		reconcileTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "karmor_controller", Name: "reconcile_duration_seconds",
			Help:    "Time of one PolicySource reconcile, registry check included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "karmor_controller", Name: "leader",
			Help: "1 while this replica is the leader and reconciles, else 0.",
		}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "karmor_controller", Name: "source_ready",
			Help: "1 per PolicySource whose Ready condition is True, 0 when it is not.",
		}, []string{"namespace", "name"}),
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.writes, m.reconcileErrors, m.reconcileTime, m.leader, m.ready)
	}
	return m
}
