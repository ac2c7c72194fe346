package agent

import (
	"reflect"
	"sort"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// table is the set of live containers and the memory of recent stops. It is not safe for
// concurrent use; Agent guards it with its mutex.
//
// Events reach the table out of order: a hook that timed out against a busy agent spools its
// start, the container stops (its stop arrives live), and the spooled start is replayed later.
// The table therefore judges each event against what it knows of the same container id:
//
//   - An incarnation of a container is identified by its pid and the pid's start time. Two events
//     with the same (pid, pid start) are about the same incarnation; different pids mean different
//     incarnations (a container id can be reused after `runc delete`).
//   - A stop reported by a hook leaves a tombstone holding the latest stop time: a start at or
//     before that time is stale and never resurrects the container.
//   - A stop found by reconciliation (the process is gone) happened at an unknown time, so its
//     tombstone names the dead incarnation instead: only a start of that incarnation is stale.
//   - A stop older than the live incarnation's start, or naming another incarnation, is stale:
//     it never removes the newer container.
type table struct {
	live  map[string]*entry
	tombs map[string]tombstone
}

type entry struct {
	c agentapi.Container
	// since is the time of the event that made this incarnation live (hook time, or the
	// runtime's created time for reconciled containers).
	since time.Time
}

type tombstone struct {
	// stoppedAt is the latest stop time a hook reported; zero when only reconciliation saw stops.
	stoppedAt time.Time
	// dead holds the last few incarnations known to have stopped.
	dead []incarnation
	// touched is the latest stop event's time of any source, for pruning.
	touched time.Time
}

type incarnation struct {
	pid      int
	pidStart uint64
}

// maxDeadIncarnations bounds a tombstone: ids are rarely reused more than a few times between
// prunes, and the time rule covers the rest.
const maxDeadIncarnations = 4

// verdict is what applying an event did.
type verdict int

const (
	// ignored: the event changed nothing (stale, a duplicate stop, or an unknown id's stop).
	ignored verdict = iota
	added
	updated
	removed
)

func (v verdict) String() string {
	return [...]string{"ignored", "added", "updated", "removed"}[v]
}

func newTable() *table {
	return &table{live: map[string]*entry{}, tombs: map[string]tombstone{}}
}

// apply applies ev (whose Time is set) and returns what it did and, for a removal, the container
// that was removed.
func (t *table) apply(ev *agentapi.Event) (verdict, *agentapi.Container) {
	id := ev.Container.ID
	switch ev.Kind {
	case agentapi.KindStart:
		if tomb, ok := t.tombs[id]; ok && tomb.covers(ev) {
			return ignored, nil
		}
		cur, ok := t.live[id]
		if !ok {
			c := ev.Container
			c.Source = ev.Source
			t.live[id] = &entry{c: c, since: ev.Time}
			return added, nil
		}
		// Reconciliation only fills gaps: what a hook reported is richer than what it reads.
		if ev.Source == agentapi.SourceReconcile {
			return ignored, nil
		}
		same := sameIncarnation(cur.c.PID, cur.c.PIDStart, ev.Container.PID, ev.Container.PIDStart)
		if !same && ev.Time.Before(cur.since) {
			return ignored, nil // a late start of an earlier incarnation
		}
		if same && sameContent(&cur.c, &ev.Container) {
			// The same start again: a hook whose deadline passed after karmord read its frame
			// spooled it, and the replay brings it back. Watchers were promised no repeats.
			return ignored, nil
		}
		c := ev.Container
		c.Source = ev.Source
		since := ev.Time
		if same && cur.since.Before(since) {
			since = cur.since
		}
		t.live[id] = &entry{c: c, since: since}
		return updated, nil
	case agentapi.KindStop:
		t.remember(id, ev)
		cur, ok := t.live[id]
		if !ok {
			return ignored, nil
		}
		if ev.Container.PID != 0 && cur.c.PID != 0 && !sameIncarnation(cur.c.PID, cur.c.PIDStart, ev.Container.PID, ev.Container.PIDStart) {
			return ignored, nil // the stop of another incarnation
		}
		if ev.Time.Before(cur.since) {
			return ignored, nil // a stop that happened before this incarnation started
		}
		delete(t.live, id)
		c := cur.c
		return removed, &c
	}
	return ignored, nil
}

// remember records a stop in the id's tombstone.
func (t *table) remember(id string, ev *agentapi.Event) {
	tb := t.tombs[id]
	if ev.Time.After(tb.touched) {
		tb.touched = ev.Time
	}
	if ev.Source != agentapi.SourceReconcile && ev.Time.After(tb.stoppedAt) {
		tb.stoppedAt = ev.Time
	}
	if ev.Container.PID != 0 && ev.Container.PIDStart != 0 {
		tb.dead = append(tb.dead, incarnation{pid: ev.Container.PID, pidStart: ev.Container.PIDStart})
		if len(tb.dead) > maxDeadIncarnations {
			tb.dead = tb.dead[len(tb.dead)-maxDeadIncarnations:]
		}
	}
	t.tombs[id] = tb
}

// covers reports whether a start is made stale by the stops this tombstone remembers.
func (tb tombstone) covers(start *agentapi.Event) bool {
	if !tb.stoppedAt.IsZero() && !start.Time.After(tb.stoppedAt) {
		return true
	}
	for _, d := range tb.dead {
		if start.Container.PID == d.pid && (start.Container.PIDStart == 0 || start.Container.PIDStart == d.pidStart) {
			return true
		}
	}
	return false
}

// sameContent reports whether two descriptions of a container say the same, leaving out what
// karmord itself fills in (where it learned of it, policies, KubeArmor's state).
func sameContent(a, b *agentapi.Container) bool {
	x, y := *a, *b
	x.Source, y.Source = "", ""
	x.Policies, y.Policies = nil, nil
	x.KubeArmor, y.KubeArmor = "", ""
	return reflect.DeepEqual(x, y)
}

// sameIncarnation compares two (pid, pid start) pairs; an unknown part (zero) does not
// distinguish.
func sameIncarnation(pidA int, startA uint64, pidB int, startB uint64) bool {
	if pidA == 0 || pidB == 0 {
		return true
	}
	if pidA != pidB {
		return false
	}
	return startA == 0 || startB == 0 || startA == startB
}

// pruneTombstones forgets stops older than ttl, then the oldest ones beyond max.
func (t *table) pruneTombstones(now time.Time, ttl time.Duration, max int) {
	for id, tb := range t.tombs {
		if now.Sub(tb.touched) > ttl {
			delete(t.tombs, id)
		}
	}
	if len(t.tombs) <= max {
		return
	}
	ids := make([]string, 0, len(t.tombs))
	for id := range t.tombs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return t.tombs[ids[i]].touched.Before(t.tombs[ids[j]].touched) })
	// Prune to three quarters so that a steady stream of stops does not sort on every event.
	for _, id := range ids[:len(ids)-max*3/4] {
		delete(t.tombs, id)
	}
}

// list returns copies of the live containers sorted by id.
func (t *table) list() []agentapi.Container {
	out := make([]agentapi.Container, 0, len(t.live))
	for _, e := range t.live {
		out = append(out, e.c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// lookupResult distinguishes a missing container from an ambiguous prefix or name.
type lookupResult int

const (
	lookupFound lookupResult = iota
	lookupMissing
	lookupAmbiguous
)

// lookup finds a container by exact id, then by exact name, then by unique id prefix.
func (t *table) lookup(key string) (agentapi.Container, lookupResult, []string) {
	if key == "" {
		return agentapi.Container{}, lookupMissing, nil
	}
	if e, ok := t.live[key]; ok {
		return e.c, lookupFound, nil
	}
	var byName, byPrefix []*entry
	for id, e := range t.live {
		if e.c.Name == key || e.c.ContainerName == key {
			byName = append(byName, e)
		}
		if len(id) > len(key) && id[:len(key)] == key {
			byPrefix = append(byPrefix, e)
		}
	}
	for _, m := range [][]*entry{byName, byPrefix} {
		switch len(m) {
		case 0:
			continue
		case 1:
			return m[0].c, lookupFound, nil
		default:
			ids := make([]string, len(m))
			for i, e := range m {
				ids[i] = e.c.ID
			}
			sort.Strings(ids)
			return agentapi.Container{}, lookupAmbiguous, ids
		}
	}
	return agentapi.Container{}, lookupMissing, nil
}
