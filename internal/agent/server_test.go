package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karmor/karmor/pkg/agentapi"
)

func hookStart(id string, pid int, name string) *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(), HookDuration: 3 * time.Millisecond,
		Container: agentapi.Container{ID: id, PID: pid, Name: name, Labels: map[string]string{"app": name}}}
}

func hookStop(id string) *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStop, Stage: "poststop", Time: time.Now(), Container: agentapi.Container{ID: id}}
}

func TestEventAckListGet(t *testing.T) {
	cfg, _ := testConfig(t)
	a := runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)

	seq1, err := cl.Report(ctx, hookStart("aaa111", 0, "web1"))
	if err != nil {
		t.Fatal(err)
	}
	seq2, err := cl.Report(ctx, hookStart("bbb222", 0, "web2"))
	if err != nil {
		t.Fatal(err)
	}
	if seq2 != seq1+1 {
		t.Fatalf("acks %d then %d, want consecutive numbers", seq1, seq2)
	}
	list, err := cl.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids(list) != "aaa111,bbb222" || list[0].Source != agentapi.SourceHook || list[0].Labels["app"] != "web1" {
		t.Fatalf("list %+v", list)
	}
	for _, key := range []string{"aaa111", "aaa", "web1"} {
		c, err := cl.Get(ctx, key)
		if err != nil || c.ID != "aaa111" {
			t.Fatalf("get %q: %+v, %v", key, c, err)
		}
	}
	if _, err := cl.Get(ctx, "nope"); !errors.Is(err, agentapi.ErrNotFound) {
		t.Fatalf("get of a missing container: %v, want ErrNotFound", err)
	}
	// The source is the agent's to say: a hook claiming "reconcile" is still a hook.
	forged := hookStart("ccc333", 0, "forged")
	forged.Source = agentapi.SourceReconcile
	if _, err := cl.Report(ctx, forged); err != nil {
		t.Fatal(err)
	}
	if c, _ := cl.Get(ctx, "ccc333"); c == nil || c.Source != agentapi.SourceHook {
		t.Fatalf("forged source kept: %+v", c)
	}
	// A prefix two ids share is ambiguous; an empty key is refused.
	if _, err := cl.Report(ctx, hookStart("bbb999", 0, "web3")); err != nil {
		t.Fatal(err)
	}
	var ae *agentapi.AgentError
	if _, err := cl.Get(ctx, "bbb"); !errors.As(err, &ae) || !strings.Contains(err.Error(), "bbb222, bbb999") {
		t.Fatalf("ambiguous prefix: %v, want an error naming both", err)
	}
	if _, err := cl.Get(ctx, ""); !errors.As(err, &ae) {
		t.Fatalf("empty get: %v, want an agent error", err)
	}

	seqStop, err := cl.Report(ctx, hookStop("aaa111"))
	if err != nil {
		t.Fatal(err)
	}
	// A stop of an unknown container is acknowledged with the latest number and changes nothing.
	seqUnknown, err := cl.Report(ctx, hookStop("never-started"))
	if err != nil || seqUnknown != seqStop {
		t.Fatalf("stop of an unknown id: ack %d, %v; want %d", seqUnknown, err, seqStop)
	}
	list, _ = cl.List(ctx)
	if ids(list) != "bbb222,bbb999,ccc333" {
		t.Fatalf("after stop: %s", ids(list))
	}
	if got := counter(t, a, "events", "createRuntime", "start", "hook", "added"); got != 4 {
		t.Fatalf("events metric: %v starts added, want 4", got)
	}
	if got := counter(t, a, "events", "poststop", "stop", "hook", "ignored"); got != 1 {
		t.Fatalf("events metric: %v ignored stops, want 1", got)
	}
}

// collect runs a watch in the background and gathers what it streams.
type collected struct {
	mu   sync.Mutex
	envs []*agentapi.Envelope
	err  error
	done chan struct{}
}

func watch(t *testing.T, cfg Config, from uint64) (*collected, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collected{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		err := client(cfg).Watch(ctx, from, func(env *agentapi.Envelope) error {
			c.mu.Lock()
			c.envs = append(c.envs, env)
			c.mu.Unlock()
			return nil
		})
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c, cancel
}

func (c *collected) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.envs {
		out = append(out, fmt.Sprintf("%d:%s:%s", e.Seq, e.Event.Kind, e.Event.Container.ID))
	}
	return strings.Join(out, " ")
}

// events lists kind:id:source of what was streamed.
func (c *collected) events() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.envs {
		out = append(out, e.Event.Kind+":"+e.Event.Container.ID+":"+e.Event.Source)
	}
	return strings.Join(out, " ")
}

func (c *collected) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envs)
}

func TestWatchStreamsAndResumes(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.EventRing = 3
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)

	list0, _ := cl.List(ctx)
	if len(list0) != 0 {
		t.Fatal("fresh agent has containers")
	}
	w, _ := watch(t, cfg, 0)
	var acks []uint64
	for _, ev := range []*agentapi.Event{hookStart("a", 0, "a"), hookStart("b", 0, "b"), hookStop("a")} {
		seq, err := cl.Report(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, seq)
	}
	waitFor(t, "3 watched events", func() bool { return w.len() == 3 })
	want := fmt.Sprintf("%d:start:a %d:start:b %d:stop:a", acks[0], acks[1], acks[2])
	if got := w.summary(); got != want {
		t.Fatalf("watched %q, want %q", got, want)
	}
	w.mu.Lock()
	stopped := w.envs[2].Event
	w.mu.Unlock()
	if stopped.Container.Name != "a" || stopped.Source != agentapi.SourceHook {
		t.Fatalf("a stop event carries the stopped container: %+v", stopped)
	}

	// Resume after the first event: the other two come back.
	r, _ := watch(t, cfg, acks[0])
	waitFor(t, "resumed events", func() bool { return r.len() == 2 })
	if got := r.summary(); got != fmt.Sprintf("%d:start:b %d:stop:a", acks[1], acks[2]) {
		t.Fatalf("resumed %q", got)
	}

	// Push the first events out of the ring (3 retained), then resuming from before it fails.
	for i := range 3 {
		if _, err := cl.Report(ctx, hookStart(fmt.Sprintf("x%d", i), 0, "x")); err != nil {
			t.Fatal(err)
		}
	}
	err := client(cfg).Watch(ctx, acks[0], func(*agentapi.Envelope) error { return nil })
	var ae *agentapi.AgentError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "no longer retained") {
		t.Fatalf("resume from an evicted seq: %v", err)
	}
	err = client(cfg).Watch(ctx, acks[2]+1000, func(*agentapi.Envelope) error { return nil })
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "ahead") {
		t.Fatalf("resume from a future seq: %v", err)
	}
	// The live watchers saw everything, in order.
	waitFor(t, "6 events on the first watcher", func() bool { return w.len() == 6 })
}

// TestListThenWatchJoinsExactly checks the documented way to follow the table: list, then watch
// from the list's sequence number.
func TestListThenWatchJoinsExactly(t *testing.T) {
	cfg, _ := testConfig(t)
	runAgent(t, cfg)
	ctx := ctxT(t)
	cl := client(cfg)
	for _, id := range []string{"a", "b"} {
		if _, err := cl.Report(ctx, hookStart(id, 0, id)); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := agentapi.WriteFrame(conn, &agentapi.Envelope{Type: agentapi.TypeList}); err != nil {
		t.Fatal(err)
	}
	resp, err := agentapi.ReadFrame(conn, 0)
	if err != nil || resp.Type != agentapi.TypeContainers || len(resp.Containers) != 2 {
		t.Fatalf("list: %+v %v", resp, err)
	}
	seqC, _ := cl.Report(ctx, hookStart("c", 0, "c"))
	w, _ := watch(t, cfg, resp.Seq)
	waitFor(t, "the event after the list", func() bool { return w.len() == 1 })
	if got := w.summary(); got != fmt.Sprintf("%d:start:c", seqC) {
		t.Fatalf("watch from the list's seq %d: %q", resp.Seq, got)
	}
}

// rawExchange sends raw bytes on a new connection and reads one answer.
func rawExchange(t *testing.T, cfg Config, raw []byte) (*agentapi.Envelope, error) {
	t.Helper()
	conn, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		t.Fatal(err)
	}
	return agentapi.ReadFrame(conn, 0)
}

func frame(body string) []byte {
	b := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(b, uint32(len(body)))
	copy(b[4:], body)
	return b
}

func TestMalformedMessagesGetAnErrorAndTheAgentKeepsServing(t *testing.T) {
	cfg, logs := testConfig(t)
	a := runAgent(t, cfg)
	oversize := make([]byte, 4)
	binary.BigEndian.PutUint32(oversize, agentapi.MaxFrame+1)
	cases := map[string]struct {
		raw  []byte
		want string
	}{
		"garbage":          {frame("\x00\xffnot json at all"), "malformed message"},
		"oversize":         {oversize, "frame too large"},
		"huge length":      {[]byte{0xff, 0xff, 0xff, 0xff}, "frame too large"},
		"wrong version":    {frame(`{"v":7,"type":"list"}`), "version 7 not supported"},
		"wrong json types": {frame(`{"v":1,"type":"event","event":{"kind":"start","container":{"id":42}}}`), "malformed message"},
		"no type":          {frame(`{"v":1}`), "no type"},
		"unknown type":     {frame(`{"v":1,"type":"explode"}`), `unknown request type "explode"`},
		"answer type":      {frame(`{"v":1,"type":"ack"}`), `unknown request type "ack"`},
		"event no id":      {frame(`{"v":1,"type":"event","event":{"kind":"start","container":{}}}`), "without a container id"},
		"event bad kind":   {frame(`{"v":1,"type":"event","event":{"kind":"pause","container":{"id":"x"}}}`), "neither"},
		"trailing garbage": {frame(`{"v":1,"type":"list"}garbage`), "malformed message"},
	}
	for name, tc := range cases {
		resp, err := rawExchange(t, cfg, tc.raw)
		if err != nil {
			t.Errorf("%s: no answer: %v", name, err)
			continue
		}
		if resp.Type != agentapi.TypeError || !strings.Contains(resp.Error, tc.want) {
			t.Errorf("%s: answer %+v, want an error containing %q", name, resp, tc.want)
		}
	}
	// A truncated frame (the client leaves mid-message) and a silent client are not answered,
	// and do not disturb the agent either.
	for _, raw := range [][]byte{frame(`{"v":1,"type":"list"}`)[:7], {0, 0}} {
		conn, err := net.Dial("unix", cfg.Socket)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write(raw)
		conn.Close()
	}
	if _, err := client(cfg).Report(ctxT(t), hookStart("still-here", 0, "ok")); err != nil {
		t.Fatalf("agent stopped serving after malformed input: %v", err)
	}
	if got := counter(t, a, "errors", errKindMalformed); got < 8 {
		t.Fatalf("malformed errors counted: %v", got)
	}
	if got := counter(t, a, "errors", errKindUnknown); got != 2 {
		t.Fatalf("unknown-type errors counted: %v, want 2", got)
	}
	if !strings.Contains(logs.String(), "malformed message") {
		t.Fatal("malformed messages were not logged")
	}
}

// TestSeveralRequestsOnOneConnection: a connection serves requests until the client closes it.
func TestSeveralRequestsOnOneConnection(t *testing.T) {
	cfg, _ := testConfig(t)
	runAgent(t, cfg)
	conn, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, req := range []*agentapi.Envelope{
		{Type: agentapi.TypeEvent, Event: hookStart("a", 0, "a")},
		{Type: "bogus"},
		{Type: agentapi.TypeList},
	} {
		if err := agentapi.WriteFrame(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := agentapi.ReadFrame(conn, 0)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := []string{agentapi.TypeAck, agentapi.TypeError, agentapi.TypeContainers}[i]
		if resp.Type != want {
			t.Fatalf("request %d answered %q, want %q", i, resp.Type, want)
		}
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.ReadTimeout = 100 * time.Millisecond
	runAgent(t, cfg)
	conn, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := conn.Read(b[:]); err == nil {
		t.Fatal("idle connection got data")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("agent kept an idle connection open past its read timeout")
	}
}

func TestSocketPermissionsAndStaleSocket(t *testing.T) {
	cfg, _ := testConfig(t)
	// A stale socket from a dead agent: bound, then closed without unlinking.
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.Socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	runAgent(t, cfg)
	fi, err := os.Stat(cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, want a 0600 socket", fi.Mode())
	}
	di, _ := os.Stat(filepath.Dir(cfg.Socket))
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("socket directory mode %v, want 0700", di.Mode().Perm())
	}

	// A second agent on the same socket refuses to start, and the first keeps serving.
	second, _ := testConfig(t)
	second.Socket = cfg.Socket
	b, err := New(second)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Run(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "another karmord is already listening") {
		t.Fatalf("second agent: %v", err)
	}
	if _, err := client(cfg).List(ctxT(t)); err != nil {
		t.Fatalf("first agent after the second was refused: %v", err)
	}
}

func TestSocketPathThatIsNotASocket(t *testing.T) {
	cfg, _ := testConfig(t)
	if err := os.MkdirAll(filepath.Dir(cfg.Socket), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Socket, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(ctxT(t)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Run over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(cfg.Socket); string(b) != "precious" {
		t.Fatal("the file in the socket's place was touched")
	}
}

func TestShutdownEndsWatchersAndRemovesSocket(t *testing.T) {
	cfg, _ := testConfig(t)
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	<-a.Ready()
	w, _ := watch(t, cfg, 0)
	waitFor(t, "the watcher to subscribe", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.stream.watchers) == 1
	})
	idle, err := net.Dial("unix", cfg.Socket) // a connection that never sends
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel (an idle connection held it?)")
	}
	<-w.done
	if w.err == nil || !strings.Contains(w.err.Error(), "shutting down") {
		t.Fatalf("watcher ended with %v, want the shutdown error", w.err)
	}
	if _, err := os.Lstat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestConnectionLimit(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.MaxConns = 1
	a := runAgent(t, cfg)
	hold, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	// The held connection is being served once it answers a request.
	if err := agentapi.WriteFrame(hold, &agentapi.Envelope{Type: agentapi.TypeList}); err != nil {
		t.Fatal(err)
	}
	if _, err := agentapi.ReadFrame(hold, 0); err != nil {
		t.Fatal(err)
	}
	_, err = client(cfg).List(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("connection beyond the limit: %v, want busy", err)
	}
	if counter(t, a, "connections", "busy") != 1 {
		t.Fatal("busy connection not counted")
	}
	hold.Close()
	waitFor(t, "the slot to free", func() bool { _, err := client(cfg).List(ctxT(t)); return err == nil })
}

// TestSlowWatcherNeverBlocksAcks: a watcher that stops reading is dropped; hooks are acknowledged
// all along.
func TestSlowWatcherNeverBlocksAcks(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.WatchBuffer = 8
	cfg.WriteTimeout = 200 * time.Millisecond
	a := runAgent(t, cfg)
	stuck, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if err := agentapi.WriteFrame(stuck, &agentapi.Envelope{Type: agentapi.TypeWatch}); err != nil {
		t.Fatal(err)
	}
	cl := client(cfg)
	ctx := ctxT(t)
	// Big events fill the socket buffer quickly; the watcher never reads.
	big := strings.Repeat("x", 4000)
	for i := range 400 {
		ev := hookStart(fmt.Sprintf("c%04d", i), 0, "n")
		ev.Container.Annotations = map[string]string{"pad": big}
		if _, err := cl.Report(ctx, ev); err != nil {
			t.Fatalf("event %d not acknowledged while a watcher is stuck: %v", i, err)
		}
	}
	waitFor(t, "the stuck watcher to be dropped", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.stream.watchers) == 0
	})
	if got := testutil.ToFloat64(a.metrics.watchDrops); got != 1 {
		t.Fatalf("watch drops counted %v, want 1", got)
	}
}
