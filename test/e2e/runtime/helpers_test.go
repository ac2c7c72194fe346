package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// karmord is a real karmord (see testutil.Karmord) with the table checks of these tests.
type karmord struct {
	*testutil.Karmord
}

// newKarmord prepares a karmord reconciling with runtimeRoot; it is not started.
func newKarmord(t *testing.T, runtimeRoot string, extra ...string) *karmord {
	t.Helper()
	return &karmord{testutil.NewKarmord(t, testutil.KarmordOptions{RuntimeRoots: []string{runtimeRoot}, Args: extra})}
}

func (k *karmord) list(t *testing.T) []agentapi.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := k.Client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitTable polls karmord's table until cond holds, and returns it.
func (k *karmord) waitTable(t *testing.T, what string, cond func([]agentapi.Container) bool) []agentapi.Container {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list := k.list(t)
		if cond(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmord's table never showed %s; it holds: %s", what, describe(list))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func describe(list []agentapi.Container) string {
	var out []string
	for _, c := range list {
		out = append(out, fmt.Sprintf("%s(pid %d, %s)", c.ID, c.PID, c.Source))
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func find(list []agentapi.Container, id string) *agentapi.Container {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// eventLog collects a karmord's event stream.
type eventLog struct {
	mu     sync.Mutex
	events []agentapi.Event
}

// watchEvents streams karmord's events into a log until the test ends.
func (k *karmord) watchEvents(t *testing.T) *eventLog {
	t.Helper()
	l := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = k.Client.Watch(ctx, 0, func(env *agentapi.Envelope) error {
			l.mu.Lock()
			l.events = append(l.events, *env.Event)
			l.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// wait returns the first event of kind for id, waiting for it.
func (l *eventLog) wait(t *testing.T, kind, id string) agentapi.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.mu.Lock()
		for _, ev := range l.events {
			if ev.Kind == kind && ev.Container.ID == id {
				l.mu.Unlock()
				return ev
			}
		}
		n := len(l.events)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s among karmord's %d events", kind, id, n)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// live returns the ids of the containers runc says are running (or created: their init runs).
func live(t *testing.T, r *testutil.Runc) map[string]testutil.RuncEntry {
	t.Helper()
	m := r.List(t)
	for id, e := range m {
		if e.Status != "running" && e.Status != "created" {
			delete(m, id)
		}
	}
	return m
}

// initPID is the pid of container id's init, as `runc state` says.
func initPID(t *testing.T, r *testutil.Runc, id string) int {
	t.Helper()
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(r.Must(t, "state", id)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

// hookedBundle makes a busybox bundle running args whose config.json runs karmor-hook reporting
// to k (see testutil.HookedBundle).
func hookedBundle(t *testing.T, k *karmord, args ...string) string {
	t.Helper()
	return testutil.HookedBundle(t, k.Karmord, args, nil)
}

// nsInode is the inode of /proc/<pid>/ns/<kind>.
func nsInode(t *testing.T, pid int, kind string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func sortedIDs[V any](m map[string]V) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func tableIDs(list []agentapi.Container) string {
	m := map[string]bool{}
	for _, c := range list {
		m[c.ID] = true
	}
	return sortedIDs(m)
}
