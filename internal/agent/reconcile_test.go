package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// fakeProc is a directory shaped like /proc for the pids a test invents.
type fakeProc struct {
	t    testing.TB
	root string
}

func newFakeProc(t testing.TB) *fakeProc {
	root := t.TempDir()
	// btime lets containerinfo compute creation times.
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu  1 2 3\nbtime 1700000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fakeProc{t: t, root: root}
}

// process makes procRoot/<pid>/stat say the process is in state ("S" running, "Z" zombie) and
// started at start clock ticks after boot. The command name holds spaces and parentheses, as
// real ones may.
func (f *fakeProc) process(pid int, state string, start uint64) {
	dir := filepath.Join(f.root, fmt.Sprint(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	fields := []string{state}
	for range 18 {
		fields = append(fields, "1")
	}
	fields = append(fields, fmt.Sprint(start), "0", "0")
	line := fmt.Sprintf("%d (a (weird) name) %s\n", pid, strings.Join(fields, " "))
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte("0::/karmor-test/"+fmt.Sprint(pid)+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) exit(pid int) {
	if err := os.RemoveAll(filepath.Join(f.root, fmt.Sprint(pid))); err != nil {
		f.t.Fatal(err)
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runcStateFile writes root/<id>/state.json the way runc lays it out (the fields karmord reads
// and a few it does not).
func runcStateFile(t testing.TB, root, id string, pid int, start uint64, bundle string) {
	writeJSON(t, filepath.Join(root, id, "state.json"), map[string]any{
		"id": id, "init_process_pid": pid, "init_process_start": start, "created": "2026-01-02T03:04:05.123456789Z",
		"config":       map[string]any{"labels": []string{"bundle=" + bundle}, "rootfs": bundle + "/rootfs"},
		"cgroup_paths": map[string]string{"pids": "/sys/fs/cgroup/pids/" + id}, "rootless": false,
	})
}

func bundleWithAnnotationsAt(t testing.TB, dir string, ann map[string]string) string {
	writeJSON(t, filepath.Join(dir, "config.json"), map[string]any{"ociVersion": "1.0.2", "annotations": ann,
		"process": map[string]any{"args": []string{"sleep"}, "cwd": "/"}})
	return dir
}

func TestReconcileWithFakeStateRoots(t *testing.T) {
	cfg, logs := testConfig(t)
	proc := newFakeProc(t)
	cfg.ProcRoot = proc.root
	state := t.TempDir()
	runcRoot := filepath.Join(state, "runc")
	crunRoot := filepath.Join(state, "containerd-k8s.io")
	cfg.RuntimeRoots = []string{runcRoot, filepath.Join(state, "containerd-*"), filepath.Join(state, "absent")}

	// containerd's CRI plugin lays the bundle out as <state>/io.containerd.runtime.v2.task/k8s.io/<id>.
	pod := bundleWithAnnotationsAt(t, filepath.Join(t.TempDir(), "io.containerd.runtime.v2.task", "k8s.io", "live"),
		map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-name": "web-0",
			"io.kubernetes.cri.sandbox-namespace": "shop", "io.kubernetes.cri.container-name": "nginx"})
	proc.process(1001, "S", 500)
	runcStateFile(t, runcRoot, "live", 1001, 500, pod)
	proc.process(1002, "S", 999) // the pid now belongs to a process that started later
	runcStateFile(t, runcRoot, "reused", 1002, 600, pod)
	runcStateFile(t, runcRoot, "gone", 1003, 700, pod)
	proc.process(1004, "Z", 800)
	runcStateFile(t, runcRoot, "zombie", 1004, 800, pod)
	proc.process(1005, "S", 900)
	writeJSON(t, filepath.Join(crunRoot, "crunned", "status"), map[string]any{"pid": 1005, "process-start-time": 900,
		"bundle": "/nonexistent/bundle", "created": "2026-01-02T03:04:06Z", "cgroup-path": "/x"})
	if err := os.MkdirAll(filepath.Join(runcRoot, "broken"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runcRoot, "broken", "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	proc.process(1006, "S", 100)
	runcStateFile(t, runcRoot, "impostor", 1006, 100, pod)
	writeJSON(t, filepath.Join(runcRoot, "impostor", "state.json"), map[string]any{"id": "someone-else", "init_process_pid": 1006, "init_process_start": 100})
	if err := os.MkdirAll(filepath.Join(runcRoot, "empty-dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What the hooks had said before: one container whose pid was reused, one whose process
	// exited, one still running, and one with no pid (which nothing can disprove).
	proc.process(2001, "S", 1234)
	proc.process(2003, "S", 42)
	for _, c := range []agentapi.Container{{ID: "reused-pid", PID: 2001, PIDStart: 1000}, {ID: "exited", PID: 2002, PIDStart: 5},
		{ID: "running", PID: 2003, PIDStart: 42}, {ID: "no-pid"}} {
		a.apply(agentapi.Event{Kind: agentapi.KindStart, Source: agentapi.SourceHook, Time: time.Now(), Container: c})
	}

	added, removed := a.reconcile()
	if added != 2 || removed != 2 {
		t.Fatalf("reconcile added %d removed %d, want 2 and 2", added, removed)
	}
	list, _ := a.snapshot()
	if got := ids(list); got != "crunned,live,no-pid,running" {
		t.Fatalf("table %q, want crunned,live,no-pid,running", got)
	}
	live := list[1]
	if live.Source != agentapi.SourceReconcile || live.PID != 1001 || live.PIDStart != 500 || live.Pod != "web-0" ||
		live.Namespace != "shop" || live.Name != "nginx" || live.Bundle != pod || live.CgroupPath != "/karmor-test/1001" {
		t.Fatalf("reconciled container %+v", live)
	}
	if live.Created.IsZero() {
		t.Fatal("reconciled container has no creation time")
	}
	if crun := list[0]; crun.PID != 1005 || crun.PIDStart != 900 || crun.Source != agentapi.SourceReconcile {
		t.Fatalf("crun container %+v", crun)
	}
	if counter(t, a, "reconcile", "added") != 2 || counter(t, a, "reconcile", "removed") != 2 {
		t.Fatal("reconcile metrics do not match")
	}
	if got := counter(t, a, "errors", errKindReconcile); got != 2 {
		t.Fatalf("%v reconcile errors counted, want 2 (broken, impostor)", got)
	}
	for _, want := range []string{"malformed runc state", "someone-else"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}

	// A second pass changes nothing; then the live container exits and the next pass drops it.
	if added, removed := a.reconcile(); added != 0 || removed != 0 {
		t.Fatalf("second pass added %d removed %d", added, removed)
	}
	proc.exit(1001)
	if _, removed := a.reconcile(); removed != 1 {
		t.Fatalf("exited container: removed %d", removed)
	}
	// Its state.json is still there (runc keeps it until delete), but the process is gone: it
	// must not come back.
	if added, _ := a.reconcile(); added != 0 {
		t.Fatal("a stopped container came back")
	}
}

// TestPeriodicReconcileDropsVanishedContainers: a container whose poststop never came is dropped
// by the periodic pass.
func TestPeriodicReconcileDropsVanishedContainers(t *testing.T) {
	cfg, _ := testConfig(t)
	proc := newFakeProc(t)
	cfg.ProcRoot = proc.root
	cfg.ReconcileInterval = 20 * time.Millisecond
	runAgent(t, cfg)
	proc.process(3001, "S", 77)
	cl := client(cfg)
	ctx := ctxT(t)
	if _, err := cl.Report(ctx, &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "silent", PID: 3001, PIDStart: 77}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a few passes: the process is alive, the container stays
	if _, err := cl.Get(ctx, "silent"); err != nil {
		t.Fatalf("live container dropped: %v", err)
	}
	proc.exit(3001)
	waitFor(t, "the vanished container to be dropped", func() bool {
		list, err := cl.List(ctx)
		return err == nil && len(list) == 0
	})
}

func TestFlexibleUint(t *testing.T) {
	for in, want := range map[string]uint64{`123`: 123, `"456"`: 456, `null`: 0, `""`: 0} {
		var f flexibleUint
		if err := f.UnmarshalJSON([]byte(in)); err != nil || uint64(f) != want {
			t.Errorf("%s: %d, %v", in, f, err)
		}
	}
	for _, in := range []string{`-1`, `"x"`, `1.5`} {
		var f flexibleUint
		if err := f.UnmarshalJSON([]byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}
