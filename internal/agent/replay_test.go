package agent

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// TestReplayedStartIsNotRepeated is the hook's deadline passing after karmord read its frame:
// karmord applied the start, the hook spooled the same event anyway, and the spool replay
// brings it again. Watchers must see the start once (the stream promises no repeats), while a
// start of the same id that says something new still reaches them.
func TestReplayedStartIsNotRepeated(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.SpoolScanInterval = 20 * time.Millisecond
	a := runAgent(t, cfg)
	cl := client(cfg)
	snap, err := cl.ListSnapshot(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	w, _ := watch(t, cfg, snap.Seq)

	pid, pidStart := selfProcess(t)
	start := hookStart("replayed", pid, "web")
	start.Container.PIDStart = pidStart
	start.Container.Annotations = map[string]string{"io.kubernetes.cri.sandbox-id": "abc"}
	seq, err := cl.Report(ctxT(t), start)
	if err != nil {
		t.Fatal(err)
	}
	// The hook spools exactly what it sent.
	spool(t, cfg.SpoolDir, start)
	waitFor(t, "the spool replay", func() bool {
		left, _ := filepath.Glob(filepath.Join(cfg.SpoolDir, "*.event"))
		return len(left) == 0 && counter(t, a, "spool", "applied") == 1
	})
	// The replay changed nothing, so the ack a hook would get is the start's own number.
	again, err := cl.Report(ctxT(t), start)
	if err != nil || again != seq {
		t.Fatalf("the same start reported again: ack %d, %v; want the first start's seq %d", again, err, seq)
	}
	// A start of the same incarnation with new content is an update watchers must see.
	changed := *start
	changed.Container.Labels = map[string]string{"app": "web", "tier": "front"}
	if _, err := cl.Report(ctxT(t), &changed); err != nil {
		t.Fatal(err)
	}
	reportStarts(t, cl, []agentapi.Container{{ID: "marker"}})
	waitFor(t, "the marker start", func() bool { return w.len() >= 3 })
	time.Sleep(50 * time.Millisecond) // anything repeated would have been streamed before the marker
	if got, want := w.events(), "start:replayed:hook start:replayed:hook start:marker:hook"; got != want {
		t.Fatalf("watch saw %q, want %q (the replayed start must not be repeated)", got, want)
	}
	if n := counter(t, a, "events", "createRuntime", agentapi.KindStart, agentapi.SourceSpool, "ignored"); n != 1 {
		t.Fatalf("replayed start counted %v times as ignored, want 1", n)
	}
}
