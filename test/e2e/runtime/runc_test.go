package runtime

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestRuncStartAndStop: real `runc run` containers with karmor-hook in their config are reported
// to karmord with the pid runc reports and the namespaces /proc shows; stops remove them.
func TestRuncStartAndStop(t *testing.T) {
	r := testutil.NewRunc(t)
	k := newKarmord(t, r.Root, "--reconcile-interval", "1h")
	k.Start(t)
	events := k.watchEvents(t)
	long := hookedBundle(t, k, "sleep", "1000")
	short := hookedBundle(t, k, "sh", "-c", "true")
	prefix := fmt.Sprintf("e2e%d-", os.Getpid())

	idLong := prefix + "long"
	r.Must(t, "run", "-d", "--bundle", long, idLong)
	pid := initPID(t, r, idLong)
	list := k.waitTable(t, idLong, func(l []agentapi.Container) bool { return find(l, idLong) != nil })
	c := find(list, idLong)
	if c.PID != pid || c.Source != agentapi.SourceHook || c.PIDStart == 0 || c.Bundle != long {
		t.Fatalf("karmord's %s: pid %d (runc says %d), source %q, pid start %d, bundle %q", idLong, c.PID, pid, c.Source, c.PIDStart, c.Bundle)
	}
	for _, kind := range []string{"pid", "mnt", "net", "uts", "ipc", "cgroup"} {
		if got, want := c.Namespaces[kind], nsInode(t, pid, kind); got != want {
			t.Errorf("%s namespace: karmord says %d, /proc/%d/ns says %d", kind, got, pid, want)
		}
	}
	if c.Namespaces["pid"] == nsInode(t, os.Getpid(), "pid") {
		t.Error("karmord reports the host's pid namespace for the container")
	}

	// A short-lived container, run in the foreground: both its start and its stop arrive, and it
	// is not left in the table.
	idShort := prefix + "short"
	r.Must(t, "run", "--bundle", short, idShort)
	start := events.wait(t, agentapi.KindStart, idShort)
	stop := events.wait(t, agentapi.KindStop, idShort)
	if start.Container.PID <= 0 || start.Source != agentapi.SourceHook || stop.Source != agentapi.SourceHook || stop.Stage != "poststop" {
		t.Fatalf("short container's events: start %+v, stop %+v", start, stop)
	}
	if find(k.list(t), idShort) != nil {
		t.Fatal("the short-lived container stayed in the table")
	}

	r.Must(t, "kill", idLong, "KILL")
	r.Must(t, "delete", "--force", idLong)
	k.waitTable(t, "the killed container gone", func(l []agentapi.Container) bool { return find(l, idLong) == nil })
	if ev := events.wait(t, agentapi.KindStop, idLong); ev.Container.PID != pid {
		t.Fatalf("the stop event carries pid %d, want the stopped container's %d", ev.Container.PID, pid)
	}
}

// TestRuncWithAgentDown: containers start while karmord is not running (the hook spools their
// events and lets them start); karmord replays the spool when it starts.
func TestRuncWithAgentDown(t *testing.T) {
	r := testutil.NewRunc(t)
	k := newKarmord(t, r.Root, "--reconcile-interval", "1h")
	long := hookedBundle(t, k, "sleep", "1000")
	short := hookedBundle(t, k, "sh", "-c", "true")
	prefix := fmt.Sprintf("e2e%d-", os.Getpid())
	idLong, idShort := prefix+"down-long", prefix+"down-short"

	began := time.Now()
	r.Must(t, "run", "-d", "--bundle", long, idLong)
	r.Must(t, "run", "--bundle", short, idShort)
	t.Logf("two containers started and one finished with karmord down in %v", time.Since(began))

	ents, err := agentapi.ReadSpool(k.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	var spooled []string
	for _, e := range ents {
		if e.Err != nil {
			t.Fatalf("undecodable spool file %s: %v", e.Path, e.Err)
		}
		spooled = append(spooled, e.Event.Kind+":"+strings.TrimPrefix(e.Event.Container.ID, prefix))
	}
	if got := strings.Join(spooled, " "); got != "start:down-long start:down-short stop:down-short" {
		t.Fatalf("spooled events %q", got)
	}

	k.Start(t)
	list := k.list(t)
	c := find(list, idLong)
	if len(list) != 1 || c == nil || c.Source != agentapi.SourceSpool || c.PID != initPID(t, r, idLong) {
		t.Fatalf("after replay karmord holds %s, want only %s from the spool with runc's pid", describe(list), idLong)
	}
	if ents, _ := agentapi.ReadSpool(k.SpoolDir); len(ents) != 0 {
		t.Fatalf("%d spool files left after replay", len(ents))
	}
}

// TestAgentKilledDuringBurst: karmord is killed (SIGKILL) and restarted in the middle of 50
// container starts and stops; afterwards its table is exactly what runc says is running, with
// the same pids. Periodic reconciliation is off, so hooks, the spool and the reconciliation at
// start must get it right by themselves.
func TestAgentKilledDuringBurst(t *testing.T) {
	r := testutil.NewRunc(t)
	k := newKarmord(t, r.Root, "--reconcile-interval", "1h", "--spool-scan-interval", "200ms")
	k.Start(t)
	long := hookedBundle(t, k, "sleep", "1000")
	short := hookedBundle(t, k, "sh", "-c", "true")
	prefix := fmt.Sprintf("b%d-", os.Getpid())

	const total, workers = 50, 4
	ops := make(chan int)
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ops {
				id := fmt.Sprintf("%s%02d", prefix, i)
				var err error
				switch i % 5 {
				case 0, 1: // long-lived, kept
					_, err = r.Run("run", "-d", "--bundle", long, id)
				case 2: // short-lived, in the foreground (runc deletes it when it exits)
					_, err = r.Run("run", "--bundle", short, id)
				default: // long-lived, then killed and deleted
					if _, err = r.Run("run", "-d", "--bundle", long, id); err == nil {
						time.Sleep(time.Duration(i%7) * 10 * time.Millisecond)
						if _, err = r.Run("kill", id, "KILL"); err == nil {
							_, err = r.Run("delete", "--force", id)
						}
					}
				}
				errs <- err
			}
		}()
	}
	for i := range total {
		ops <- i
		switch i {
		case 15:
			k.Kill(t)
		case 32:
			k.Start(t)
		}
	}
	close(ops)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a container operation failed: %v", err)
		}
	}

	want := live(t, r)
	if n := len(want); n != 20 {
		t.Fatalf("runc lists %d live containers, want 20: %s", n, sortedIDs(want))
	}
	list := k.waitTable(t, "exactly runc's live containers", func(l []agentapi.Container) bool { return tableIDs(l) == sortedIDs(want) })
	for _, c := range list {
		if c.PID != want[c.ID].PID {
			t.Errorf("%s: karmord says pid %d, runc %d", c.ID, c.PID, want[c.ID].PID)
		}
	}
	if ents, _ := agentapi.ReadSpool(k.SpoolDir); len(ents) != 0 {
		t.Errorf("%d spool files left", len(ents))
	}
	var sources []string
	for _, c := range list {
		sources = append(sources, c.Source)
	}
	t.Logf("table after the burst: %d containers; sources %v", len(list), sources)
}
