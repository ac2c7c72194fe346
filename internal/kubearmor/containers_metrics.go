package kubearmor

import "github.com/prometheus/client_golang/prometheus"

// containerMetrics are the container feed's Prometheus series.
type containerMetrics struct {
	connected  prometheus.Gauge
	sent       *prometheus.CounterVec
	retries    *prometheus.CounterVec
	resyncs    prometheus.Counter
	omitted    prometheus.Counter
	unsendable prometheus.Counter
}

func newContainerMetrics(reg prometheus.Registerer, f *ContainerFeed) *containerMetrics {
	m := &containerMetrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "karmor_kubearmor_connected",
			Help: "1 while KubeArmor's ka.sock is reachable and has karmord's containers, else 0.",
		}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karmor_kubearmor_containers_sent_total",
			Help: "Container creates and deletes KubeArmor acknowledged, resyncs included.",
		}, []string{"op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "karmor_kubearmor_retries_total",
			Help: "Messages to KubeArmor retried, by reason: err (KubeArmor answered err) or failure (connection or timeout).",
		}, []string{"reason"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karmor_kubearmor_resyncs_total",
			Help: "Times the whole live set was sent to KubeArmor (a new KubeArmor, or recovering from a failure).",
		}),
		omitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karmor_kubearmor_labels_omitted_total",
			Help: "Labels left out of containers sent to KubeArmor (over its 4 KiB message, or not expressible in its labels string).",
		}),
		unsendable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "karmor_kubearmor_containers_unsendable_total",
			Help: "Containers that could not be described to KubeArmor within its 4 KiB message at all.",
		}),
	}
	if reg == nil {
		return m
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "karmor_kubearmor_queue_length",
		Help: "Container starts and stops waiting to be sent to KubeArmor.",
	}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return float64(len(f.queue))
	})
	known := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "karmor_kubearmor_containers",
		Help: "Containers the running KubeArmor acknowledged.",
	}, func() float64 {
		f.mu.Lock()
		defer f.mu.Unlock()
		return float64(len(f.has))
	})
	reg.MustRegister(m.connected, m.sent, m.retries, m.resyncs, m.omitted, m.unsendable, queue, known)
	return m
}
