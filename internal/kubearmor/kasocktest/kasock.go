// Package kasocktest stands in for KubeArmor's ka.sock listener in tests. It reproduces what
// KubeArmor/core/hook_handlier_non_k8s.go does (one 4096-byte read per message, "ok"/"err"
// answers, the ready gate that opens when a connection that carried a detached message closes,
// creates of known ids and deletes of unknown ones ignored), so that what the real KubeArmor
// cannot be made to do on demand (a message over 4 KiB, a dropped connection, a gate that stays
// shut) can be tested. Its message types are KubeArmor's, written from KubeArmor's side of the
// protocol (types.HookRequest, types.Container), independently of the encoder under test. The
// real KubeArmor is exercised by test/e2e/runtime (its protocol, on this host) and
// test/e2e/kubearmor (enforcement, in a QEMU guest).
package kasocktest

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// Request is KubeArmor's HookRequest.
type Request struct {
	Operation int       `json:"operation"` // 0 create, 1 delete
	Detached  bool      `json:"detached"`
	Container Container `json:"container"`
}

// Container holds the fields of KubeArmor's Container a hook sends.
type Container struct {
	ContainerID     string `json:"containerID"`
	ContainerName   string `json:"containerName"`
	ContainerImage  string `json:"containerImage"`
	NamespaceName   string `json:"namespaceName"`
	EndPointName    string `json:"endPointName"`
	Labels          string `json:"labels"`
	AppArmorProfile string `json:"apparmorProfile"`
	Privileged      bool   `json:"privileged"`
	PidNS           uint32 `json:"pidns"`
	MntNS           uint32 `json:"mntns"`
	Pid             uint32 `json:"pid"`
}

// Listener is one KubeArmor's ka.sock.
type Listener struct {
	ln net.Listener

	// Ready is KubeArmor's ready gate; tests may shut it again.
	Ready atomic.Bool
	// DropAfter makes the listener close a connection, unanswered, at its Nth message (0: never).
	DropAfter atomic.Int64

	mu         sync.Mutex
	containers map[string]Container
	log        []Request
	bad        []string
	answers    map[string]int
	wg         sync.WaitGroup
}

// Start listens on path (creating its directory) until Close or the end of the test.
func Start(t testing.TB, path string) *Listener {
	t.Helper()
	k, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// Listen listens on path (creating its directory) until Close; for programs outside tests
// (bench/kubearmor's stand-in KubeArmor).
func Listen(path string) (*Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	k := &Listener{ln: ln, containers: map[string]Container{}, answers: map[string]int{}}
	k.wg.Add(1)
	go k.serve()
	return k, nil
}

// Close stops listening and waits for the connections to end; KubeArmor's socket file is
// removed as a stopping KubeArmor removes it.
func (k *Listener) Close() {
	k.ln.Close()
	k.wg.Wait()
}

func (k *Listener) serve() {
	defer k.wg.Done()
	for {
		conn, err := k.ln.Accept()
		if err != nil {
			return
		}
		k.wg.Add(1)
		go k.handle(conn)
	}
}

func (k *Listener) handle(conn net.Conn) {
	defer k.wg.Done()
	defer conn.Close()
	sawDetached := false
	defer func() {
		if sawDetached {
			k.Ready.Store(true)
		}
	}()
	buf := make([]byte, 4096)
	var n int64
	for {
		m, err := conn.Read(buf)
		if err != nil {
			return
		}
		n++
		if d := k.DropAfter.Load(); d > 0 && n >= d {
			return
		}
		var r Request
		// A message over 4096 bytes arrives in pieces, and the pieces are not JSON.
		if err := json.Unmarshal(buf[:m], &r); err != nil || m == len(buf) {
			k.mu.Lock()
			k.bad = append(k.bad, string(buf[:m]))
			k.mu.Unlock()
		}
		answer := "ok"
		if r.Detached {
			sawDetached = true
		} else if !k.Ready.Load() {
			answer = "err"
		}
		k.mu.Lock()
		k.log = append(k.log, r)
		k.answers[answer]++
		if answer == "ok" {
			switch {
			case r.Operation == 0 && r.Container.ContainerID != "":
				if _, ok := k.containers[r.Container.ContainerID]; !ok {
					k.containers[r.Container.ContainerID] = r.Container
				}
			case r.Operation == 1:
				delete(k.containers, r.Container.ContainerID)
			}
		}
		k.mu.Unlock()
		if _, err := conn.Write([]byte(answer)); err != nil {
			return
		}
	}
}

// Containers returns the containers the listener holds, by id.
func (k *Listener) Containers() map[string]Container {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]Container, len(k.containers))
	for id, c := range k.containers {
		out[id] = c
	}
	return out
}

// Messages returns every message received, in order.
func (k *Listener) Messages() []Request {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Request(nil), k.log...)
}

// BadMessages returns the messages that were not one JSON object within 4096 bytes.
func (k *Listener) BadMessages() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.bad...)
}

// Answered counts the answers given ("ok" or "err").
func (k *Listener) Answered(a string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.answers[a]
}

// Silent listens on path and reads whatever arrives without ever answering, like a KubeArmor
// that hangs.
func Silent(t testing.TB, path string) net.Listener {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	return ln
}
