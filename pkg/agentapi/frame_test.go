package agentapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	in := &Envelope{Type: TypeEvent, Event: &Event{Kind: KindStart, Stage: "createRuntime", Time: time.Unix(1700000000, 5).UTC(),
		Container: Container{ID: "abc", PID: 42, Namespaces: map[string]uint64{"pid": 4026531836}, Labels: map[string]string{"app": "web"}}}}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadFrame(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out.V != Version || out.Event.Container.ID != "abc" || out.Event.Container.PID != 42 ||
		out.Event.Container.Namespaces["pid"] != 4026531836 || !out.Event.Time.Equal(in.Event.Time) {
		t.Fatalf("round trip changed the message: %+v", out.Event)
	}
	if _, err := ReadFrame(&buf, 0); err != io.EOF {
		t.Fatalf("empty reader: got %v, want io.EOF", err)
	}
}

func TestReadFrameRejects(t *testing.T) {
	frame := func(body string) []byte {
		b := make([]byte, 4+len(body))
		binary.BigEndian.PutUint32(b, uint32(len(body)))
		copy(b[4:], body)
		return b
	}
	huge := make([]byte, 4)
	binary.BigEndian.PutUint32(huge, MaxFrame+1)
	cases := map[string][]byte{
		"oversize":        huge,
		"truncated body":  frame(`{"v":1,"type":"list"}`)[:10],
		"truncated head":  {0, 0},
		"not json":        frame(`{"v":1,`),
		"wrong version":   frame(`{"v":2,"type":"list"}`),
		"no type":         frame(`{"v":1}`),
		"event no body":   frame(`{"v":1,"type":"event"}`),
		"event no id":     frame(`{"v":1,"type":"event","event":{"kind":"start"}}`),
		"event bad kind":  frame(`{"v":1,"type":"event","event":{"kind":"boom","container":{"id":"x"}}}`),
		"event neg pid":   frame(`{"v":1,"type":"event","event":{"kind":"stop","container":{"id":"x","pid":-1}}}`),
		"wrong json type": frame(`{"v":"1","type":"list"}`),
		"change no body":  frame(`{"v":1,"type":"policy_change"}`),
	}
	for name, b := range cases {
		if env, err := ReadFrame(bytes.NewReader(b), 0); err == nil {
			t.Errorf("%s: accepted %+v", name, env)
		}
	}
	if _, err := ReadFrame(bytes.NewReader(huge), 0); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversize: got %v, want ErrFrameTooLarge", err)
	}
}

func TestSpoolOrderAndQuarantine(t *testing.T) {
	dir := t.TempDir()
	base := time.Unix(1700000000, 0)
	for i, id := range []string{"c3", "c1", "c2"} {
		// Written out of order; the times say c1 < c2 < c3.
		at := map[string]int{"c1": 1, "c2": 2, "c3": 3}[id]
		if _, err := SpoolEvent(dir, &Event{Kind: KindStart, Time: base.Add(time.Duration(at) * time.Second), Container: Container{ID: id, PID: i + 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000000-bad.event"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".tmp-half"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, err := ReadSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 {
		t.Fatalf("got %d entries, want 4 (3 events + 1 bad; temp file skipped)", len(ents))
	}
	if ents[0].Err == nil {
		t.Fatalf("garbage file decoded: %+v", ents[0])
	}
	var ids []string
	for _, e := range ents[1:] {
		if e.Err != nil {
			t.Fatal(e.Err)
		}
		ids = append(ids, e.Event.Container.ID)
	}
	if got := fmtIDs(ids); got != "c1,c2,c3" {
		t.Fatalf("replay order %s, want c1,c2,c3", got)
	}
	if err := Quarantine(ents[0].Path); err != nil {
		t.Fatal(err)
	}
	ents, _ = ReadSpool(dir)
	if len(ents) != 3 {
		t.Fatalf("after quarantine %d entries, want 3", len(ents))
	}
}

func fmtIDs(ids []string) string {
	var b bytes.Buffer
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	return b.String()
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteFrame(&buf, &Envelope{Type: TypeEvent, Event: &Event{Kind: KindStart, Container: Container{ID: "x", PID: 1}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	buf.Reset()
	_ = WriteFrame(&buf, &Envelope{Type: TypePolicyChange, Seq: 9, PolicyChange: &PolicyChange{Source: "dir:/p", Generation: 2, Error: "x"}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ReadFrame(bytes.NewReader(b), 1<<16)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same type.
		var out bytes.Buffer
		if err := WriteFrame(&out, env); err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		again, err := ReadFrame(&out, 0)
		if err != nil || again.Type != env.Type {
			t.Fatalf("re-decode: %v %+v", err, again)
		}
	})
}
