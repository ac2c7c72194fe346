// Package agent is karmord, karmor's node agent: it learns containers from karmor-hook's events,
// from the hook's spool and from the runtimes' on-disk state (never through a runtime socket),
// keeps the table of live containers, follows policy sources (directories, OCI references) and
// tells which policies apply to each container and to the node, and serves all that over a unix
// socket (list, get, watch, policy list, explain) and as Prometheus metrics.
//
// The pieces:
//
//   - table.go: the live containers and the ordering rules that keep late or replayed events
//     from resurrecting stopped containers or removing newer ones.
//   - stream.go, seq.go: sequence numbers (unique across restarts), the ring of recent events and
//     the watchers, who never slow the hook's acknowledgement.
//   - slim.go: the slim form containers take in list answers and the stream (annotations cut),
//     the size estimate that bounds the ring in bytes, and the chunks of a list answer.
//   - server.go, socket.go: the socket, peer credentials, framing and the request dispatch (a
//     handler per envelope type: add new request types there).
//   - spool.go, reconcile.go: the spool replay and rescan, and reconciliation with runc/crun state
//     roots and /proc.
//   - policy.go, node.go: the policy sources (internal/policysource), matching at answer time
//     (internal/match) outside the table's lock, policy changes on the stream, and the node's
//     name and labels for host policies.
//   - metrics.go: the Prometheus series; health.go: liveness and readiness (socket, HTTP probes).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/karmor/karmor/internal/kubearmor"
	"github.com/karmor/karmor/internal/policysource"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Agent is one karmord. Create it with New and serve with Run.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	access  accessPolicy

	// mu guards the table, the stream and the sequence store together, so that an event's
	// effect on the table and its place in the stream are one step.
	mu     sync.Mutex
	table  *table
	stream *stream
	seq    *seqStore

	handlers map[string]handler

	// policies follows the policy sources; its Current set is read without any lock.
	policies *policysource.Manager

	// containerFeed, when KubeArmor is fed, hears every change of the table (under mu, so in
	// the table's order) and sends it to KubeArmor on its own goroutine.
	containerFeed *kubearmor.ContainerFeed
	// policyFeed, when KubeArmor takes policies from karmord, hears every policy set put in
	// force and sends it to KubeArmor on its own goroutine.
	policyFeed *kubearmor.PolicyFeed

	// conns limits and tracks the connections being served.
	conns     chan struct{}
	connsDone sync.WaitGroup

	// stuckSpool holds spool files that were applied but could not be removed, so they are not
	// applied again on every scan. Only the spool loop touches it.
	stuckSpool map[string]bool

	ready chan struct{}
	// ownSocket is the socket file Run created, for the liveness check; set before anything
	// that reads it starts.
	ownSocket os.FileInfo
}

// New checks cfg, fills its defaults and prepares an agent: it reads the sequence reservation in
// cfg.StateDir (creating the directory), but does not touch the socket until Run.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seq, base, err := openSeqStore(cfg.StateDir)
	if seq == nil {
		return nil, err
	}
	if err != nil {
		cfg.Logger.Warn("sequence numbers restart from a safe value", "err", err)
	}
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		metrics:    newMetrics(),
		access:     newAccessPolicy(uint32(os.Geteuid()), cfg.AllowUIDs, cfg.AllowGIDs),
		table:      newTable(),
		stream:     newStream(cfg.EventRing, cfg.EventRingBytes, cfg.WatchBuffer, base),
		seq:        seq,
		conns:      make(chan struct{}, cfg.MaxConns),
		stuckSpool: map[string]bool{},
		ready:      make(chan struct{}),
	}
	a.handlers = a.defaultHandlers()
	if cfg.KubeArmorPolicyAddr != "" {
		// Before the policy manager: it reports the sets it loads at start through policyChanged.
		a.policyFeed = kubearmor.NewPolicyFeed(kubearmor.PolicyFeedOptions{
			Addr:       cfg.KubeArmorPolicyAddr,
			LedgerPath: filepath.Join(cfg.StateDir, kubeArmorPolicyLedger),
			Logger:     a.log,
			Registerer: a.metrics.registry,
		})
	}
	if a.policies, err = newPolicyManager(cfg, a.policyChanged); err != nil {
		return nil, err
	}
	a.metrics.registry.MustRegister(newPolicyCollector(a.policies))
	if cfg.KubeArmorSocket != "" {
		a.containerFeed = kubearmor.NewContainerFeed(kubearmor.ContainerFeedOptions{
			Socket:     cfg.KubeArmorSocket,
			Describe:   a.fillLabels,
			Logger:     a.log,
			Registerer: a.metrics.registry,
		})
	}
	return a, nil
}

// Ready is closed once Run has replayed the spool, reconciled, and accepts connections.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Registry is the agent's Prometheus registry, for embedding its metrics elsewhere.
func (a *Agent) Registry() *prometheus.Registry { return a.metrics.registry }

// Run serves until ctx ends: it takes the socket (refusing to displace a live agent), replays the
// spool, reconciles with the runtimes' state, then accepts connections while rescanning the spool
// and reconciling periodically. It returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := listenSocket(a.cfg)
	if err != nil {
		return err
	}
	own, _ := os.Lstat(a.cfg.Socket)
	a.ownSocket = own
	defer removeOwnSocket(a.cfg.Socket, own)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The HTTP servers: metrics (with the probes beside them) and the probes alone. Either
	// stopping stops karmord, so that a supervisor sees it.
	httpErr := make(chan error, 2)
	for _, h := range []struct {
		name, addr string
		listen     func() (*http.Server, net.Listener, error)
	}{{"metrics", a.cfg.MetricsAddr, a.listenMetrics}, {"health", a.cfg.HealthAddr, a.listenHealth}} {
		if h.addr == "" {
			continue
		}
		srv, hln, err := h.listen()
		if err != nil {
			ln.Close()
			return err
		}
		go func() { httpErr <- fmt.Errorf("%s server on %s stopped: %w", h.name, h.addr, srv.Serve(hln)) }()
		defer srv.Close()
		a.log.Info("serving "+h.name, "addr", hln.Addr().String())
	}

	// Policies from directories and caches are in force before the first answer; the sources
	// are followed from here on, until ctx ends.
	a.policies.Start(ctx)
	a.feedPolicies()

	// Connections wait in the listen backlog while the table is rebuilt, so that a hook arriving
	// now is answered from a complete table instead of spooling.
	applied, quarantined := a.drainSpool()
	added, removed := a.reconcile()
	a.log.Info("karmord ready", "socket", a.cfg.Socket, "spool_applied", applied, "spool_quarantined", quarantined,
		"reconcile_added", added, "reconcile_removed", removed, "containers", a.containerCount(),
		"policy_sources", len(a.policies.Status()), "policies", a.policies.Current().Match.Len(), "node", a.cfg.NodeName)

	var loops sync.WaitGroup
	if a.policyFeed != nil {
		loops.Add(1)
		go func() { defer loops.Done(); a.policyFeed.Run(ctx) }()
	}
	if a.containerFeed != nil {
		// Started after the table is rebuilt, so that KubeArmor's first resync carries it whole.
		loops.Add(1)
		go func() { defer loops.Done(); a.containerFeed.Run(ctx) }()
	}
	loops.Add(3)
	go func() { defer loops.Done(); a.acceptLoop(ctx, ln) }()
	go func() { defer loops.Done(); a.every(ctx, a.cfg.SpoolScanInterval, func() { a.drainSpool() }) }()
	go func() { defer loops.Done(); a.every(ctx, a.cfg.ReconcileInterval, func() { a.reconcile() }) }()
	close(a.ready)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-httpErr:
		cancel()
	}
	ln.Close()
	a.mu.Lock()
	a.stream.dropAll("karmord is shutting down")
	a.mu.Unlock()
	loops.Wait()
	a.policies.Wait()
	a.connsDone.Wait()
	a.log.Info("karmord stopped")
	return runErr
}

// every runs fn every interval until ctx ends.
func (a *Agent) every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func (a *Agent) listenMetrics() (*http.Server, net.Listener, error) {
	mln, err := net.Listen("tcp", a.cfg.MetricsAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: listen on %s: %w", a.cfg.MetricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	a.addHealthHandlers(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	return srv, mln, nil
}

// apply applies one event to the table, numbers and publishes it when it changed something, and
// returns the verdict and the sequence number the sender is acknowledged with: the event's own,
// or the latest when the event changed nothing. ev.Source must be set.
func (a *Agent) apply(ev agentapi.Event) (verdict, uint64) {
	began := time.Now()
	ev.Time = a.clampTime(ev, began)
	ev.Container.Policies = nil // karmord's to say, at query time
	ev.Container.KubeArmor = ""
	ev.Container.AnnotationsOmitted = 0
	a.mu.Lock()
	v, gone := a.table.apply(&ev)
	if a.containerFeed != nil {
		switch v {
		case added, updated:
			a.containerFeed.Started(ev.Container)
		case removed:
			a.containerFeed.Stopped(ev.Container.ID)
		}
	}
	seq := a.stream.head
	if v != ignored {
		pub := ev
		if gone != nil {
			// Watchers of a stop want to know what stopped, not only its id.
			pub.Container = *gone
		}
		pub.Container.Source = ev.Source
		// The stream retains and shares what it is given: slim, so that churn does not pin
		// every stopped container's annotations.
		pub.Container = slimContainer(pub.Container)
		env := &agentapi.Envelope{Type: agentapi.TypeEvent, Event: &pub}
		a.publish(env)
		seq = env.Seq
	}
	live := len(a.table.live)
	a.mu.Unlock()

	a.metrics.applyDuration.Observe(time.Since(began).Seconds())
	a.metrics.containers.Set(float64(live))
	a.metrics.events.WithLabelValues(stageLabel(ev.Stage), ev.Kind, ev.Source, v.String()).Inc()
	level := slog.LevelInfo
	if v == ignored {
		level = slog.LevelDebug
	}
	a.log.Log(context.Background(), level, "event", "kind", ev.Kind, "id", ev.Container.ID, "pid", ev.Container.PID,
		"stage", ev.Stage, "source", ev.Source, "result", v.String(), "seq", seq)
	return v, seq
}

// publish numbers env and hands it to the stream's watchers, reserving sequence numbers across
// restarts as it goes. The caller holds a.mu.
func (a *Agent) publish(env *agentapi.Envelope) {
	if err := a.seq.ensure(a.stream.head + 1); err != nil {
		a.metrics.errors.WithLabelValues(errKindSeq).Inc()
		a.log.Error("sequence numbers may repeat after a restart", "err", err)
	}
	dropped := a.stream.publish(env)
	a.metrics.watchDrops.Add(float64(dropped))
}

// snapshot returns the live containers and the sequence number they reflect.
func (a *Agent) snapshot() ([]agentapi.Container, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.table.list(), a.stream.head
}

func (a *Agent) containerCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.table.live)
}

// errShutdown is returned by handlers interrupted by the agent's shutdown.
var errShutdown = errors.New("karmord is shutting down")
