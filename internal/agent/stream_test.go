package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/agentapi"
)

func publishN(s *stream, n int) {
	for range n {
		s.publish(&agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{Kind: agentapi.KindStart}})
	}
}

func seqs(envs []*agentapi.Envelope) []uint64 {
	out := make([]uint64, len(envs))
	for i, e := range envs {
		out[i] = e.Seq
	}
	return out
}

func TestStreamResume(t *testing.T) {
	s := newStream(4, 1<<20, 8, 100) // numbers continue above 100, as after a restart
	publishN(s, 6)                   // 101..106; the ring keeps 103..106
	if s.head != 106 || s.oldest() != 103 {
		t.Fatalf("head %d oldest %d, want 106 and 103", s.head, s.oldest())
	}
	cases := []struct {
		from uint64
		want []uint64
		err  string
	}{
		{0, []uint64{103, 104, 105, 106}, ""},
		{102, []uint64{103, 104, 105, 106}, ""},
		{104, []uint64{105, 106}, ""},
		{106, nil, ""},
		{101, nil, "no longer retained (the oldest is 103)"},
		{50, nil, "no longer retained"},
		{107, nil, "ahead of karmord's latest event 106"},
	}
	for _, tc := range cases {
		backlog, w, err := s.subscribe(tc.from)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("from %d: error %v, want %q", tc.from, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("from %d: %v", tc.from, err)
		}
		if got := seqs(backlog); !equalU64(got, tc.want) {
			t.Errorf("from %d: backlog %v, want %v", tc.from, got, tc.want)
		}
		s.drop(w, "test done")
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestStreamLiveEventsFollowBacklog(t *testing.T) {
	s := newStream(16, 1<<20, 8, 0)
	publishN(s, 3)
	backlog, w, err := s.subscribe(1)
	if err != nil {
		t.Fatal(err)
	}
	publishN(s, 2)
	got := seqs(backlog)
	for range 2 {
		got = append(got, w.took(<-w.ch).Seq)
	}
	if !equalU64(got, []uint64{2, 3, 4, 5}) {
		t.Fatalf("backlog then live: %v, want 2..5 without gap or duplicate", got)
	}
}

// TestSlowWatcherIsDroppedNotWaitedFor checks that publishing never blocks on a watcher that does
// not read: the watcher is dropped with a reason once its buffer is full.
func TestSlowWatcherIsDroppedNotWaitedFor(t *testing.T) {
	s := newStream(16, 1<<20, 4, 0)
	_, slow, _ := s.subscribe(0)
	_, fast, _ := s.subscribe(0)
	var fastGot []uint64
	for range 10 {
		if dropped := s.publish(&agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{}}); dropped > 1 {
			t.Fatalf("dropped %d watchers at once", dropped)
		}
		select {
		case env := <-fast.ch:
			fastGot = append(fastGot, fast.took(env).Seq)
		default:
			t.Fatal("the reading watcher missed an event")
		}
	}
	if len(fastGot) != 10 {
		t.Fatalf("reading watcher got %v", fastGot)
	}
	var buffered int
	for range slow.ch {
		buffered++
	}
	if buffered != 4 || !strings.Contains(slow.reason, "fell behind") || !strings.Contains(slow.reason, "seq 5 was not sent") {
		t.Fatalf("slow watcher: %d buffered, reason %q", buffered, slow.reason)
	}
	if len(s.watchers) != 1 {
		t.Fatalf("%d watchers left, want the reading one", len(s.watchers))
	}
}

func TestSeqStorePersistsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	st, base, err := openSeqStore(dir)
	if err != nil || base != 0 {
		t.Fatalf("fresh store: base %d, %v", base, err)
	}
	if err := st.ensure(seqBlock + 5); err != nil {
		t.Fatal(err)
	}
	_, base2, err := openSeqStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if base2 < seqBlock+5 {
		t.Fatalf("after a restart numbering restarts at %d, below the %d already used", base2, seqBlock+5)
	}
	// Every restart moves the base up, even when no event was numbered.
	_, base3, _ := openSeqStore(dir)
	if base3 <= base2 {
		t.Fatalf("base did not increase across restarts: %d then %d", base2, base3)
	}
}

func TestSeqStoreDamagedFile(t *testing.T) {
	dir := t.TempDir()
	for _, body := range []string{"not a number", strings.Repeat("9", 100), "-5"} {
		if err := os.WriteFile(filepath.Join(dir, seqFileName), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		st, base, err := openSeqStore(dir)
		if st == nil || err == nil {
			t.Fatalf("%q: store %v, err %v; want a usable store and a warning", body, st, err)
		}
		if base < 1_000_000_000_000_000 {
			t.Fatalf("%q: base %d is not above any plausible earlier number", body, base)
		}
	}
}

func TestSeqStoreUnwritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := openSeqStore(dir); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("state dir is a file: %v, want an error naming --state-dir", err)
	}
}
