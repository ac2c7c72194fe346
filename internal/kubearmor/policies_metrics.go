package kubearmor

import "github.com/prometheus/client_golang/prometheus"

// policyMetrics are the policy feed's Prometheus series.
type policyMetrics struct {
	connected prometheus.Gauge
	sent      *prometheus.CounterVec
	errors    *prometheus.CounterVec
	resyncs   prometheus.Counter
}

func newPolicyMetrics(reg prometheus.Registerer, f *PolicyFeed) *policyMetrics {
	m := &policyMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "karmor_kubearmor_policy_connected",
			Help: "1 while KubeArmor's PolicyService is reachable and holds the policy set in force, else 0.",
		}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karmor_kubearmor_policy_sent_total",
			Help: "Policy events KubeArmor answered, by event (added, deleted) and KubeArmor's answer (Applied, Deleted, NotExist, Invalid, NotEnabled, Failure).",
		}, []string{"op", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karmor_kubearmor_policy_errors_total",
			Help: "Policy calls to KubeArmor that got no answer, by gRPC code (Unavailable: KubeArmor not reachable).",
		}, []string{"code"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karmor_kubearmor_policy_resyncs_total",
			Help: "Times the whole policy set was sent to KubeArmor (a KubeArmor reached anew, and once more after it settled).",
		}),
	}
	if reg == nil {
		return m
	}
	policies := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "karmor_kubearmor_policy_wanted",
		Help: "Policies in force that karmord sends to KubeArmor (not counting those it cannot send).",
	}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		n := 0
		for _, w := range f.wanted {
			if w.notSent == "" {
				n++
			}
		}
		return float64(n)
	})
	reg.MustRegister(m.connected, m.sent, m.errors, m.resyncs, policies)
	return m
}
