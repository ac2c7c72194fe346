package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// karmord is the real karmord binary with private paths; it can be started, killed and
// restarted on the same socket, spool and state.
type karmord struct {
	bin      string
	Socket   string
	SpoolDir string
	StateDir string
	LogPath  string
	extra    []string
	runtime  string
	cmd      *exec.Cmd
	exited   chan error
	Client   *agentapi.Client
}

// newKarmord prepares a karmord reconciling with runtimeRoot; it is not started.
func newKarmord(t *testing.T, runtimeRoot string, extra ...string) *karmord {
	t.Helper()
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "kr-")
	if err != nil {
		t.Fatal(err)
	}
	k := &karmord{bin: testutil.Binary(t, "karmord"), Socket: filepath.Join(dir, "run", "karmor.sock"), SpoolDir: filepath.Join(dir, "spool"),
		StateDir: filepath.Join(dir, "state"), LogPath: filepath.Join(dir, "karmord.log"), extra: extra, runtime: runtimeRoot}
	k.Client = agentapi.NewClient(k.Socket)
	t.Cleanup(func() {
		k.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(k.LogPath)
			t.Logf("karmord log (last lines):\n%s", tail(string(b), 60))
		}
		os.RemoveAll(dir)
	})
	return k
}

// start runs karmord and waits until it answers.
func (k *karmord) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{"--socket", k.Socket, "--spool-dir", k.SpoolDir, "--state-dir", k.StateDir,
		"--runtime-root", k.runtime, "--log-level", "debug"}, k.extra...)
	k.cmd = exec.Command(k.bin, args...)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- k.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := k.Client.List(ctx)
		cancel()
		if err == nil {
			break
		}
		select {
		case werr := <-exited:
			b, _ := os.ReadFile(k.LogPath)
			k.cmd = nil
			t.Fatalf("karmord exited (%v):\n%s", werr, tail(string(b), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmord did not answer within 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The goroutine above waits for the process; signal reads its result.
	k.exited = exited
}

// kill ends karmord with SIGKILL: no cleanup, its socket stays behind.
func (k *karmord) kill(t *testing.T) {
	t.Helper()
	k.signal(t, syscall.SIGKILL)
}

// stop ends karmord with SIGTERM, if it runs.
func (k *karmord) stop(t *testing.T) {
	t.Helper()
	k.signal(t, syscall.SIGTERM)
}

func (k *karmord) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if k.cmd == nil {
		return
	}
	_ = syscall.Kill(k.cmd.Process.Pid, sig)
	select {
	case <-k.exited:
	case <-time.After(20 * time.Second):
		t.Errorf("karmord did not exit within 20s of %v", sig)
	}
	k.cmd = nil
}

func (k *karmord) list(t *testing.T) []agentapi.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := k.Client.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// waitTable polls karmord's table until cond holds, and returns it.
func (k *karmord) waitTable(t *testing.T, what string, cond func([]agentapi.Container) bool) []agentapi.Container {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		list := k.list(t)
		if cond(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmord's table never showed %s; it holds: %s", what, describe(list))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func describe(list []agentapi.Container) string {
	var out []string
	for _, c := range list {
		out = append(out, fmt.Sprintf("%s(pid %d, %s)", c.ID, c.PID, c.Source))
	}
	if len(out) == 0 {
		return "nothing"
	}
	return strings.Join(out, ", ")
}

func find(list []agentapi.Container, id string) *agentapi.Container {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}

// eventLog collects a karmord's event stream.
type eventLog struct {
	mu     sync.Mutex
	events []agentapi.Event
}

// watchEvents streams karmord's events into a log until the test ends.
func (k *karmord) watchEvents(t *testing.T) *eventLog {
	t.Helper()
	l := &eventLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = k.Client.Watch(ctx, 0, func(env *agentapi.Envelope) error {
			l.mu.Lock()
			l.events = append(l.events, *env.Event)
			l.mu.Unlock()
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// wait returns the first event of kind for id, waiting for it.
func (l *eventLog) wait(t *testing.T, kind, id string) agentapi.Event {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.mu.Lock()
		for _, ev := range l.events {
			if ev.Kind == kind && ev.Container.ID == id {
				l.mu.Unlock()
				return ev
			}
		}
		n := len(l.events)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s among karmord's %d events", kind, id, n)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// runc drives real runc with a private state root.
type runc struct {
	root string
}

func newRunc(t *testing.T) *runc {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "runc", "apt-get install runc")
	root, err := os.MkdirTemp("", "kr-runc-")
	if err != nil {
		t.Fatal(err)
	}
	r := &runc{root: root}
	t.Cleanup(func() {
		for id := range r.listAll(t) {
			_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
		os.RemoveAll(root)
	})
	return r
}

// run runs runc with output through a file: a detached container inherits runc's stdout and
// would hold a pipe open.
func (r *runc) run(args ...string) (string, error) {
	out, err := os.CreateTemp("", "kr-runc-out-")
	if err != nil {
		return "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", r.root}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	if err != nil {
		return string(b), fmt.Errorf("runc %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

func (r *runc) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := r.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runcEntry is one line of `runc list --format json`.
type runcEntry struct {
	ID     string `json:"id"`
	PID    int    `json:"pid"`
	Status string `json:"status"`
}

// listAll returns every container runc knows under the root, by id.
func (r *runc) listAll(t *testing.T) map[string]runcEntry {
	t.Helper()
	out, err := exec.Command("runc", "--root", r.root, "list", "--format", "json").Output()
	if err != nil {
		t.Fatalf("runc list: %v", err)
	}
	var entries []runcEntry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("runc list: %v\n%s", err, out)
	}
	m := map[string]runcEntry{}
	for _, e := range entries {
		m[e.ID] = e
	}
	return m
}

// live returns the ids of the containers runc says are running (or created: their init runs).
func (r *runc) live(t *testing.T) map[string]runcEntry {
	t.Helper()
	m := r.listAll(t)
	for id, e := range m {
		if e.Status != "running" && e.Status != "created" {
			delete(m, id)
		}
	}
	return m
}

func (r *runc) pid(t *testing.T, id string) int {
	t.Helper()
	var st struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(r.must(t, "state", id)), &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

// hookedBundle makes a busybox bundle running args whose config.json runs karmor-hook, put there
// by `karmor hook inject`, reporting to k.
func hookedBundle(t *testing.T, k *karmord, args ...string) string {
	t.Helper()
	bundle := testutil.Bundle(t, args, nil)
	out, err := exec.Command(testutil.Binary(t, "karmor"), "hook", "inject", bundle, "--hook-path", testutil.Binary(t, "karmor-hook"),
		"--socket", k.Socket, "--spool-dir", k.SpoolDir, "--timeout", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("karmor hook inject: %v\n%s", err, out)
	}
	return bundle
}

// nsInode is the inode of /proc/<pid>/ns/<kind>.
func nsInode(t *testing.T, pid int, kind string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, kind), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func sortedIDs[V any](m map[string]V) string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}

func tableIDs(list []agentapi.Container) string {
	m := map[string]bool{}
	for _, c := range list {
		m[c.ID] = true
	}
	return sortedIDs(m)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
