package agentapi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spooledKinds lists the spool's events as kind:id, oldest first.
func spooledKinds(t *testing.T, dir string) string {
	t.Helper()
	ents, err := ReadSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Err != nil {
			t.Fatal(e.Err)
		}
		out = append(out, e.Event.Kind+":"+e.Event.Container.ID)
	}
	return strings.Join(out, " ")
}

// A full spool makes room by dropping its oldest start, never a stop; with only stops left the
// new event is dropped. Every drop is counted (issue 12 item 7).
func TestSpoolCapDropsOldestStartNeverStop(t *testing.T) {
	dir := t.TempDir()
	base := time.Unix(1700000000, 0)
	limits := SpoolLimits{Files: 4, Bytes: 1 << 20}
	n := 0
	put := func(kind, id string) (Spooled, error) {
		n++
		return Spool(dir, &Event{Kind: kind, Time: base.Add(time.Duration(n) * time.Second), Container: Container{ID: id, PID: n}}, limits)
	}
	for _, e := range [][2]string{{KindStop, "s1"}, {KindStart, "a2"}, {KindStart, "a3"}, {KindStop, "s4"}} {
		if s, err := put(e[0], e[1]); err != nil || len(s.Evicted) != 0 {
			t.Fatalf("below the cap: %+v %v", s, err)
		}
	}
	steps := []struct {
		kind, id, want string
		dropped        uint64
		refused        bool
	}{
		{KindStart, "a5", "stop:s1 start:a3 stop:s4 start:a5", 1, false},
		{KindStop, "s6", "stop:s1 stop:s4 start:a5 stop:s6", 2, false},
		{KindStop, "s7", "stop:s1 stop:s4 stop:s6 stop:s7", 3, false},
		{KindStart, "a8", "stop:s1 stop:s4 stop:s6 stop:s7", 4, true}, // only stops left: the start is dropped
		{KindStop, "s9", "stop:s1 stop:s4 stop:s6 stop:s7", 5, true},  // and no stop is removed for another
	}
	for _, st := range steps {
		s, err := put(st.kind, st.id)
		if st.refused != errors.Is(err, ErrSpoolFull) || st.refused != (s.Path == "") {
			t.Errorf("%s %s: %+v %v", st.kind, st.id, s, err)
		}
		if got := spooledKinds(t, dir); got != st.want {
			t.Errorf("after %s %s: spool %q, want %q", st.kind, st.id, got, st.want)
		}
		if got, err := SpoolDropped(dir); err != nil || got != st.dropped {
			t.Errorf("after %s %s: dropped %d (%v), want %d", st.kind, st.id, got, err, st.dropped)
		}
	}

	// The byte cap works the same way.
	dir = t.TempDir()
	one, err := Spool(dir, &Event{Kind: KindStart, Time: base, Container: Container{ID: "x0"}}, DefaultSpoolLimits)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(one.Path)
	limits = SpoolLimits{Files: 100, Bytes: 3*fi.Size() + fi.Size()/2}
	for i := 1; i <= 5; i++ {
		if _, err := Spool(dir, &Event{Kind: KindStart, Time: base.Add(time.Duration(i) * time.Second), Container: Container{ID: fmt.Sprintf("x%d", i)}}, limits); err != nil {
			t.Fatal(err)
		}
	}
	if got := spooledKinds(t, dir); got != "start:x3 start:x4 start:x5" {
		t.Errorf("byte cap: spool %q", got)
	}
	if got, _ := SpoolDropped(dir); got != 3 {
		t.Errorf("byte cap: dropped %d, want 3", got)
	}
}

// SpoolEvent, which karmor-hook uses, holds the default cap: 4096 files. A spool filled by a node
// whose karmord is away does not grow past it (issue 12 item 7).
func TestSpoolEventDefaultCap(t *testing.T) {
	dir := t.TempDir()
	const files = 4096
	body := []byte(`{"v":1,"type":"event","event":{"kind":"start","time":"2026-01-01T00:00:00Z","container":{"id":"x"}}}`)
	for i := range files {
		name := fmt.Sprintf("%020d-start-c%d-r.event", 1000+i, i)
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := SpoolEvent(dir, &Event{Kind: KindStop, Time: time.Now(), Container: Container{ID: "last"}}); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.event"))
	if len(left) != files {
		t.Fatalf("%d spool files, want the cap %d", len(left), files)
	}
	if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%020d-start-c0-r.event", 1000))); !os.IsNotExist(err) {
		t.Errorf("the oldest start is still there (%v)", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "dropped"))
	if err != nil || strings.TrimSpace(string(raw)) != fmt.Sprintf("%020d", 1) {
		t.Errorf("dropped file %q (%v), want a count of 1", raw, err)
	}
}

func TestSpoolDroppedMalformed(t *testing.T) {
	dir := t.TempDir()
	if n, err := SpoolDropped(dir); n != 0 || err != nil {
		t.Fatalf("no count yet: %d %v", n, err)
	}
	if err := os.WriteFile(filepath.Join(dir, SpoolDroppedFile), []byte("many\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := SpoolDropped(dir); err == nil {
		t.Error("malformed count accepted")
	}
	// A damaged count restarts instead of stopping the counting.
	if err := addDropped(dir, 2); err != nil {
		t.Fatal(err)
	}
	if n, err := SpoolDropped(dir); n != 2 || err != nil {
		t.Errorf("after a restart: %d %v", n, err)
	}
}

func FuzzParseSpoolName(f *testing.F) {
	f.Add("00000001700000000000-start-abc-123.event")
	f.Add("00000001700000000000-stop-131-abc-123.event")
	f.Add("00000000000000000000-bad.event")
	f.Add(".tmp-123")
	f.Add("-0000000000000000001-stop-x-y.event")
	f.Fuzz(func(t *testing.T, name string) {
		n, ok := ParseSpoolName(name)
		if !ok {
			return
		}
		if n.Time < 0 || n.Kind == "" || strings.Contains(n.Kind, "-") || !strings.HasSuffix(name, spoolSuffix) {
			t.Fatalf("%q parsed to %+v", name, n)
		}
		// What Spool writes for that time, kind and size parses back to them.
		size := max(n.Size, 0)
		again := fmt.Sprintf("%020d-%s-%d-id-r%s", n.Time, n.Kind, size, spoolSuffix)
		if m, ok := ParseSpoolName(again); !ok || m.Time != n.Time || m.Kind != n.Kind || m.Size != size {
			t.Fatalf("%q: %+v, then %q: %+v %v", name, n, again, m, ok)
		}
	})
}

func FuzzDecodeSpoolRecord(f *testing.F) {
	f.Add([]byte(`{"v":1,"type":"event","event":{"kind":"start","time":"2026-01-01T00:00:00Z","container":{"id":"x","pid":3}}}`))
	f.Add([]byte(`{"v":1,"type":"list"}`))
	f.Add([]byte(`{"v":1,"type":"event"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := DecodeSpoolRecord(body)
		if err != nil {
			return
		}
		if ev == nil || ev.Check() != nil {
			t.Fatalf("accepted an event karmord cannot apply: %+v", ev)
		}
	})
}

// FuzzSpoolCap spools a sequence of starts and stops (one per input byte, low bit: stop) into
// a spool of a few files, and checks the cap's promises after each: never more files than the
// cap, no stop ever removed, and every event missing from the spool counted as dropped.
func FuzzSpoolCap(f *testing.F) {
	f.Add(byte(3), []byte{0, 1, 0, 0, 1, 1, 0, 1, 1, 0})
	f.Add(byte(0), []byte{1, 1, 0})
	f.Fuzz(func(t *testing.T, capFiles byte, kinds []byte) {
		if len(kinds) > 32 {
			kinds = kinds[:32]
		}
		dir := t.TempDir()
		limits := SpoolLimits{Files: 1 + int(capFiles%5), Bytes: 1 << 20}
		base := time.Unix(1700000000, 0)
		var stops []string
		for i, k := range kinds {
			kind := KindStart
			if k&1 == 1 {
				kind = KindStop
			}
			s, err := Spool(dir, &Event{Kind: kind, Time: base.Add(time.Duration(i) * time.Second), Container: Container{ID: fmt.Sprintf("c%d", i)}}, limits)
			if err != nil && !errors.Is(err, ErrSpoolFull) {
				t.Fatal(err)
			}
			if kind == KindStop && s.Path != "" {
				stops = append(stops, s.Path)
			}
			paths, err := SpoolFiles(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) > limits.Files {
				t.Fatalf("after %d events: %d files, cap %d", i+1, len(paths), limits.Files)
			}
			for _, p := range stops {
				if _, err := os.Stat(p); err != nil {
					t.Fatalf("a spooled stop was removed: %v", err)
				}
			}
			if n, err := SpoolDropped(dir); err != nil || n != uint64(i+1-len(paths)) {
				t.Fatalf("after %d events with %d files: dropped %d (%v)", i+1, len(paths), n, err)
			}
		}
	})
}

// BenchmarkSpool is one hook spooling an event into an empty spool and into one at its default
// cap of 4096 files (the directory listing, the eviction of the oldest start and the write).
func BenchmarkSpool(b *testing.B) {
	base := time.Unix(1700000000, 0)
	for _, fill := range []int{0, DefaultSpoolLimits.Files} {
		b.Run(fmt.Sprintf("files=%d", fill), func(b *testing.B) {
			dir := b.TempDir()
			for i := range fill {
				if _, err := SpoolEvent(dir, &Event{Kind: KindStart, Time: base.Add(time.Duration(i)), Container: Container{ID: "fill"}}); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; b.Loop(); i++ {
				p, err := SpoolEvent(dir, &Event{Kind: KindStart, Time: base.Add(time.Hour + time.Duration(i)), Container: Container{ID: "new"}})
				if err != nil {
					b.Fatal(err)
				}
				if fill == 0 {
					os.Remove(p) // stay empty
				}
			}
		})
	}
}
