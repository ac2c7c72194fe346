package agent

import (
	"fmt"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

func annotationBytes(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func TestSlimContainer(t *testing.T) {
	small := agentapi.Container{ID: "s", Annotations: map[string]string{"a": "b", "io.container.manager": "libpod"}}
	if got := slimContainer(small); !maps.Equal(got.Annotations, small.Annotations) || got.AnnotationsOmitted != 0 {
		t.Fatalf("small annotations changed: %+v", got)
	}

	ann := map[string]string{"io.container.manager": "libpod", "z-big": strings.Repeat("x", 2<<10)}
	for i := range 300 {
		ann[fmt.Sprintf("example.com/tiny-%03d", i)] = "v"
	}
	orig := maps.Clone(ann)
	got := slimContainer(agentapi.Container{ID: "b", Annotations: ann})
	if !maps.Equal(ann, orig) {
		t.Fatal("slimContainer modified the table's map")
	}
	if got.Annotations["io.container.manager"] != "libpod" {
		t.Fatal("karmord's own annotation was cut though tiny ones crowd the budget")
	}
	if _, ok := got.Annotations["z-big"]; ok {
		t.Fatal("a 2 KiB value was kept")
	}
	if n := annotationBytes(got.Annotations); n > agentapi.SlimAnnotationBytes || n < agentapi.SlimAnnotationBytes-64 {
		t.Fatalf("kept %d bytes of annotations, want close to %d", n, agentapi.SlimAnnotationBytes)
	}
	if len(got.Annotations)+got.AnnotationsOmitted != len(ann) {
		t.Fatalf("%d kept + %d omitted != %d", len(got.Annotations), got.AnnotationsOmitted, len(ann))
	}
	// Tiny ones are taken in key order: the kept ones are a prefix of the sorted keys.
	if _, ok := got.Annotations["example.com/tiny-000"]; !ok {
		t.Fatal("the first tiny annotation in key order was cut")
	}
	if _, ok := got.Annotations["example.com/tiny-299"]; ok {
		t.Fatal("the last tiny annotation in key order was kept though the budget is short")
	}

	only := slimContainer(agentapi.Container{ID: "o", Annotations: map[string]string{"huge": strings.Repeat("x", 5<<10)}})
	if only.Annotations != nil || only.AnnotationsOmitted != 1 {
		t.Fatalf("one huge annotation: %+v omitted %d", only.Annotations, only.AnnotationsOmitted)
	}
}

// sizedEvent is a start event whose envelopeSize is about size bytes.
func sizedEvent(size int) *agentapi.Envelope {
	pad := size - envelopeOverhead - eventOverhead - mapEntryOverhead - len("pad") - len(agentapi.KindStart)
	return &agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{Kind: agentapi.KindStart,
		Container: agentapi.Container{Labels: map[string]string{"pad": strings.Repeat("x", pad)}}}}
}

func TestStreamRingBoundedByBytes(t *testing.T) {
	s := newStream(100, 10000, 8, 0)
	for range 5 {
		s.publish(sizedEvent(3000))
	}
	if s.count != 3 || s.bytes != 9000 || s.oldest() != 3 {
		t.Fatalf("after five 3000-byte events in a 10000-byte ring: %d retained, %d bytes, oldest %d; want 3, 9000, 3", s.count, s.bytes, s.oldest())
	}
	if _, _, err := s.subscribe(1); err == nil || !strings.Contains(err.Error(), "no longer retained (the oldest is 3)") {
		t.Fatalf("resume from an evicted event: %v", err)
	}
	backlog, w, err := s.subscribe(2)
	if err != nil || !equalU64(seqs(backlog), []uint64{3, 4, 5}) {
		t.Fatalf("resume from 2: %v, %v", seqs(backlog), err)
	}
	s.drop(w, "done")

	// An event larger than the whole budget empties the ring and is not retained: only a watcher
	// that already has it (from its seq) may resume.
	s.publish(sizedEvent(20000))
	if s.count != 0 || s.bytes != 0 || s.oldest() != 7 {
		t.Fatalf("after an oversized event: %d retained, %d bytes, oldest %d", s.count, s.bytes, s.oldest())
	}
	if _, _, err := s.subscribe(5); err == nil || !strings.Contains(err.Error(), "no longer retained") {
		t.Fatalf("resume from before the oversized event: %v", err)
	}
	if backlog, w, err := s.subscribe(6); err != nil || len(backlog) != 0 {
		t.Fatalf("resume from the oversized event: %v, %v", seqs(backlog), err)
	} else {
		s.drop(w, "done")
	}
	s.publish(sizedEvent(3000))
	if s.count != 1 || s.oldest() != 7 {
		t.Fatalf("after one more event: %d retained, oldest %d", s.count, s.oldest())
	}
}

// TestWatcherDroppedWhenBehindByBytes: a watcher with room for many events is still dropped once
// the events waiting for it exceed the byte budget, and one that reads is not.
func TestWatcherDroppedWhenBehindByBytes(t *testing.T) {
	s := newStream(100, 10000, 1000, 0)
	_, slow, _ := s.subscribe(0)
	_, reading, _ := s.subscribe(0)
	for i := range 10 {
		s.publish(sizedEvent(3000))
		if got := reading.took(<-reading.ch); got.Seq != uint64(i+1) {
			t.Fatalf("reading watcher got seq %d, want %d", got.Seq, i+1)
		}
	}
	buffered := 0
	for range slow.ch {
		buffered++
	}
	if buffered != 3 || !strings.Contains(slow.reason, "more than 10000 bytes") || !strings.Contains(slow.reason, "seq 4 was not sent") {
		t.Fatalf("slow watcher: %d buffered, reason %q", buffered, slow.reason)
	}
	if _, ok := s.watchers[reading]; !ok || reading.pending.Load() != 0 {
		t.Fatalf("the reading watcher was dropped or still counts %d pending bytes", reading.pending.Load())
	}
}

// TestListChunkedOnlyForClientsThatAsk: a list larger than a frame is answered in several frames
// to a client that asks for chunks, all of one snapshot, and with an error that says what to do
// to one that does not (a client from before chunking). Get answers a container whole.
func TestListChunkedOnlyForClientsThatAsk(t *testing.T) {
	const n = 40 // ~200 KiB of labels each: 8 MiB, two frames' worth
	cfg, _ := testConfig(t)
	a := runAgent(t, cfg)
	for i := range n {
		labels := map[string]string{}
		for j := range 200 {
			labels[fmt.Sprintf("example.com/label-%03d", j)] = strings.Repeat("v", 1<<10)
		}
		c := agentapi.Container{ID: fmt.Sprintf("c%03d", i), PID: 100 + i, Labels: labels, Annotations: bigAnnotations("b")}
		a.apply(agentapi.Event{Kind: agentapi.KindStart, Source: agentapi.SourceHook, Time: time.Now(), Container: c})
	}

	ask := func(req *agentapi.Envelope) []*agentapi.Envelope {
		t.Helper()
		conn, err := net.Dial("unix", cfg.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if err := agentapi.WriteFrame(conn, req); err != nil {
			t.Fatal(err)
		}
		var frames []*agentapi.Envelope
		for {
			env, err := agentapi.ReadFrame(conn, 0)
			if err != nil {
				t.Fatalf("frame %d: %v", len(frames), err)
			}
			frames = append(frames, env)
			if !env.More {
				return frames
			}
		}
	}

	old := ask(&agentapi.Envelope{Type: agentapi.TypeList})
	if len(old) != 1 || old[0].Type != agentapi.TypeError || !strings.Contains(old[0].Error, "chunked") {
		t.Fatalf("unchunked list of %d big containers: %+v", n, old[0])
	}

	frames := ask(&agentapi.Envelope{Type: agentapi.TypeList, Chunked: true})
	if len(frames) < 2 {
		t.Fatalf("chunked list in %d frame(s)", len(frames))
	}
	var listed []agentapi.Container
	for _, f := range frames {
		if f.Type != agentapi.TypeContainers || f.Seq != frames[0].Seq || f.Seq != uint64(n) {
			t.Fatalf("frame %+v of a list at seq %d", f.Type, f.Seq)
		}
		listed = append(listed, f.Containers...)
	}
	if len(listed) != n || listed[0].ID != "c000" || listed[n-1].ID != fmt.Sprintf("c%03d", n-1) {
		t.Fatalf("chunks hold %d containers (%s..)", len(listed), listed[0].ID)
	}
	for _, c := range listed {
		if len(c.Labels) != 200 || c.AnnotationsOmitted != 15 || len(c.Annotations) != 1 {
			t.Fatalf("%s listed with %d labels, %d annotations, %d omitted", c.ID, len(c.Labels), len(c.Annotations), c.AnnotationsOmitted)
		}
	}

	whole, err := client(cfg).Get(ctxT(t), "c007")
	if err != nil || len(whole.Annotations) != 16 || whole.AnnotationsOmitted != 0 {
		t.Fatalf("get: %v, %d annotations", err, len(whole.Annotations))
	}
}
