package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// handler serves one request. It returns the answer to send, or an error to send as an error
// envelope; the connection then waits for the next request. A handler that takes the connection
// over (watch) returns (nil, nil) when it is done with it, and the connection is closed.
type handler func(ctx context.Context, s *session, req *agentapi.Envelope) (*agentapi.Envelope, error)

// session is one accepted connection.
type session struct {
	conn net.Conn
	peer peer
	// writer is whether the peer may send requests that change karmord's state.
	writer bool
}

// writeRequests are the request types that change karmord's state; only root and karmord's own
// user may send them (accessPolicy.mayWrite).
var writeRequests = map[string]bool{agentapi.TypeEvent: true}

// defaultHandlers is the request dispatch: one handler per envelope type. New request types
// are added here.
func (a *Agent) defaultHandlers() map[string]handler {
	return map[string]handler{
		agentapi.TypeEvent:      a.handleEvent,
		agentapi.TypeList:       a.handleList,
		agentapi.TypeGet:        a.handleGet,
		agentapi.TypeWatch:      a.handleWatch,
		agentapi.TypePolicyList: a.handlePolicyList,
		agentapi.TypeExplain:    a.handleExplain,
		agentapi.TypeHealth:     a.handleHealth,
	}
}

func (a *Agent) acceptLoop(ctx context.Context, ln *net.UnixListener) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait for connections to finish.
			a.log.Warn("accept failed; retrying", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case a.conns <- struct{}{}:
		default:
			a.metrics.connections.WithLabelValues("busy").Inc()
			a.connsDone.Add(1)
			go func() {
				defer a.connsDone.Done()
				a.refuse(conn, fmt.Sprintf("karmord is busy (%d connections); retry", a.cfg.MaxConns))
			}()
			continue
		}
		a.connsDone.Add(1)
		go func() {
			defer a.connsDone.Done()
			defer func() { <-a.conns }()
			a.handleConn(ctx, conn)
		}()
	}
}

// refuseLinger bounds how long a refused connection is kept open so that its client, which
// writes its request before reading, can still read the refusal instead of a broken pipe.
const refuseLinger = time.Second

// refuse answers a connection with one error, reads (and discards) a little of what the client
// sends meanwhile, and closes it.
func (a *Agent) refuse(conn net.Conn, msg string) {
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
	if agentapi.WriteFrame(conn, errorEnvelope(msg)) != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Now().Add(refuseLinger))
	_, _ = io.CopyN(io.Discard, conn, 64<<10)
}

func errorEnvelope(msg string) *agentapi.Envelope {
	return &agentapi.Envelope{V: agentapi.Version, Type: agentapi.TypeError, Error: msg}
}

// handleConn checks the peer's credentials and serves its requests.
func (a *Agent) handleConn(ctx context.Context, conn *net.UnixConn) {
	who, err := peerCred(conn)
	if err != nil {
		a.metrics.connections.WithLabelValues("rejected").Inc()
		a.log.Warn("connection rejected: cannot read peer credentials", "err", err)
		a.refuse(conn, "karmord cannot read your credentials")
		return
	}
	if !a.access.allows(who) {
		a.metrics.connections.WithLabelValues("rejected").Inc()
		a.log.Warn("connection rejected: peer not allowed", "uid", who.uid, "gid", who.gid, "pid", who.pid)
		a.refuse(conn, fmt.Sprintf("permission denied: uid %d (gid %d) may not talk to karmord; run as root or start karmord with --allow-uid %d or --allow-gid %d", who.uid, who.gid, who.uid, who.gid))
		return
	}
	a.metrics.connections.WithLabelValues("accepted").Inc()
	a.serve(ctx, &session{conn: conn, peer: who, writer: a.access.mayWrite(who)})
}

// serve reads requests from an admitted connection until it ends, a frame is malformed, or the
// agent shuts down. It never panics: a malformed frame is answered with an error, a handler's
// panic is recovered and answered with an error.
func (a *Agent) serve(ctx context.Context, s *session) {
	conn := s.conn
	defer conn.Close()
	a.metrics.openConns.Inc()
	defer a.metrics.openConns.Dec()
	// At shutdown, a connection waiting for its next request stops waiting.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		if ctx.Err() != nil {
			return
		}
		_ = conn.SetReadDeadline(time.Now().Add(a.cfg.ReadTimeout))
		req, err := agentapi.ReadFrame(conn, agentapi.MaxFrame)
		if err != nil {
			a.readFailed(s, err)
			return
		}
		resp, err := a.dispatch(ctx, s, req)
		if resp == nil && err == nil {
			return
		}
		if err != nil {
			resp = errorEnvelope(err.Error())
		}
		if !a.write(s, resp) {
			return
		}
	}
}

// readFailed answers what can be answered about a failed read and logs it.
func (a *Agent) readFailed(s *session, err error) {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		// The client is done, silent, or the agent is shutting down.
		return
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		a.log.Debug("client left mid-frame", "uid", s.peer.uid, "pid", s.peer.pid, "err", err)
		return
	}
	a.metrics.errors.WithLabelValues(errKindMalformed).Inc()
	a.log.Warn("malformed message", "uid", s.peer.uid, "pid", s.peer.pid, "err", err)
	a.write(s, errorEnvelope("malformed message: "+err.Error()))
}

// dispatch runs the handler for req's type, turning a panic into an error.
func (a *Agent) dispatch(ctx context.Context, s *session, req *agentapi.Envelope) (resp *agentapi.Envelope, err error) {
	h, ok := a.handlers[req.Type]
	if !ok {
		a.metrics.errors.WithLabelValues(errKindUnknown).Inc()
		a.metrics.requests.WithLabelValues("unknown").Inc()
		a.log.Warn("unknown request type", "type", truncate(req.Type, 64), "uid", s.peer.uid, "pid", s.peer.pid)
		return nil, fmt.Errorf("unknown request type %q; this karmord serves %s", truncate(req.Type, 64), strings.Join(a.requestTypes(), ", "))
	}
	a.metrics.requests.WithLabelValues(req.Type).Inc()
	if writeRequests[req.Type] && !s.writer {
		a.metrics.errors.WithLabelValues(errKindForbidden).Inc()
		a.log.Warn("write refused to a read-only peer", "type", req.Type, "uid", s.peer.uid, "gid", s.peer.gid, "pid", s.peer.pid)
		return nil, fmt.Errorf("permission denied: uid %d is read-only (list, get, watch, policies, explain); only root and karmord's own uid (%d) may send %s requests",
			s.peer.uid, a.access.self, req.Type)
	}
	defer func() {
		if p := recover(); p != nil {
			a.metrics.errors.WithLabelValues(errKindPanic).Inc()
			a.log.Error("handler panicked", "type", req.Type, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("internal error while handling %q; karmord's log has the details", req.Type)
		}
	}()
	return h(ctx, s, req)
}

func (a *Agent) requestTypes() []string {
	types := make([]string, 0, len(a.handlers))
	for t := range a.handlers {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

// write sends one envelope within the write timeout; it reports whether the connection is still
// usable.
func (a *Agent) write(s *session, env *agentapi.Envelope) bool {
	_ = s.conn.SetWriteDeadline(time.Now().Add(a.cfg.WriteTimeout))
	err := agentapi.WriteFrame(s.conn, env)
	if err == nil {
		return true
	}
	if errors.Is(err, agentapi.ErrFrameTooLarge) {
		// Nothing was written, so the client can still be told.
		a.log.Error("answer too large for one frame", "type", env.Type, "err", err)
		return a.write(s, errorEnvelope(fmt.Sprintf("the answer to this request exceeds the protocol's %d-byte frame limit", agentapi.MaxFrame)))
	}
	a.metrics.errors.WithLabelValues(errKindWrite).Inc()
	a.log.Debug("cannot answer client", "type", env.Type, "uid", s.peer.uid, "pid", s.peer.pid, "err", err)
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// maxClockSkew is how far in the future an event may be dated. Hooks run on karmord's host and
// read the same clock; a later time is a bogus or hostile one, and it would make a stop's
// tombstone outlive its TTL and reject every later start of the id, or a start unremovable by
// its real stop.
const maxClockSkew = 2 * time.Second

// clampTime is the time karmord applies ev at: its own, or now when it has none or is dated
// beyond maxClockSkew in the future.
func (a *Agent) clampTime(ev agentapi.Event, now time.Time) time.Time {
	switch {
	case ev.Time.IsZero():
		return now
	case ev.Time.After(now.Add(maxClockSkew)):
		a.log.Warn("event dated in the future; applied at karmord's time", "kind", ev.Kind, "id", truncate(ev.Container.ID, 64),
			"source", ev.Source, "time", ev.Time, "now", now)
		return now
	}
	return ev.Time
}

// maxHookDuration bounds the latency a hook may report, so that a bogus value cannot skew the
// histogram's sum.
const maxHookDuration = time.Hour

// handleEvent applies a hook's event and acknowledges it with its sequence number (or, when the
// event changed nothing, the latest one). The source is the agent's to say, never the peer's.
func (a *Agent) handleEvent(_ context.Context, _ *session, req *agentapi.Envelope) (*agentapi.Envelope, error) {
	ev := *req.Event
	ev.Source = agentapi.SourceHook
	if ev.HookDuration > 0 && ev.HookDuration < maxHookDuration {
		a.metrics.hookLatency.Observe(ev.HookDuration.Seconds())
	}
	_, seq := a.apply(ev)
	return &agentapi.Envelope{Type: agentapi.TypeAck, Seq: seq}, nil
}

// handleList answers every live container, slim (see slimContainer), with the policies that
// apply to it, and the sequence number the list reflects: watching from it continues exactly
// where the list ends. A client that asks for a chunked answer gets it in as many frames as it
// takes (all but the last marked More); any other gets one frame, or an error when one frame
// cannot hold the list.
func (a *Agent) handleList(_ context.Context, s *session, req *agentapi.Envelope) (*agentapi.Envelope, error) {
	list, seq := a.snapshot()
	set := a.policies.Current()
	for i := range list {
		a.withPolicies(&list[i], set) // before slimming: matching sees every annotation
		list[i] = slimContainer(list[i])
	}
	answer := func(cs []agentapi.Container, more bool) *agentapi.Envelope {
		return &agentapi.Envelope{Type: agentapi.TypeContainers, Seq: seq, PolicyGeneration: set.Generation, Containers: cs, More: more}
	}
	chunks, size, err := chunkContainers(list)
	if err != nil {
		return nil, err
	}
	if !req.Chunked {
		if size > agentapi.MaxFrame-listEnvelopeSlack {
			return nil, fmt.Errorf("the list of %d containers (%d bytes) does not fit in one %d-byte frame: use a karmor client that asks for chunked lists (see docs/agent-socket.md)",
				len(list), size, agentapi.MaxFrame)
		}
		return answer(list, false), nil
	}
	for _, chunk := range chunks[:len(chunks)-1] {
		if !a.write(s, answer(chunk, true)) {
			return nil, nil
		}
	}
	return answer(chunks[len(chunks)-1], false), nil
}

// listEnvelopeSlack is room in a frame for a list answer's envelope around its containers.
const listEnvelopeSlack = 4 << 10

// handleGet answers one container by id, name or unique id prefix; none is an empty answer, an
// ambiguous key an error naming the candidates.
func (a *Agent) handleGet(_ context.Context, _ *session, req *agentapi.Envelope) (*agentapi.Envelope, error) {
	if req.ID == "" {
		return nil, errors.New("get needs a container id, id prefix or name")
	}
	c, seq, err := a.find(req.ID)
	if err != nil {
		return nil, err
	}
	set := a.policies.Current()
	resp := &agentapi.Envelope{Type: agentapi.TypeContainers, Seq: seq, PolicyGeneration: set.Generation}
	if c != nil {
		a.withPolicies(c, set)
		resp.Containers = []agentapi.Container{*c}
	}
	return resp, nil
}

// find returns a copy of the container with id, name or unique id prefix key (nil when there is
// none) and the sequence number the table is at; an ambiguous key is an error naming the
// candidates.
func (a *Agent) find(key string) (*agentapi.Container, uint64, error) {
	a.mu.Lock()
	c, res, candidates := a.table.lookup(key)
	seq := a.stream.head
	a.mu.Unlock()
	switch res {
	case lookupFound:
		return &c, seq, nil
	case lookupAmbiguous:
		if len(candidates) > 10 {
			candidates = append(candidates[:10], "...")
		}
		return nil, seq, fmt.Errorf("%q matches several containers (%s): give more of the id", truncate(key, 64), strings.Join(candidates, ", "))
	}
	return nil, seq, nil
}

// handleWatch takes the connection over and streams events: first the retained ones after
// from_seq, then new ones, until the client leaves, falls behind, or the agent shuts down. See
// stream for the resume rules.
func (a *Agent) handleWatch(ctx context.Context, s *session, req *agentapi.Envelope) (*agentapi.Envelope, error) {
	a.mu.Lock()
	backlog, w, err := a.stream.subscribe(req.FromSeq)
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	a.metrics.watchers.Inc()
	defer a.metrics.watchers.Dec()
	unsubscribe := func() {
		a.mu.Lock()
		a.stream.drop(w, "watcher left")
		a.mu.Unlock()
	}

	// A watcher sends nothing more: a read returning means it left (or broke the protocol).
	gone := make(chan struct{})
	_ = s.conn.SetReadDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetReadDeadline(time.Now()) })
	defer stop()
	go func() {
		defer close(gone)
		var b [1]byte
		_, _ = s.conn.Read(b[:])
	}()
	defer func() {
		_ = s.conn.Close() // ends the reader
		<-gone
	}()

	for _, env := range backlog {
		if !a.write(s, a.forWatcher(env)) {
			unsubscribe()
			return nil, nil
		}
	}
	for {
		select {
		case e, ok := <-w.ch:
			if !ok {
				a.write(s, errorEnvelope(w.reason))
				return nil, nil
			}
			if !a.write(s, a.forWatcher(w.took(e))) {
				unsubscribe()
				return nil, nil
			}
		case <-gone:
			unsubscribe()
			return nil, nil
		case <-ctx.Done():
			unsubscribe()
			a.write(s, errorEnvelope(errShutdown.Error()))
			return nil, nil
		}
	}
}
