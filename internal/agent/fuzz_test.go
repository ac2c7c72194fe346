package agent

import (
	"bytes"
	"context"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// socketPair returns the two ends of a connected unix stream socket pair.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

func frames(envs ...*agentapi.Envelope) []byte {
	var b bytes.Buffer
	for _, e := range envs {
		_ = agentapi.WriteFrame(&b, e)
	}
	return b.Bytes()
}

// FuzzServe feeds arbitrary bytes to the agent's connection handler: it must never panic or
// hang, every answer must be a well-formed frame, and the agent must be usable afterwards.
func FuzzServe(f *testing.F) {
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "a", PID: 1}}}))
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypeList}, &agentapi.Envelope{Type: agentapi.TypeGet, ID: "a"}))
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypeWatch, FromSeq: 1}, &agentapi.Envelope{Type: agentapi.TypeList}))
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{Kind: agentapi.KindStop, Container: agentapi.Container{ID: "a"}}}))
	f.Add([]byte{0, 0, 0, 5, '{', '}', 'x'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add(frame(`{"v":1,"type":"get","id":""}`))
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypePolicyList}, &agentapi.Envelope{Type: agentapi.TypeExplain, ID: "a"},
		&agentapi.Envelope{Type: agentapi.TypeExplain, Node: true}))
	f.Add(frame(`{"v":1,"type":"explain"}`))
	f.Add(frame(`{"v":1,"type":"policy_change","policy_change":{"source":"x"}}`))
	f.Add(frame(`{"v":1,"type":"watch","from_seq":18446744073709551615}`))
	f.Add(frames(&agentapi.Envelope{Type: agentapi.TypeEvent, Event: &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "b", PID: 2,
		Annotations: map[string]string{"big": string(make([]byte, 2<<10)), "small": "x"}, AnnotationsOmitted: -3}}},
		&agentapi.Envelope{Type: agentapi.TypeList, Chunked: true}, &agentapi.Envelope{Type: agentapi.TypeWatch}))
	f.Add(frame(`{"v":1,"type":"list","chunked":true,"more":true}`))
	cfg, _ := testConfig(f)
	cfg.ReadTimeout = 2 * time.Second
	a, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := socketPair(t)
		defer client.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.serve(context.Background(), &session{conn: server, peer: peer{uid: 0}})
		}()
		go func() {
			_, _ = client.Write(in)
			_ = client.CloseWrite()
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			env, err := agentapi.ReadFrame(client, 0)
			if err != nil {
				if os.IsTimeout(err) {
					t.Fatal("the handler neither answered nor closed the connection")
				}
				break
			}
			switch env.Type {
			case agentapi.TypeAck, agentapi.TypeError, agentapi.TypeContainers, agentapi.TypeEvent, agentapi.TypePolicyState,
				agentapi.TypeExplanation, agentapi.TypePolicyChange:
			default:
				t.Fatalf("answer of unexpected type %q", env.Type)
			}
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler did not return after its client left")
		}
		if !a.mu.TryLock() {
			t.Fatal("the handler left the agent locked")
		}
		a.mu.Unlock()
	})
}
