package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Health is what karmord says about itself: on the socket (TypeHealth, `karmor status`) and over
// HTTP for Kubernetes probes (/healthz, /readyz on --health-addr and beside /metrics).
//
// Liveness fails only when a restart would help: the socket karmord serves has been removed or
// replaced, so hooks can no longer reach it. Everything else (a registry that is down, KubeArmor
// restarting) makes karmord unready, never dead: restarting it would not bring them back and
// would only lose the watchers.

// Health check names, as agentapi.HealthCheck.Name.
const (
	checkSocket       = "socket"
	checkReconcile    = "reconcile"
	checkPolicySource = "policy_source"
	checkKubeArmor    = "kubearmor"
)

// Health evaluates every check now. It takes no lock the hook's path waits for.
func (a *Agent) Health() *agentapi.Health {
	h := &agentapi.Health{Live: true, Ready: true}
	add := func(c agentapi.HealthCheck) {
		h.Checks = append(h.Checks, c)
		if !c.OK {
			h.Ready = false
			if c.Liveness {
				h.Live = false
			}
		}
	}
	started := isClosed(a.ready)
	add(a.socketCheck(started))
	rc := agentapi.HealthCheck{Name: checkReconcile, OK: started}
	if !started {
		rc.Detail = "replaying the spool and reconciling with the runtimes' state"
	}
	add(rc)
	for _, st := range a.policies.Status() {
		c := agentapi.HealthCheck{Name: checkPolicySource, Source: st.Name, OK: !st.LoadedAt.IsZero()}
		switch {
		case !c.OK && st.LastError != "":
			c.Detail = "never loaded: " + st.LastError
		case !c.OK:
			c.Detail = "not loaded yet"
		case st.Failing:
			c.Detail = "keeps its last good policies; latest check failed: " + st.LastError
		case st.FromCache:
			c.Detail = "policies from the on-disk cache, not yet confirmed by the registry"
		}
		add(c)
	}
	if a.containerFeed != nil {
		c := agentapi.HealthCheck{Name: checkKubeArmor, OK: a.containerFeed.Connected()}
		if !c.OK {
			c.Detail = "KubeArmor at " + a.cfg.KubeArmorSocket + " is not connected and in sync"
		}
		add(c)
	}
	return h
}

// socketCheck says whether the socket karmord listens on is still the file at its path. Before
// Run has taken it, the check passes (the process is starting; the readiness checks say so).
func (a *Agent) socketCheck(started bool) agentapi.HealthCheck {
	c := agentapi.HealthCheck{Name: checkSocket, OK: true, Liveness: true}
	if !started || a.ownSocket == nil {
		return c
	}
	fi, err := os.Lstat(a.cfg.Socket)
	switch {
	case err != nil:
		c.OK, c.Detail = false, fmt.Sprintf("the socket karmord serves is gone: %v", err)
	case !os.SameFile(fi, a.ownSocket):
		c.OK, c.Detail = false, a.cfg.Socket+" is no longer karmord's socket (replaced by another file)"
	}
	return c
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// handleHealth answers TypeHealth.
func (a *Agent) handleHealth(context.Context, *session, *agentapi.Envelope) (*agentapi.Envelope, error) {
	return &agentapi.Envelope{Type: agentapi.TypeHealthState, Health: a.Health()}, nil
}

// addHealthHandlers serves /healthz (liveness) and /readyz (readiness) on mux: 200 when the probe
// passes, 503 when it does not, with the checks as JSON either way.
func (a *Agent) addHealthHandlers(mux *http.ServeMux) {
	probe := func(pass func(*agentapi.Health) bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			h := a.Health()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			if !pass(h) {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_ = json.NewEncoder(w).Encode(h)
		}
	}
	mux.Handle("/healthz", probe(func(h *agentapi.Health) bool { return h.Live }))
	mux.Handle("/readyz", probe(func(h *agentapi.Health) bool { return h.Ready }))
}

// listenHealth prepares the server of --health-addr: the probes alone, nothing that names a
// container, so any address may serve it.
func (a *Agent) listenHealth() (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", a.cfg.HealthAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("health: listen on %s: %w", a.cfg.HealthAddr, err)
	}
	mux := http.NewServeMux()
	a.addHealthHandlers(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	return srv, ln, nil
}
