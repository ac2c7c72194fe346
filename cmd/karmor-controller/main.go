// Command karmor-controller follows KubeArmor policy artifacts in OCI registries, once per
// cluster, and applies them as KubeArmor custom resources: one PolicySource (karmor.io/v1alpha1)
// per artifact. The flags are all there is here; internal/controller does the work.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/internal/controller"
	"github.com/karmor/karmor/internal/logflags"
	"github.com/karmor/karmor/internal/version"
)

type usageError struct{ error }

func main() {
	err := newCommand(os.Stderr).Execute()
	var ue usageError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "karmor-controller:", err)
		fmt.Fprintln(os.Stderr, "Run 'karmor-controller --help' for usage.")
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "karmor-controller:", err)
		os.Exit(1)
	}
}

func newCommand(logOut io.Writer) *cobra.Command {
	var opts controller.Options
	var logs logflags.Flags
	cmd := &cobra.Command{
		Use:   "karmor-controller",
		Short: "apply KubeArmor policies from OCI artifacts (PolicySource objects) as KubeArmor custom resources, once per cluster",
		Example: `  karmor-controller                          # in a pod: in-cluster config, Lease in $POD_NAMESPACE
  karmor-controller --kubeconfig ~/.kube/config --leader-elect=false --watch-namespace policies`,
		Version: version.String(),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("karmor-controller takes no arguments, only flags (got %q)", args[0])}
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := logs.Logger(logOut)
			if err != nil {
				return usageError{err}
			}
			opts.Logger = logger
			if opts.Workers < 1 {
				return usageError{errors.New("--workers must be at least 1")}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return controller.Main(ctx, opts)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := cmd.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster, else $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&opts.WatchNamespace, "watch-namespace", "", "follow the PolicySources of this namespace only (default: all)")
	f.BoolVar(&opts.LeaderElect, "leader-elect", true, "elect one active replica through a Lease; only the leader reconciles")
	f.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", controller.DefaultLeaderElectionNamespace(), "namespace of the Lease (default $POD_NAMESPACE, else the service account's)")
	f.StringVar(&opts.LeaderElectionID, "leader-election-id", "karmor-controller", "name of the Lease")
	f.DurationVar(&opts.LeaseDuration, "leader-election-lease-duration", 15*time.Second, "how long standbys wait before taking over a leader that stopped renewing")
	f.DurationVar(&opts.RenewDeadline, "leader-election-renew-deadline", 10*time.Second, "how long the leader tries to renew before giving up leadership")
	f.DurationVar(&opts.RetryPeriod, "leader-election-retry-period", 2*time.Second, "time between leader election attempts")
	f.StringVar(&opts.MetricsAddr, "metrics-addr", ":9090", "serve Prometheus metrics at http://ADDR/metrics (off when empty)")
	f.StringVar(&opts.HealthAddr, "health-addr", ":9091", "serve /healthz and /readyz at ADDR (off when empty)")
	f.StringVar(&opts.FieldManager, "field-manager", controller.DefaultFieldManager, "server-side apply field manager")
	f.IntVar(&opts.Workers, "workers", 2, "PolicySources reconciled at once")
	f.Float32Var(&opts.QPS, "kube-api-qps", 50, "API server requests per second")
	f.IntVar(&opts.Burst, "kube-api-burst", 100, "API server request burst")
	f.StringVar(&opts.RegistryCAFile, "registry-ca-file", "", "PEM CA bundle trusted for registries, beside the system's")
	logs.Register(f)
	cmd.SetContext(context.Background())
	return cmd
}
