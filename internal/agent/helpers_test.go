package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// testConfig returns a config whose every path is private to the test. The socket lives in a
// short directory of its own: unix socket paths are limited to 108 bytes.
func testConfig(t testing.TB) (Config, *testutil.SyncBuffer) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "karmord-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	base := t.TempDir()
	logs := &testutil.SyncBuffer{}
	return Config{
		Socket:            filepath.Join(sockDir, "run", "k.sock"),
		SpoolDir:          filepath.Join(base, "spool"),
		StateDir:          filepath.Join(base, "state"),
		RuntimeRoots:      []string{},
		ProcRoot:          "/proc",
		ReconcileInterval: time.Hour,
		SpoolScanInterval: time.Hour,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

// runAgent starts an agent and waits until it serves; the test's cleanup stops it and checks
// that Run returned cleanly.
func runAgent(t testing.TB, cfg Config) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("agent stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("agent not ready after 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop within 20s of its context ending")
		}
	})
	return a
}

func client(cfg Config) *agentapi.Client {
	c := agentapi.NewClient(cfg.Socket)
	c.Timeout = 10 * time.Second
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// counter reads one series of a counter vector.
func counter(t testing.TB, a *Agent, name string, labels ...string) float64 {
	t.Helper()
	m := a.metrics
	switch name {
	case "events":
		return promtest.ToFloat64(m.events.WithLabelValues(labels...))
	case "spool":
		return promtest.ToFloat64(m.spoolReplays.WithLabelValues(labels...))
	case "reconcile":
		return promtest.ToFloat64(m.reconcile.WithLabelValues(labels...))
	case "connections":
		return promtest.ToFloat64(m.connections.WithLabelValues(labels...))
	case "errors":
		return promtest.ToFloat64(m.errors.WithLabelValues(labels...))
	case "policyLoads":
		return promtest.ToFloat64(m.policyLoads.WithLabelValues(labels...))
	}
	t.Fatalf("no counter %q", name)
	return 0
}

// waitFor polls cond until it holds or the deadline passes, then fails with what.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(cs []agentapi.Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return strings.Join(out, ",")
}

// reportStarts reports each container's start to the agent, as the hook does.
func reportStarts(t *testing.T, cl *agentapi.Client, cs []agentapi.Container) {
	t.Helper()
	for _, c := range cs {
		if _, err := cl.Report(ctxT(t), &agentapi.Event{Kind: agentapi.KindStart, Container: c}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLabelsAndPolicies lists the containers and checks each one's labels and matched
// policies, formatted "LABELS POLICIES", against want (by id).
func checkLabelsAndPolicies(t *testing.T, cl *agentapi.Client, want map[string]string) {
	t.Helper()
	list, err := cl.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range list {
		got[c.ID] = fmt.Sprintf("%v %v", c.Labels, c.Policies)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %s, want %s", id, got[id], w)
		}
	}
}
