package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/policysource"
)

// Config configures a Controller.
type Config struct {
	// Rest reaches the API server (QPS and Burst are taken as given).
	Rest *rest.Config
	// WatchNamespace limits the PolicySources followed to one namespace; "" follows all.
	WatchNamespace string

	// LeaderElect makes the replicas elect one leader through a Lease; only the leader
	// reconciles. Off, this process reconciles at once (one replica only).
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	// Identity names this replica in the Lease; default hostname plus a random suffix.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's (defaults 15s, 10s, 2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	// FieldManager is the server-side apply field manager (default karmor-controller).
	FieldManager string
	// Workers is the number of PolicySources reconciled at once (default 2).
	Workers int
	// Transport is the base of every registry connection (extra CA, plain HTTP from the
	// environment); each PolicySource adds its credentials and insecure flag.
	Transport oci.TransportOptions

	Logger *slog.Logger
	// Metrics receives the controller's metrics; nil registers nowhere.
	Metrics prometheus.Registerer
}

// Controller follows PolicySources and applies their artifacts as KubeArmor objects.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	dyn     dynamic.Interface
	kube    kubernetes.Interface
	metrics *metrics
	queue   workqueue.TypedRateLimitingInterface[string]

	events   record.EventBroadcaster
	recorder record.EventRecorder
	healthz  *leaderelection.HealthzAdaptor
	synced   atomic.Bool // the leader's caches are synced
	leading  atomic.Bool
	sources  cache.SharedIndexInformer
	objects  dynamicinformer.DynamicSharedInformerFactory
	stop     <-chan struct{}
	ensureMu sync.Mutex // one ensureKind at a time: an informer is made and handled once
	kindsMu  sync.Mutex
	kinds    map[string]cache.SharedIndexInformer // started informers per KubeArmor kind
	statesMu sync.Mutex
	states   map[string]*state
}

// state is what the controller remembers of one PolicySource between reconciles: the OCI
// source (its digest in force and files) and when the registry is next due.
type state struct {
	fingerprint string
	oci         *policysource.OCI
	trusted     bool
	nextCheck   time.Time
	lastErr     error
	lastFailure policysource.Failure
}

// New checks cfg and connects the clients; nothing runs until Run.
func New(cfg Config) (*Controller, error) {
	if cfg.Rest == nil {
		return nil, errors.New("controller: no API server configuration")
	}
	if cfg.FieldManager == "" {
		cfg.FieldManager = DefaultFieldManager
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.LeaderElectionID == "" {
		cfg.LeaderElectionID = "karmor-controller"
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 15 * time.Second
	}
	if cfg.RenewDeadline <= 0 {
		cfg.RenewDeadline = 10 * time.Second
	}
	if cfg.RetryPeriod <= 0 {
		cfg.RetryPeriod = 2 * time.Second
	}
	if cfg.LeaderElect && cfg.LeaderElectionNamespace == "" {
		return nil, errors.New("leader election needs a namespace for its Lease: set --leader-election-namespace or $POD_NAMESPACE, or pass --leader-elect=false with one replica")
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = host + "_" + rand.String(8)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	dyn, err := dynamic.NewForConfig(cfg.Rest)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg.Rest)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	return &Controller{
		cfg:     cfg,
		log:     cfg.Logger,
		dyn:     dyn,
		kube:    kube,
		metrics: newMetrics(cfg.Metrics),
		healthz: leaderelection.NewLeaderHealthzAdaptor(20 * time.Second),
		kinds:   map[string]cache.SharedIndexInformer{},
		states:  map[string]*state{},
	}, nil
}

// Healthz answers /healthz: failing only when this replica holds the Lease but stopped
// renewing it (then a restart is the cure).
func (c *Controller) Healthz(w http.ResponseWriter, r *http.Request) {
	if err := c.healthz.Check(r); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Readyz answers /readyz: a standby replica is ready (it has nothing to serve); the leader is
// once its caches are synced.
func (c *Controller) Readyz(w http.ResponseWriter, _ *http.Request) {
	if c.leading.Load() && !c.synced.Load() {
		http.Error(w, "leader: caches not synced yet", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// Run runs until ctx ends (nil) or leadership is lost (an error: the process should exit so
// that it starts again as a candidate).
func (c *Controller) Run(ctx context.Context) error {
	c.events = record.NewBroadcaster(record.WithContext(ctx))
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	defer c.events.Shutdown()
	c.recorder = c.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: c.cfg.FieldManager})

	if !c.cfg.LeaderElect {
		c.lead(ctx)
		return nil
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.cfg.LeaderElectionNamespace, Name: c.cfg.LeaderElectionID},
		Client:     c.kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.cfg.Identity},
	}
	done := make(chan struct{})
	var lost, started atomic.Bool
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   c.cfg.LeaseDuration,
		RenewDeadline:   c.cfg.RenewDeadline,
		RetryPeriod:     c.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        c.healthz,
		Name:            c.cfg.LeaderElectionID,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				started.Store(true)
				defer close(done)
				c.log.Info("leading: reconciling PolicySources", "identity", c.cfg.Identity)
				c.lead(ctx)
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost.Store(true)
				}
			},
			OnNewLeader: func(id string) {
				if id != c.cfg.Identity {
					c.log.Info("standing by", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	c.log.Info("waiting for leadership", "lease", c.cfg.LeaderElectionNamespace+"/"+c.cfg.LeaderElectionID, "identity", c.cfg.Identity)
	elector.Run(ctx)
	if started.Load() {
		<-done // no write after Run returns
	}
	if lost.Load() {
		return errors.New("lost leadership: exiting so that this replica starts again as a candidate")
	}
	return nil
}

// lead reconciles until ctx ends.
func (c *Controller) lead(ctx context.Context) {
	c.leading.Store(true)
	c.metrics.leader.Set(1)
	defer func() {
		c.leading.Store(false)
		c.metrics.leader.Set(0)
	}()
	c.stop = ctx.Done()
	c.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "policysources"})
	defer c.queue.ShutDown()

	sources := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, c.cfg.WatchNamespace, nil)
	c.sources = sources.ForResource(PolicySourceGVR).Informer()
	_, _ = c.sources.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueObject,
		UpdateFunc: func(_, obj any) { c.enqueueObject(obj) },
		DeleteFunc: c.enqueueObject,
	})
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedByValue}).String()
	c.objects = dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.dyn, 0, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = managed })
	sources.Start(ctx.Done())
	defer sources.Shutdown()
	defer c.objects.Shutdown()
	for _, k := range kubeArmorKinds {
		// A kind whose CRD is missing is started later, when a PolicySource needs it.
		if err := c.ensureKind(ctx, k); err != nil {
			c.log.Warn("KubeArmor kind not served yet", "kind", k.Kind, "error", err)
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.sources.HasSynced) {
		return
	}
	c.synced.Store(true)
	defer c.synced.Store(false)

	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

func (c *Controller) enqueueObject(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueueOwner queues the PolicySource an applied object belongs to (by its labels), so that
// an object deleted or changed behind our back is put right.
func (c *Controller) enqueueOwner(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	l := u.GetLabels()
	if ns, name := l[LabelSourceNamespace], l[LabelSourceName]; ns != "" && name != "" {
		if c.cfg.WatchNamespace == "" || c.cfg.WatchNamespace == ns {
			c.queue.Add(ns + "/" + name)
		}
	}
}

// ensureKind starts the informer of a KubeArmor kind once the API server serves it.
func (c *Controller) ensureKind(ctx context.Context, k kindInfo) error {
	c.ensureMu.Lock()
	defer c.ensureMu.Unlock()
	c.kindsMu.Lock()
	_, ok := c.kinds[k.Kind]
	c.kindsMu.Unlock()
	if ok {
		return nil
	}
	list, err := c.kube.Discovery().ServerResourcesForGroupVersion(k.GVR.GroupVersion().String())
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("discover %s: %w", k.GVR.GroupVersion(), err)
	}
	served := false
	if list != nil {
		for _, r := range list.APIResources {
			served = served || r.Name == k.GVR.Resource
		}
	}
	if !served {
		return fmt.Errorf("the API server does not serve %s (%s.%s): install KubeArmor's CRDs (deployments/CRD in KubeArmor's repository, or its Helm chart)",
			k.Kind, k.GVR.Resource, k.GVR.Group)
	}
	inf := c.objects.ForResource(k.GVR).Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		UpdateFunc: func(_, obj any) { c.enqueueOwner(obj) },
		DeleteFunc: c.enqueueOwner,
	})
	c.objects.Start(c.stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("%s: cache not synced: %w", k.Kind, ctx.Err())
	}
	c.kindsMu.Lock()
	c.kinds[k.Kind] = inf
	c.kindsMu.Unlock()
	return nil
}

func (c *Controller) kindInformer(kind string) cache.SharedIndexInformer {
	c.kindsMu.Lock()
	defer c.kindsMu.Unlock()
	return c.kinds[kind]
}

// next reconciles one queued PolicySource; false when the queue is shut down.
func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	start := time.Now()
	after, err := c.reconcile(ctx, key)
	c.metrics.reconcileTime.Observe(time.Since(start).Seconds())
	if err != nil {
		c.metrics.reconcileErrors.Inc()
		if ctx.Err() == nil {
			c.log.Warn("reconcile failed; retrying", "policysource", key, "error", err)
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	if after > 0 {
		c.queue.AddAfter(key, after)
	}
	return true
}

// jitter spreads checks by ±10% so that sources made together do not check in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.9 + 0.2*mrand.Float64()))
}
