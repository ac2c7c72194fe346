package agentapi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPolicyEnvelopesRoundTrip: the policy messages keep their content through a frame, and an
// envelope of the first protocol version without them still decodes (wire compatibility).
func TestPolicyEnvelopesRoundTrip(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	in := []*Envelope{
		{Type: TypePolicyChange, Seq: 7, PolicyChange: &PolicyChange{Time: at, Source: "oci:r/p:t", Kind: PolicySourceOCI, Digest: "sha256:ab",
			Generation: 3, Policies: 2, Total: 5, Error: "registry down"}},
		{Type: TypeExplanation, Explanation: &Explanation{Generation: 3, Node: &Node{Name: "n1", Labels: map[string]string{"zone": "a"}},
			Verdicts: []PolicyVerdict{{Policy: "KubeArmorHostPolicy/h", Applies: true}},
			Rules:    []PolicyRule{{Policy: "KubeArmorHostPolicy/h", Type: "file", Match: "path", Value: "/etc/shadow", Action: "Audit", FromSource: []RuleSource{{Path: "/bin/cat"}}}}}},
		{Type: TypePolicyState, PolicyState: &PolicyState{Generation: 3, Sources: []PolicySource{{Name: "dir:/p", Failing: true, LastError: "bad"}},
			Policies: []PolicyInfo{{ID: "KubeArmorPolicy/default/a", Source: "dir:/p", LoadedAt: at}}}},
		{Type: TypeContainers, Seq: 12, PolicyGeneration: 3, Containers: []Container{{ID: "c", Policies: []string{"KubeArmorPolicy/default/a"}}}},
	}
	for _, env := range in {
		var buf bytes.Buffer
		if err := WriteFrame(&buf, env); err != nil {
			t.Fatal(err)
		}
		out, err := ReadFrame(&buf, 0)
		if err != nil {
			t.Fatal(err)
		}
		switch env.Type {
		case TypePolicyChange:
			if *out.PolicyChange != *env.PolicyChange || out.Seq != 7 {
				t.Errorf("policy change: %+v", out.PolicyChange)
			}
		case TypeExplanation:
			if out.Explanation.Node.Labels["zone"] != "a" || out.Explanation.Rules[0].FromSource[0].Path != "/bin/cat" || !out.Explanation.Verdicts[0].Applies {
				t.Errorf("explanation: %+v", out.Explanation)
			}
		case TypePolicyState:
			if !out.PolicyState.Sources[0].Failing || !out.PolicyState.Policies[0].LoadedAt.Equal(at) {
				t.Errorf("policy state: %+v", out.PolicyState)
			}
		case TypeContainers:
			if out.PolicyGeneration != 3 || out.Containers[0].Policies[0] != "KubeArmorPolicy/default/a" {
				t.Errorf("containers: %+v", out)
			}
		}
	}
	old, err := DecodeEnvelope([]byte(`{"v":1,"type":"containers","seq":4,"containers":[{"id":"c","pid":3}]}`))
	if err != nil || old.Seq != 4 || old.Containers[0].Policies != nil || old.PolicyGeneration != 0 {
		t.Fatalf("an answer without the policy fields: %+v, %v", old, err)
	}
}

// scriptedAgent answers every connection's first request with answer, over a real unix socket.
func scriptedAgent(t *testing.T, answer *Envelope) (string, <-chan *Envelope) {
	t.Helper()
	dir, err := os.MkdirTemp("", "agentapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests := make(chan *Envelope, 10)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := ReadFrame(conn, 0)
			if err == nil {
				requests <- req
				_ = WriteFrame(conn, answer)
			}
			conn.Close()
		}
	}()
	return sock, requests
}

func TestListSnapshotKeepsTheSeq(t *testing.T) {
	sock, requests := scriptedAgent(t, &Envelope{Type: TypeContainers, Seq: 41, PolicyGeneration: 6, Containers: []Container{{ID: "a"}}})
	c := NewClient(sock)
	snap, err := c.ListSnapshot(context.Background())
	if err != nil || snap.Seq != 41 || snap.PolicyGeneration != 6 || len(snap.Containers) != 1 {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
	if req := <-requests; req.Type != TypeList {
		t.Fatalf("request %q", req.Type)
	}
	list, err := c.List(context.Background())
	if err != nil || len(list) != 1 || list[0].ID != "a" {
		t.Fatalf("list %+v, %v", list, err)
	}
}

func TestPolicyRequestsAndWrongAnswers(t *testing.T) {
	sock, requests := scriptedAgent(t, &Envelope{Type: TypeExplanation, Explanation: &Explanation{Generation: 2}})
	c := NewClient(sock)
	e, err := c.Explain(context.Background(), "web1")
	if err != nil || e.Generation != 2 {
		t.Fatalf("explain: %+v, %v", e, err)
	}
	if req := <-requests; req.Type != TypeExplain || req.ID != "web1" || req.Node {
		t.Fatalf("explain request %+v", req)
	}
	if _, err := c.ExplainNode(context.Background()); err != nil {
		t.Fatal(err)
	}
	if req := <-requests; req.Type != TypeExplain || !req.Node {
		t.Fatalf("explain --node request %+v", req)
	}
	// An explanation is not an answer to policy_list.
	if _, err := c.Policies(context.Background()); err == nil {
		t.Fatal("a wrong answer type was accepted")
	}

	errSock, _ := scriptedAgent(t, &Envelope{Type: TypeError, Error: "no live container"})
	var ae *AgentError
	if _, err := NewClient(errSock).Explain(context.Background(), "x"); !errors.As(err, &ae) || ae.Msg != "no live container" {
		t.Fatalf("agent error: %v", err)
	}
}

func TestWatchUnreachable(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "absent.sock"))
	err := c.Watch(context.Background(), 0, func(*Envelope) error { return nil })
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("karmord not reachable")) {
		t.Fatalf("watch of an absent socket: %v", err)
	}
}

// framesAgent answers every connection's first request with the given frames, in order.
func framesAgent(t *testing.T, answers ...*Envelope) (string, <-chan *Envelope) {
	t.Helper()
	dir, err := os.MkdirTemp("", "agentapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	requests := make(chan *Envelope, 10)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if req, err := ReadFrame(conn, 0); err == nil {
				requests <- req
				for _, a := range answers {
					_ = WriteFrame(conn, a)
				}
			}
			conn.Close()
		}
	}()
	return sock, requests
}

func TestListSnapshotReassemblesChunks(t *testing.T) {
	sock, requests := framesAgent(t,
		&Envelope{Type: TypeContainers, Seq: 9, PolicyGeneration: 2, More: true, Containers: []Container{{ID: "a"}, {ID: "b"}}},
		&Envelope{Type: TypeContainers, Seq: 9, PolicyGeneration: 2, More: true},
		&Envelope{Type: TypeContainers, Seq: 9, PolicyGeneration: 2, Containers: []Container{{ID: "c"}}},
		&Envelope{Type: TypeContainers, Seq: 9, PolicyGeneration: 2, Containers: []Container{{ID: "not part of the answer"}}})
	snap, err := NewClient(sock).ListSnapshot(context.Background())
	if err != nil || snap.Seq != 9 || snap.PolicyGeneration != 2 || len(snap.Containers) != 3 || snap.Containers[2].ID != "c" {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
	if req := <-requests; req.Type != TypeList || !req.Chunked {
		t.Fatalf("request %+v, want a list asking for chunks", req)
	}
}

func TestListSnapshotRejectsBrokenChunks(t *testing.T) {
	for name, answers := range map[string][]*Envelope{
		"seq changes":  {{Type: TypeContainers, Seq: 9, More: true}, {Type: TypeContainers, Seq: 10}},
		"error midway": {{Type: TypeContainers, Seq: 9, More: true}, {Type: TypeError, Error: "boom"}},
		"stream ends":  {{Type: TypeContainers, Seq: 9, More: true}},
		"another type": {{Type: TypeContainers, Seq: 9, More: true}, {Type: TypeAck, Seq: 9}},
		"generation":   {{Type: TypeContainers, Seq: 9, PolicyGeneration: 1, More: true}, {Type: TypeContainers, Seq: 9, PolicyGeneration: 2}},
	} {
		sock, _ := framesAgent(t, answers...)
		if snap, err := NewClient(sock).ListSnapshot(context.Background()); err == nil {
			t.Errorf("%s: snapshot %+v, want an error", name, snap)
		}
	}
}

// FuzzListSnapshot answers a chunked list with arbitrary bytes: the client must return a list or
// an error, never panic or hang.
func FuzzListSnapshot(f *testing.F) {
	var seed bytes.Buffer
	_ = WriteFrame(&seed, &Envelope{Type: TypeContainers, Seq: 3, More: true, Containers: []Container{{ID: "a"}}})
	_ = WriteFrame(&seed, &Envelope{Type: TypeContainers, Seq: 3, Containers: []Container{{ID: "b", AnnotationsOmitted: 2}}})
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte(`{"v":1}`))
	dir, err := os.MkdirTemp("", "agentapi-fuzz-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	answers := make(chan []byte)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := ReadFrame(conn, 0); err == nil {
				_, _ = conn.Write(<-answers)
			}
			conn.Close()
		}
	}()
	c := NewClient(sock)
	c.Timeout = 5 * time.Second
	f.Fuzz(func(t *testing.T, in []byte) {
		done := make(chan error, 1)
		go func() {
			_, err := c.ListSnapshot(context.Background())
			done <- err
		}()
		answers <- in
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ListSnapshot did not return after the agent closed the connection")
		}
	})
}
