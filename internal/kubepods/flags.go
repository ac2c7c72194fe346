package kubepods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// DefaultSyncWait is how long Flags.Start waits for the first list of the node's pods before letting
// karmord go on without it (lookups answer "unknown" until the list arrives).
const DefaultSyncWait = 10 * time.Second

// Flags are karmord's settings for pod labels from the Kubernetes API: two command-line flags, and
// the node name karmord already has.
type Flags struct {
	// Enabled turns the feature on (--kube-pod-labels); off by default.
	Enabled bool
	// Kubeconfig is the kubeconfig file (--kubeconfig); empty means the in-cluster service account,
	// else $KUBECONFIG, else ~/.kube/config.
	Kubeconfig string
	// NodeName is this node's name in Kubernetes; karmord sets its --node-name here. Empty means
	// $NODE_NAME, else the host name in lower case (the kubelet's default).
	NodeName string
	// SyncWait bounds how long Start waits for the first list; zero means DefaultSyncWait.
	SyncWait time.Duration
}

// Register adds --kube-pod-labels and --kubeconfig to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.BoolVar(&f.Enabled, "kube-pod-labels", false, "fill in pod labels the OCI annotations lack (containerd without karmor-nri) from the Kubernetes API, watching only the pods of --node-name (default: $NODE_NAME, else the host name)")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig for --kube-pod-labels (default: in-cluster service account, else $KUBECONFIG, else ~/.kube/config)")
}

// Start does nothing and returns a nil lookup when the feature is off. When it is on, it connects to
// the API server, starts watching this node's pods until ctx is done, waits up to SyncWait for the
// first list, and returns the lookup karmord calls for each container's pod. It also routes
// client-go's own log lines (klog) to logger.
func (f *Flags) Start(ctx context.Context, logger *slog.Logger) (lookup func(namespace, pod string) (map[string]string, bool), err error) {
	if !f.Enabled {
		return nil, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	node, err := f.nodeName()
	if err != nil {
		return nil, err
	}
	config, err := f.restConfig()
	if err != nil {
		return nil, err
	}
	client, err := corev1client.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("--kube-pod-labels: Kubernetes client for %s: %w", config.Host, err)
	}
	w, err := New(Options{Client: coreOnly{client}, NodeName: node, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("--kube-pod-labels: %w", err)
	}
	klog.SetSlogLogger(logger)
	go w.Run(klog.NewContext(ctx, logr.FromSlogHandler(logger.Handler())))

	wait := f.SyncWait
	if wait <= 0 {
		wait = DefaultSyncWait
	}
	syncCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if w.WaitSynced(syncCtx) {
		logger.Info("pod labels from the Kubernetes API are ready", "node", node, "server", config.Host)
	} else {
		logger.Warn("the first list of this node's pods has not arrived; pods get their labels once it does",
			"node", node, "server", config.Host, "waited", wait.String())
	}
	return w.Lookup, nil
}

func (f *Flags) nodeName() (string, error) {
	if f.NodeName != "" {
		return f.NodeName, nil
	}
	if env := os.Getenv("NODE_NAME"); env != "" {
		return env, nil
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "", fmt.Errorf("--kube-pod-labels: no node name: set --node-name or $NODE_NAME (host name: %v)", err)
	}
	return strings.ToLower(host), nil
}

// restConfig finds the API server: --kubeconfig, else the pod's service account, else $KUBECONFIG or
// ~/.kube/config.
func (f *Flags) restConfig() (*rest.Config, error) {
	var config *rest.Config
	var err error
	if f.Kubeconfig != "" {
		config, err = clientcmd.BuildConfigFromFlags("", f.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", f.Kubeconfig, err)
		}
	} else {
		config, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			config, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
		}
		if err != nil {
			return nil, fmt.Errorf("--kube-pod-labels: no Kubernetes API found (not in a pod, and no usable $KUBECONFIG or ~/.kube/config); pass --kubeconfig: %w", err)
		}
	}
	config = rest.CopyConfig(config)
	config.UserAgent = "karmord"
	// Protobuf is smaller and cheaper to decode than JSON; the core/v1 client supports it.
	config.ContentType = "application/vnd.kubernetes.protobuf"
	config.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return config, nil
}

// coreOnly is a Client made from the core/v1 client alone, so karmord does not link the clients of
// every other API group.
type coreOnly struct{ core corev1client.CoreV1Interface }

func (c coreOnly) CoreV1() corev1client.CoreV1Interface { return c.core }
