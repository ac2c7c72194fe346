package agent

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/pkg/agentapi"
)

// selfProcess returns this test process's pid and start time: a process that is certainly alive,
// to stand for a running container's init.
func selfProcess(t testing.TB) (int, uint64) {
	t.Helper()
	pid := os.Getpid()
	start, err := containerinfo.PIDStartTime("/proc", pid)
	if err != nil {
		t.Fatal(err)
	}
	return pid, start
}

func spool(t testing.TB, dir string, ev *agentapi.Event) string {
	t.Helper()
	p, err := agentapi.SpoolEvent(dir, ev)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSpoolReplayAtStart(t *testing.T) {
	cfg, logs := testConfig(t)
	pid, start := selfProcess(t)
	base := time.Now().Add(-time.Minute)
	ev := func(kind, id string, sec int, pid int, pidStart uint64) *agentapi.Event {
		return &agentapi.Event{Kind: kind, Stage: map[string]string{agentapi.KindStart: "createRuntime", agentapi.KindStop: "poststop"}[kind],
			Time: base.Add(time.Duration(sec) * time.Second), Container: agentapi.Container{ID: id, PID: pid, PIDStart: pidStart}}
	}
	// Written in another order than they happened; replay must follow their times.
	spool(t, cfg.SpoolDir, ev(agentapi.KindStop, "short", 3, 0, 0))
	spool(t, cfg.SpoolDir, ev(agentapi.KindStart, "long", 2, pid, start))
	spool(t, cfg.SpoolDir, ev(agentapi.KindStart, "short", 1, pid, start))
	// A start whose process is gone (a pid that cannot exist) is dropped, not applied.
	spool(t, cfg.SpoolDir, ev(agentapi.KindStart, "dead", 4, 1<<30, 12345))
	bad := filepath.Join(cfg.SpoolDir, fmt.Sprintf("%020d-start-bad-x.event", base.UnixNano()))
	if err := os.WriteFile(bad, []byte(`{"v":1,"type":"event","event":{"kind":"start"`), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongType := filepath.Join(cfg.SpoolDir, fmt.Sprintf("%020d-list-x.event", base.UnixNano()))
	if err := os.WriteFile(wrongType, []byte(`{"v":1,"type":"list"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	a := runAgent(t, cfg)
	list, err := client(cfg).List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if ids(list) != "long" || list[0].Source != agentapi.SourceSpool || list[0].PID != pid {
		t.Fatalf("after replay: %+v, want only the long-lived container from the spool", list)
	}
	w, _ := watch(t, cfg, 0)
	waitFor(t, "the replayed events", func() bool { return w.len() == 3 })
	if got := w.events(); got != "start:short:spool start:long:spool stop:short:spool" {
		t.Fatalf("replay order %q, want short start, long start, short stop", got)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.SpoolDir, "*"))
	var names []string
	for _, p := range left {
		names = append(names, filepath.Base(p))
	}
	if len(left) != 2 || !strings.HasSuffix(left[0], ".event.bad") || !strings.HasSuffix(left[1], ".event.bad") {
		t.Fatalf("spool after replay: %v, want only the two quarantined files", names)
	}
	if counter(t, a, "spool", "applied") != 3 || counter(t, a, "spool", "quarantined") != 2 || counter(t, a, "spool", "stale") != 1 {
		t.Fatalf("spool metrics: applied %v quarantined %v stale %v", counter(t, a, "spool", "applied"),
			counter(t, a, "spool", "quarantined"), counter(t, a, "spool", "stale"))
	}
	if !strings.Contains(logs.String(), "quarantined an undecodable spool file") {
		t.Fatal("quarantine not logged")
	}
}

// TestSpoolRescanWhileRunning: a hook that timed out against a busy agent spools its event; the
// running agent still applies it, and a spooled start older than a stop it already applied does
// not resurrect the container.
func TestSpoolRescanWhileRunning(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.SpoolScanInterval = 20 * time.Millisecond
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	pid, start := selfProcess(t)

	p := spool(t, cfg.SpoolDir, &agentapi.Event{Kind: agentapi.KindStart, Time: time.Now(), Container: agentapi.Container{ID: "late", PID: pid, PIDStart: start}})
	waitFor(t, "the spooled start to be applied", func() bool {
		c, err := cl.Get(ctx, "late")
		return err == nil && c.Source == agentapi.SourceSpool
	})
	waitFor(t, "the spool file to be removed", func() bool { _, err := os.Stat(p); return os.IsNotExist(err) })

	// The live stop arrives first; the start it follows is replayed from the spool afterwards.
	startedAt := time.Now()
	if _, err := cl.Report(ctx, &agentapi.Event{Kind: agentapi.KindStop, Time: startedAt.Add(time.Millisecond), Container: agentapi.Container{ID: "raced"}}); err != nil {
		t.Fatal(err)
	}
	p = spool(t, cfg.SpoolDir, &agentapi.Event{Kind: agentapi.KindStart, Time: startedAt, Container: agentapi.Container{ID: "raced", PID: pid, PIDStart: start}})
	waitFor(t, "the raced start to be consumed", func() bool { _, err := os.Stat(p); return os.IsNotExist(err) })
	if c, err := cl.Get(ctx, "raced"); err == nil {
		t.Fatalf("a stopped container was resurrected by its late start: %+v", c)
	}
}

// gaugeValue reads a metric without labels from the agent's registry by name (NaN when absent).
func gaugeValue(t testing.TB, a *Agent, name string) float64 {
	t.Helper()
	families, err := a.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return math.NaN()
}

// karmord exports the count of events hooks dropped from a full spool, at start and at every
// rescan (issue 12 item 7).
func TestSpoolDroppedEventsExported(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.SpoolScanInterval = 20 * time.Millisecond
	writeCount := func(n int) {
		if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(cfg.SpoolDir, ".count")
		if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%020d\n", n)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(cfg.SpoolDir, "dropped")); err != nil {
			t.Fatal(err)
		}
	}
	writeCount(3)
	a := runAgent(t, cfg)
	if got := gaugeValue(t, a, "karmord_spool_dropped_events"); got != 3 {
		t.Fatalf("karmord_spool_dropped_events = %v at start, want 3", got)
	}
	writeCount(5)
	waitFor(t, "the rescan to read the new count", func() bool { return gaugeValue(t, a, "karmord_spool_dropped_events") == 5 })
}

// What survives a full spool is applied: the newer start and every stop.
func TestSpoolCappedByHooksReplays(t *testing.T) {
	cfg, _ := testConfig(t)
	pid, start := selfProcess(t)
	base := time.Now().Add(-time.Minute)
	limits := agentapi.SpoolLimits{Files: 2, Bytes: 1 << 20}
	for i, e := range []agentapi.Event{
		{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "old", PID: pid, PIDStart: start}},
		{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "new", PID: pid, PIDStart: start}},
		{Kind: agentapi.KindStop, Container: agentapi.Container{ID: "gone"}},
	} {
		e.Time = base.Add(time.Duration(i) * time.Second)
		if _, err := agentapi.Spool(cfg.SpoolDir, &e, limits); err != nil {
			t.Fatal(err)
		}
	}
	a := runAgent(t, cfg)
	list, err := client(cfg).List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if ids(list) != "new" || gaugeValue(t, a, "karmord_spool_dropped_events") != 1 {
		t.Fatalf("table %q, dropped %v; want the newer start only and 1 dropped", ids(list), gaugeValue(t, a, "karmord_spool_dropped_events"))
	}
	if left, _ := agentapi.SpoolFiles(cfg.SpoolDir); len(left) != 0 {
		t.Fatalf("spool not drained: %v", left)
	}
}
