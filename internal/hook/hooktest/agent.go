// Package hooktest provides a listener that speaks karmord's protocol for tests of karmor-hook:
// it acknowledges events (or, for deadline tests, accepts and never answers) and hands every
// event it received to the test.
package hooktest

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Agent is a test listener on a unix socket.
type Agent struct {
	Socket string
	// Events receives each event the agent read, acknowledged or not.
	Events chan *agentapi.Event

	ln      net.Listener
	silent  bool
	mu      sync.Mutex
	seq     uint64
	wg      sync.WaitGroup
	conns   []net.Conn
	closing bool
}

// Start listens on a fresh socket and acknowledges every event with an increasing sequence
// number. It stops when the test ends.
func Start(t testing.TB) *Agent { return start(t, false) }

// StartSilent listens on a fresh socket, reads each event and never answers, like a hung agent.
func StartSilent(t testing.TB) *Agent { return start(t, true) }

func start(t testing.TB, silent bool) *Agent {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; test temp dirs named after long test names
	// can exceed that, so the socket gets a short directory of its own.
	dir, err := os.MkdirTemp("", "khs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Socket: sock, Events: make(chan *agentapi.Event, 1024), ln: ln, silent: silent}
	a.wg.Add(1)
	go a.serve()
	t.Cleanup(a.Close)
	return a
}

func (a *Agent) serve() {
	defer a.wg.Done()
	for {
		conn, err := a.ln.Accept()
		if err != nil {
			return
		}
		a.mu.Lock()
		if a.closing {
			a.mu.Unlock()
			conn.Close()
			return
		}
		a.conns = append(a.conns, conn)
		a.mu.Unlock()
		a.wg.Add(1)
		go a.handle(conn)
	}
}

func (a *Agent) handle(conn net.Conn) {
	defer a.wg.Done()
	defer conn.Close()
	for {
		env, err := agentapi.ReadFrame(conn, 0)
		if err != nil {
			return
		}
		if env.Type != agentapi.TypeEvent {
			if env.Type == agentapi.TypeList {
				_ = agentapi.WriteFrame(conn, &agentapi.Envelope{Type: agentapi.TypeContainers})
				continue
			}
			_ = agentapi.WriteFrame(conn, &agentapi.Envelope{Type: agentapi.TypeError, Error: "test agent: unsupported " + env.Type})
			continue
		}
		a.Events <- env.Event
		if a.silent {
			continue // keep the connection open and never answer
		}
		a.mu.Lock()
		a.seq++
		seq := a.seq
		a.mu.Unlock()
		if err := agentapi.WriteFrame(conn, &agentapi.Envelope{Type: agentapi.TypeAck, Seq: seq}); err != nil {
			return
		}
	}
}

// Close stops the listener and drops open connections.
func (a *Agent) Close() {
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return
	}
	a.closing = true
	conns := a.conns
	a.mu.Unlock()
	a.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	a.wg.Wait()
}

// Next returns the next event, failing the test when none arrives within wait.
func (a *Agent) Next(t testing.TB, wait time.Duration) *agentapi.Event {
	t.Helper()
	select {
	case ev := <-a.Events:
		return ev
	case <-time.After(wait):
		t.Fatalf("test agent at %s: no event within %v", a.Socket, wait)
		return nil
	}
}

// ErrNoEvent is returned by TryNext when no event is waiting.
var ErrNoEvent = errors.New("no event")

// TryNext returns a waiting event without blocking.
func (a *Agent) TryNext() (*agentapi.Event, error) {
	select {
	case ev := <-a.Events:
		return ev, nil
	default:
		return nil, ErrNoEvent
	}
}
