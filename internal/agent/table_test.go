package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func startEv(id string, pid int, pidStart uint64, sec int, source string) *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStart, Time: at(sec), Source: source,
		Container: agentapi.Container{ID: id, PID: pid, PIDStart: pidStart, Name: fmt.Sprintf("%s-%d", id, pid)}}
}

func stopEv(id string, pid int, pidStart uint64, sec int, source string) *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStop, Time: at(sec), Source: source,
		Container: agentapi.Container{ID: id, PID: pid, PIDStart: pidStart}}
}

func withImage(ev *agentapi.Event, image string) *agentapi.Event {
	ev.Container.Image = image
	return ev
}

// TestTableOrdering plays sequences of events, in the orders they can really arrive, and checks
// the verdicts and the final table.
func TestTableOrdering(t *testing.T) {
	const hook, spool, rec = agentapi.SourceHook, agentapi.SourceSpool, agentapi.SourceReconcile
	type step struct {
		ev   *agentapi.Event
		want verdict
	}
	cases := []struct {
		name  string
		steps []step
		live  string // "id:pid" pairs, sorted by id
	}{
		{"start then stop", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{stopEv("a", 0, 0, 5, hook), removed},
		}, ""},
		{"stop of unknown id is fine", []step{
			{stopEv("x", 0, 0, 5, hook), ignored},
		}, ""},
		{"spooled start replayed after the live stop does not resurrect", []step{
			{stopEv("a", 0, 0, 5, hook), ignored},
			{startEv("a", 10, 100, 1, spool), ignored},
		}, ""},
		{"id reused after a stop: the new incarnation starts", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{stopEv("a", 0, 0, 5, hook), removed},
			{startEv("a", 20, 200, 6, hook), added},
			{startEv("a", 10, 100, 1, spool), ignored}, // the first incarnation's start, replayed late
		}, "a:20"},
		{"stale stop of an earlier incarnation does not remove the new one", []step{
			{startEv("a", 20, 200, 6, hook), added},
			{stopEv("a", 0, 0, 5, spool), ignored},
		}, "a:20"},
		{"stop naming another incarnation does not remove", []step{
			{startEv("a", 20, 200, 6, hook), added},
			{stopEv("a", 10, 100, 9, rec), ignored},
		}, "a:20"},
		{"a replayed start of the same incarnation and content changes nothing", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{startEv("a", 10, 100, 1, spool), ignored},
			{startEv("a", 10, 100, 2, hook), ignored},
		}, "a:10"},
		{"a start of the same incarnation with new content updates", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{withImage(startEv("a", 10, 100, 2, spool), "nginx:2"), updated},
		}, "a:10"},
		{"late start of an earlier incarnation does not replace the live one", []step{
			{startEv("a", 20, 200, 6, hook), added},
			{startEv("a", 10, 100, 1, spool), ignored},
		}, "a:20"},
		{"a newer incarnation replaces one whose stop was lost", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{startEv("a", 20, 200, 6, hook), updated},
		}, "a:20"},
		{"reconciliation never overrides what a hook reported", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{startEv("a", 10, 100, 0, rec), ignored},
		}, "a:10"},
		{"reconciliation removal tombstones only the dead incarnation", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{stopEv("a", 10, 100, 50, rec), removed},
			// The next incarnation started before reconciliation noticed the first was gone;
			// its start arrives from the spool afterwards and must still count.
			{startEv("a", 20, 200, 30, spool), added},
			{startEv("a", 10, 100, 1, spool), ignored},
		}, "a:20"},
		{"a start older than a hook stop with no pid is stale", []step{
			{startEv("a", 10, 100, 1, hook), added},
			{stopEv("a", 0, 0, 5, hook), removed},
			{startEv("a", 11, 110, 5, spool), ignored}, // same second as the stop: not after it
		}, ""},
		{"several containers", []step{
			{startEv("b", 2, 20, 1, hook), added},
			{startEv("a", 1, 10, 1, rec), added},
			{startEv("c", 3, 30, 2, spool), added},
			{stopEv("b", 0, 0, 3, hook), removed},
		}, "a:1 c:3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable()
			for i, s := range tc.steps {
				if got, _ := tb.apply(s.ev); got != s.want {
					t.Fatalf("step %d (%s %s pid %d at %v from %s): got %s, want %s", i, s.ev.Kind, s.ev.Container.ID,
						s.ev.Container.PID, s.ev.Time.Sub(t0), s.ev.Source, got, s.want)
				}
			}
			var live []string
			for _, c := range tb.list() {
				live = append(live, fmt.Sprintf("%s:%d", c.ID, c.PID))
			}
			if got := strings.Join(live, " "); got != tc.live {
				t.Fatalf("live table %q, want %q", got, tc.live)
			}
		})
	}
}

func TestTableRemovedContainerIsReturned(t *testing.T) {
	tb := newTable()
	tb.apply(startEv("a", 10, 100, 1, agentapi.SourceHook))
	v, gone := tb.apply(stopEv("a", 0, 0, 2, agentapi.SourceHook))
	if v != removed || gone == nil || gone.Name != "a-10" || gone.Source != agentapi.SourceHook {
		t.Fatalf("removal returned %s %+v, want the removed container", v, gone)
	}
}

func TestTableSourceIsKept(t *testing.T) {
	tb := newTable()
	tb.apply(startEv("a", 10, 100, 1, agentapi.SourceSpool))
	if got := tb.list()[0].Source; got != agentapi.SourceSpool {
		t.Fatalf("source %q, want spool", got)
	}
}

func TestPruneTombstones(t *testing.T) {
	tb := newTable()
	for i := range 100 {
		tb.apply(stopEv(fmt.Sprintf("c%03d", i), 0, 0, i, agentapi.SourceHook))
	}
	tb.pruneTombstones(at(100), time.Hour, 1000)
	if len(tb.tombs) != 100 {
		t.Fatalf("young tombstones pruned: %d left", len(tb.tombs))
	}
	tb.pruneTombstones(at(100), 50*time.Second, 1000)
	if len(tb.tombs) != 50 { // stops at 50..99 are within 50 s of 100
		t.Fatalf("after TTL prune %d tombstones, want 50", len(tb.tombs))
	}
	tb.pruneTombstones(at(100), time.Hour, 20)
	if len(tb.tombs) != 15 {
		t.Fatalf("after size prune %d tombstones, want 15 (three quarters of the cap)", len(tb.tombs))
	}
	if _, ok := tb.tombs["c099"]; !ok {
		t.Fatal("size prune dropped the newest tombstone")
	}
	if _, ok := tb.tombs["c050"]; ok {
		t.Fatal("size prune kept an old tombstone")
	}
	// A pruned tombstone no longer guards: the agent relies on liveness checks beyond the TTL.
	if v, _ := tb.apply(startEv("c000", 1, 1, 0, agentapi.SourceSpool)); v != added {
		t.Fatalf("start after its tombstone was pruned: %s", v)
	}
}

func TestTombstoneKeepsFewIncarnations(t *testing.T) {
	tb := newTable()
	for i := 1; i <= 10; i++ {
		tb.apply(stopEv("a", i, uint64(i*10), 100, agentapi.SourceReconcile))
	}
	if n := len(tb.tombs["a"].dead); n != maxDeadIncarnations {
		t.Fatalf("tombstone holds %d incarnations, want %d", n, maxDeadIncarnations)
	}
	if v, _ := tb.apply(startEv("a", 10, 100, 1, agentapi.SourceSpool)); v != ignored {
		t.Fatalf("the latest dead incarnation came back: %s", v)
	}
}

func TestLookup(t *testing.T) {
	tb := newTable()
	for _, c := range []agentapi.Container{
		{ID: "abc123", Name: "web1"},
		{ID: "abd456", Name: "web2"},
		{ID: "fff000", Name: "db", ContainerName: "postgres"},
		{ID: "web1xyz"}, // an id that starts with another container's name
	} {
		tb.apply(&agentapi.Event{Kind: agentapi.KindStart, Time: at(1), Container: c})
	}
	cases := []struct {
		key  string
		want string
		res  lookupResult
	}{
		{"abc123", "abc123", lookupFound},
		{"abc", "abc123", lookupFound},
		{"web2", "abd456", lookupFound},
		{"web1", "abc123", lookupFound}, // a name wins over an id prefix
		{"postgres", "fff000", lookupFound},
		{"ab", "", lookupAmbiguous},
		{"zzz", "", lookupMissing},
		{"", "", lookupMissing},
	}
	for _, tc := range cases {
		c, res, cands := tb.lookup(tc.key)
		if res != tc.res || c.ID != tc.want {
			t.Errorf("lookup(%q) = %q, %v; want %q, %v", tc.key, c.ID, res, tc.want, tc.res)
		}
		if res == lookupAmbiguous && strings.Join(cands, ",") != "abc123,abd456" {
			t.Errorf("lookup(%q) candidates %v", tc.key, cands)
		}
	}
}
