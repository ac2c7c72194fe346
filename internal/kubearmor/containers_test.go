package kubearmor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karmor/karmor/internal/kubearmor/kasocktest"
	"github.com/karmor/karmor/pkg/agentapi"
)

// startFeed runs a feed on socket until the test ends.
func startFeed(t *testing.T, socket string, edit func(*ContainerFeedOptions)) (*ContainerFeed, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := ContainerFeedOptions{
		Socket: socket, WatchInterval: 20 * time.Millisecond, AnswerTimeout: 2 * time.Second,
		MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
	}
	if edit != nil {
		edit(&opts)
	}
	f := NewContainerFeed(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f, reg
}

func ctr(id, name string, pid int) agentapi.Container {
	return agentapi.Container{ID: id, Name: name, PID: pid, Namespaces: map[string]uint64{"pid": uint64(1000 + pid), "mnt": uint64(2000 + pid)}}
}

func hasExactly(k *kasocktest.Listener, ids ...string) func() bool {
	return func() bool {
		got := slices.Sorted(maps.Keys(k.Containers()))
		want := slices.Clone(ids)
		slices.Sort(want)
		return slices.Equal(got, want)
	}
}

func TestFeedOpensReadyGateWithNoContainers(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	f, reg := startFeed(t, sock, nil)
	eventually(t, "ready gate open", k.Ready.Load)
	msgs := k.Messages()
	if len(msgs) != 1 || !msgs[0].Detached || msgs[0].Container.ContainerID != "" {
		t.Fatalf("with no containers, one empty detached message opens the gate; got %+v", msgs)
	}
	// A container started afterwards is accepted at once (no "err" answers: the gate is open).
	f.Started(ctr("c1", "web", 10))
	eventually(t, "c1 sent", hasExactly(k, "c1"))
	if n := k.Answered("err"); n != 0 {
		t.Fatalf("%d err answers", n)
	}
	eventually(t, "state yes", func() bool { return f.State("c1") == "yes" })
	if got := testutil.ToFloat64(f.metrics.connected); got != 1 {
		t.Fatalf("connected metric %v", got)
	}
	if n, err := testutil.GatherAndCount(reg, "karmor_kubearmor_resyncs_total", "karmor_kubearmor_queue_length"); err != nil || n != 2 {
		t.Fatalf("metrics registered: %d, %v", n, err)
	}
}

func TestFeedSendsLiveSetWhenKubeArmorAppears(t *testing.T) {
	sock := shortSocket(t)
	f, _ := startFeed(t, sock, nil)
	// KubeArmor is not there: the feed records, sends nothing, and says so.
	f.Started(ctr("a", "alpha", 1))
	f.Started(ctr("b", "beta", 2))
	f.Started(ctr("gone", "short-lived", 3))
	f.Stopped("gone")
	time.Sleep(50 * time.Millisecond)
	if s := f.State("a"); s != "away" {
		t.Fatalf("state while KubeArmor is away: %q", s)
	}

	k := kasocktest.Start(t, sock)
	eventually(t, "live set sent", hasExactly(k, "a", "b"))
	eventually(t, "ready", k.Ready.Load)
	for _, m := range k.Messages() {
		if !m.Detached {
			t.Fatalf("resync messages must be detached: %+v", m)
		}
		if m.Container.ContainerID == "gone" {
			t.Fatal("a container that started and stopped while KubeArmor was away was sent")
		}
	}
	if got := k.Containers()["a"]; got.Labels != "kubearmor.io/container.name=alpha,namespaceName=container_namespace" || got.PidNS != 1001 || got.MntNS != 2001 || got.Pid != 1 {
		t.Fatalf("container a as KubeArmor has it: %+v", got)
	}
	// Then starts and stops flow live, in order.
	f.Stopped("a")
	f.Started(ctr("c", "gamma", 4))
	eventually(t, "live changes", hasExactly(k, "b", "c"))
	if s := f.State("a"); s != "pending" {
		t.Fatalf("a stopped container is not KubeArmor's: state %q", s)
	}
}

func TestFeedResyncsWhenKubeArmorRestarts(t *testing.T) {
	sock := shortSocket(t)
	k1 := kasocktest.Start(t, sock)
	f, _ := startFeed(t, sock, nil)
	f.Started(ctr("a", "alpha", 1))
	f.Started(ctr("b", "beta", 2))
	eventually(t, "first KubeArmor has both", hasExactly(k1, "a", "b"))

	// KubeArmor restarts: it removes its socket and listens on a new one, knowing nothing. The
	// feed notices with nothing to send and tells the new one everything.
	k1.Close()
	os.Remove(sock)
	k2 := kasocktest.Start(t, sock)
	eventually(t, "new KubeArmor has both", hasExactly(k2, "a", "b"))
	eventually(t, "new KubeArmor ready", k2.Ready.Load)
	eventually(t, "state yes", func() bool { return f.State("a") == "yes" })
	if got := testutil.ToFloat64(f.metrics.resyncs); got != 2 {
		t.Fatalf("resyncs %v, want 2", got)
	}

	// Down for a while: changes meanwhile are not queued; the live set goes to the next one.
	k2.Close()
	os.Remove(sock)
	eventually(t, "away", func() bool { return f.State("a") == "away" })
	f.Stopped("a")
	f.Started(ctr("c", "gamma", 3))
	if q := queueLen(f); q != 0 {
		t.Fatalf("%d changes queued while KubeArmor is away", q)
	}
	k3 := kasocktest.Start(t, sock)
	eventually(t, "third KubeArmor has b and c", hasExactly(k3, "b", "c"))
	for _, m := range k3.Messages() {
		if m.Operation == 1 {
			t.Fatalf("a new KubeArmor needs no deletes: %+v", m)
		}
	}
}

// KubeArmor makes ka.sock world-writable right after it listens; a feed that connected in
// between must not take the chmod for a restart and send everything again (a real KubeArmor
// refuses the second copy with "container already exists").
func TestFeedIgnoresChmodOfTheSocket(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	f, _ := startFeed(t, sock, nil)
	f.Started(ctr("a", "alpha", 1))
	eventually(t, "a sent", hasExactly(k, "a"))
	eventually(t, "state yes", func() bool { return f.State("a") == "yes" })
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	// Idle, the feed checks the socket every WatchInterval (20 ms); then a new container goes
	// through the same session.
	time.Sleep(200 * time.Millisecond)
	f.Started(ctr("b", "beta", 2))
	eventually(t, "b sent", hasExactly(k, "a", "b"))
	if got := testutil.ToFloat64(f.metrics.resyncs); got != 1 {
		t.Fatalf("resyncs %v after a chmod of the socket, want 1", got)
	}
	sends := 0
	for _, m := range k.Messages() {
		if m.Container.ContainerID == "a" {
			sends++
		}
	}
	if sends != 1 {
		t.Fatalf("container a sent %d times", sends)
	}
}

func queueLen(f *ContainerFeed) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue)
}

func TestFeedRetriesErrUntilReady(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	f, _ := startFeed(t, sock, nil)
	eventually(t, "gate open", k.Ready.Load)
	// KubeArmor's gate shuts (as for a KubeArmor whose detached connection never closed): live
	// messages get "err" and are retried; after errAnswersBeforeResync of them the feed resyncs,
	// which opens the gate again.
	k.Ready.Store(false)
	f.Started(ctr("a", "alpha", 1))
	eventually(t, "a delivered after retries", hasExactly(k, "a"))
	if n := k.Answered("err"); n < errAnswersBeforeResync {
		t.Fatalf("%d err answers before the resync, want >= %d", n, errAnswersBeforeResync)
	}
	if got := testutil.ToFloat64(f.metrics.retries.WithLabelValues("err")); got < errAnswersBeforeResync {
		t.Fatalf("err retries metric %v", got)
	}
}

func TestFeedResyncToSameKubeArmorDeletesStopped(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	f, _ := startFeed(t, sock, func(o *ContainerFeedOptions) { o.QueueLimit = 3 })
	f.Started(ctr("a", "alpha", 1))
	f.Started(ctr("b", "beta", 2))
	eventually(t, "both sent", hasExactly(k, "a", "b"))
	eventually(t, "feed idle", func() bool { return queueLen(f) == 0 && f.State("b") == "yes" })

	// Hold KubeArmor's answers up by shutting the gate so that changes pile up past the queue
	// limit: the queue is dropped for a resync, which must delete what stopped meanwhile.
	k.Ready.Store(false)
	f.Stopped("a")
	for i := range 5 {
		f.Started(ctr(fmt.Sprintf("n%d", i), "new", 10+i))
	}
	eventually(t, "resync after overflow", hasExactly(k, "b", "n0", "n1", "n2", "n3", "n4"))
	var deletes []string
	for _, m := range k.Messages() {
		if m.Operation == 1 {
			deletes = append(deletes, m.Container.ContainerID)
		}
	}
	if !slices.Contains(deletes, "a") {
		t.Fatalf("stopped container a was not deleted from the same KubeArmor: deletes %q", deletes)
	}
}

func TestFeedNewIncarnationIsDeletedThenCreated(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	f, _ := startFeed(t, sock, nil)
	f.Started(ctr("a", "alpha", 1))
	eventually(t, "a sent", hasExactly(k, "a"))
	// The same id with a new process and namespaces (restarted in place): KubeArmor ignores a
	// create for an id it has, so the old namespaces would stay enforced.
	f.Started(ctr("a", "alpha", 2))
	eventually(t, "new namespaces", func() bool { return k.Containers()["a"].PidNS == 1002 })
	// A repeated report of the same incarnation is not a delete + create.
	before := len(k.Messages())
	f.Started(ctr("a", "alpha", 2))
	eventually(t, "repeat sent", func() bool { return len(k.Messages()) == before+1 })
	if last := k.Messages()[before]; last.Operation != 0 {
		t.Fatalf("a repeat report became %+v", last)
	}
}

func TestFeedSurvivesDroppedConnections(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	k.DropAfter.Store(2) // every connection dies at its second message, unanswered
	f, _ := startFeed(t, sock, nil)
	for i := range 6 {
		f.Started(ctr(fmt.Sprintf("c%d", i), "n", i+1))
	}
	time.Sleep(100 * time.Millisecond)
	k.DropAfter.Store(0)
	eventually(t, "all delivered once the connections hold", hasExactly(k, "c0", "c1", "c2", "c3", "c4", "c5"))
	if bad := k.BadMessages(); len(bad) > 0 {
		t.Fatalf("malformed messages: %q", bad)
	}
}

func TestFeedNeverSendsOversizeMessages(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	reg := prometheus.NewRegistry()
	f, _ := startFeed(t, sock, func(o *ContainerFeedOptions) { o.Registerer = reg })
	c := ctr("big", "big", 1)
	c.Labels = map[string]string{}
	for i := range 100 {
		c.Labels[fmt.Sprintf("k%02d", i)] = strings.Repeat("x", 100)
	}
	f.Started(c)
	eventually(t, "big sent", hasExactly(k, "big"))
	if bad := k.BadMessages(); len(bad) > 0 {
		t.Fatalf("KubeArmor got a message it cannot read (%d bytes)", len(bad[0]))
	}
	if got := testutil.ToFloat64(f.metrics.omitted); got == 0 || got >= 100 {
		t.Fatalf("labels omitted metric %v: some but not all must be left out", got)
	}
}

func TestFeedDescribeFillsLabels(t *testing.T) {
	sock := shortSocket(t)
	k := kasocktest.Start(t, sock)
	var mu sync.Mutex
	calls := 0
	f, _ := startFeed(t, sock, func(o *ContainerFeedOptions) {
		o.Describe = func(c *agentapi.Container) {
			mu.Lock()
			calls++
			mu.Unlock()
			c.Labels = map[string]string{"app": "web"}
		}
	})
	orig := ctr("p", "podman1", 1)
	f.Started(orig)
	eventually(t, "sent", hasExactly(k, "p"))
	if got := k.Containers()["p"].Labels; got != "kubearmor.io/container.name=podman1,namespaceName=container_namespace,app=web" {
		t.Fatalf("labels %q", got)
	}
	if orig.Labels != nil {
		t.Fatal("Describe changed the caller's container")
	}
}

// TestStartedNeverBlocks: the agent calls Started under its table lock on the hook's path; a
// KubeArmor that never answers must not hold it.
func TestStartedNeverBlocks(t *testing.T) {
	sock := shortSocket(t)
	kasocktest.Silent(t, sock) // accepts and reads, never answers
	f, _ := startFeed(t, sock, func(o *ContainerFeedOptions) { o.AnswerTimeout = time.Hour })
	done := make(chan struct{})
	go func() {
		for i := range 10000 {
			f.Started(ctr(fmt.Sprintf("c%d", i), "n", i+1))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Started blocked behind a KubeArmor that does not answer")
	}
	if q := queueLen(f); q > DefaultQueueLimit {
		t.Fatalf("queue grew to %d, past its limit", q)
	}
}
