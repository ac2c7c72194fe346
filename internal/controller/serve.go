package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/karmor/karmor/internal/oci"
)

// Options are karmor-controller's flags.
type Options struct {
	Kubeconfig              string
	WatchNamespace          string
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
	MetricsAddr             string
	HealthAddr              string
	FieldManager            string
	Workers                 int
	QPS                     float32
	Burst                   int
	RegistryCAFile          string
	Logger                  *slog.Logger
}

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// RestConfig is --kubeconfig when given, else the in-cluster configuration, else $KUBECONFIG
// (or ~/.kube/config).
func RestConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("not in a cluster and no kubeconfig: pass --kubeconfig or set $KUBECONFIG (%w)", err)
	}
	return cfg, nil
}

// DefaultLeaderElectionNamespace is $POD_NAMESPACE, else the service account's namespace.
func DefaultLeaderElectionNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}

// Main runs karmor-controller with its flags until ctx ends: the metrics and health servers
// and the controller.
func Main(ctx context.Context, opts Options) error {
	log := opts.Logger
	klog.SetSlogLogger(log) // client-go's own messages in the same log, same format
	restCfg, err := RestConfig(opts.Kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = opts.QPS, opts.Burst
	restCfg.UserAgent = "karmor-controller"
	if opts.RegistryCAFile != "" {
		if _, err := os.Stat(opts.RegistryCAFile); err != nil {
			return fmt.Errorf("--registry-ca-file: %w", err)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := New(Config{
		Rest:                    restCfg,
		WatchNamespace:          opts.WatchNamespace,
		LeaderElect:             opts.LeaderElect,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		LeaderElectionID:        opts.LeaderElectionID,
		LeaseDuration:           opts.LeaseDuration,
		RenewDeadline:           opts.RenewDeadline,
		RetryPeriod:             opts.RetryPeriod,
		FieldManager:            opts.FieldManager,
		Workers:                 opts.Workers,
		Transport:               oci.TransportOptions{CAFile: opts.RegistryCAFile},
		Logger:                  log,
		Metrics:                 reg,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	if opts.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if err := serve(ctx, log, "metrics", opts.MetricsAddr, mux, errc); err != nil {
			return err
		}
	}
	if opts.HealthAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", c.Healthz)
		mux.HandleFunc("/readyz", c.Readyz)
		if err := serve(ctx, log, "health", opts.HealthAddr, mux, errc); err != nil {
			return err
		}
	}
	go func() { errc <- c.Run(ctx) }()
	err = <-errc
	cancel()
	return err
}

// serve listens at once (so that a taken port fails the start) and serves until ctx ends.
func serve(ctx context.Context, log *slog.Logger, what, addr string, h http.Handler, errc chan<- error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s server: %w", what, err)
	}
	log.Info("serving "+what, "addr", ln.Addr().String())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("%s server: %w", what, err)
		}
	}()
	return nil
}
