// Package kubepods gives karmord the labels of the pods on its node, read from the Kubernetes API.
//
// Under containerd without karmor-nri, a container's OCI annotations name its pod and namespace but
// carry no labels, so policies that select pods by label could not match. Where a Kubernetes API is
// reachable, karmord can watch the pods bound to its own node (field selector spec.nodeName=NODE) and
// answer "what are the labels of pod NS/NAME?" from that watch's cache. The hook path never waits on
// the API: Lookup reads memory only.
package kubepods

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Client is the part of a Kubernetes clientset this package uses. kubernetes.Interface satisfies it;
// so does the core/v1-only client Flags.Start builds, which keeps karmord from linking every API
// group's client.
type Client interface {
	CoreV1() corev1client.CoreV1Interface
}

// Options configure a Watcher.
type Options struct {
	// Client talks to the API server. Required.
	Client Client
	// NodeName is the node whose pods are watched (the name the kubelet registered). Required.
	NodeName string
	// Logger receives the watch's progress; nil discards.
	Logger *slog.Logger
}

// Watcher keeps a cache of the labels of the pods on one node.
type Watcher struct {
	nodeName string
	logger   *slog.Logger
	informer cache.SharedIndexInformer
}

// New prepares a Watcher; Run starts it.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil {
		return nil, errors.New("kubepods: no Kubernetes client")
	}
	if opts.NodeName == "" {
		return nil, errors.New("kubepods: no node name: set the name this node is registered under in Kubernetes")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	selector := NodeFieldSelector(opts.NodeName)
	pods := opts.Client.CoreV1().Pods(metav1.NamespaceAll)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	informer := cache.NewSharedIndexInformerWithOptions(lw, &corev1.Pod{}, cache.SharedIndexInformerOptions{})
	if err := informer.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("kubepods: set the pod transform: %w", err)
	}
	return &Watcher{nodeName: opts.NodeName, logger: logger, informer: informer}, nil
}

// NodeFieldSelector is the field selector that asks the API server for the pods bound to node.
func NodeFieldSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

// Run lists and watches the node's pods until ctx is done, reconnecting by itself when the API server
// is away. Call it once.
func (w *Watcher) Run(ctx context.Context) {
	w.logger.Info("watching the pods of this node for their labels", "node", w.nodeName)
	w.informer.RunWithContext(ctx)
}

// WaitSynced waits until the first full list of the node's pods is in the cache, and reports whether
// it is (false when ctx ended first).
func (w *Watcher) WaitSynced(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced)
}

// Lookup returns the labels of pod name in namespace as last seen by the watch. ok is false when the
// pod is not known on this node (not yet seen, deleted, or on another node). The map is the caller's
// own copy; it is nil when the pod has no labels.
func (w *Watcher) Lookup(namespace, name string) (labels map[string]string, ok bool) {
	item, exists, err := w.informer.GetStore().GetByKey(namespace + "/" + name)
	if err != nil || !exists {
		return nil, false
	}
	// The API server applies the field selector: only this node's pods are in the cache.
	pod, isPod := item.(*corev1.Pod)
	if !isPod {
		return nil, false
	}
	return maps.Clone(pod.Labels), true
}

// slimPod keeps only what Lookup reads, so the cache holds a few hundred bytes per pod instead of
// the whole object (managed fields, specs, statuses). It is idempotent, as the informer requires.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            pod.Name,
			Namespace:       pod.Namespace,
			UID:             pod.UID,
			ResourceVersion: pod.ResourceVersion,
			Labels:          pod.Labels,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
	}, nil
}
