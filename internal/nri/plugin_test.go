package nri

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/karmor/karmor/internal/install"
)

var testHook = install.HookConfig{Path: "/usr/local/bin/karmor-hook", Socket: "/run/k.sock", SpoolDir: "/var/spool/k", Timeout: 2 * time.Second,
	AllowNamespaces: []string{"kube-system"}}

func testPod() *api.PodSandbox {
	return &api.PodSandbox{Id: "pod1", Name: "web-1", Namespace: "shop", Uid: "uid-1",
		Labels: map[string]string{"app": "web", "tier": "front", "io.cri-containerd.kind": "sandbox"}}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestAdjust(t *testing.T) {
	ctr := &api.Container{Id: "c1", Name: "main", Annotations: map[string]string{AnnotationPodLabels: `{"app":"spoofed"}`}}
	adj, err := Adjust(testHook, testPod(), ctr)
	if err != nil {
		t.Fatal(err)
	}
	h := adj.GetHooks()
	if len(h.GetCreateRuntime()) != 1 || len(h.GetPoststop()) != 1 || len(h.GetPrestart())+len(h.GetPoststart())+len(h.GetStartContainer())+len(h.GetCreateContainer()) != 0 {
		t.Fatalf("hooks %+v: want one createRuntime and one poststop", h)
	}
	// Exactly what karmor's hooks.d files and bundle injection run, so the two never drift.
	for stage, got := range map[string]*api.Hook{"createRuntime": h.GetCreateRuntime()[0], "poststop": h.GetPoststop()[0]} {
		want := testHook.OCIHook(stage)
		if got.Path != want.Path || !slices.Equal(got.Args, want.Args) || got.GetTimeout().GetValue() != int64(*want.Timeout) || len(got.Env) != 0 {
			t.Fatalf("%s hook %+v, want %+v", stage, got, want)
		}
		if got.Args[len(got.Args)-1] != stage || !slices.Contains(got.Args, "kube-system") {
			t.Fatalf("%s hook args %q", stage, got.Args)
		}
	}
	ann := adj.GetAnnotations()
	want := map[string]string{
		AnnotationPodLabels:    `{"app":"web","io.cri-containerd.kind":"sandbox","tier":"front"}`,
		AnnotationPodName:      "web-1",
		AnnotationPodNamespace: "shop",
		AnnotationPodUID:       "uid-1",
		AnnotationContainerID:  "c1",
	}
	if !maps.Equal(ann, want) {
		t.Fatalf("annotations\n got %v\nwant %v", ann, want)
	}
}

// A pod's annotations can carry the other runtime's identity keys (containerd passes them
// through, CRI-O copies them): the plugin removes them, and only them (issue 12 item 1).
func TestAdjustRemovesForeignIdentityKeys(t *testing.T) {
	spoofs := map[string]string{
		"io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.pod.name": "x", "io.kubernetes.pod.uid": "x",
		"io.kubernetes.container.name": "x", "io.kubernetes.cri-o.Labels": `{"app":"trusted"}`, "io.container.manager": "cri-o",
		"io.kubernetes.cri-o.ContainerID": "guessed", "io.kubernetes.cri.sandbox-namespace": "kube-system",
		"io.kubernetes.pod.terminationGracePeriod": "30", "team": "sec",
	}
	removed := func(adj *api.ContainerAdjustment) []string {
		var keys []string
		for k := range adj.GetAnnotations() {
			if key, ok := api.IsMarkedForRemoval(k); ok {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		return keys
	}
	// containerd: CRI-O's and kubelet's keys are a pod's; containerd's own are left alone.
	adj, err := Adjust(testHook, testPod(), &api.Container{Id: "c1", Annotations: spoofs})
	if err != nil {
		t.Fatal(err)
	}
	want := "io.container.manager,io.kubernetes.container.name,io.kubernetes.cri-o.ContainerID,io.kubernetes.cri-o.Labels," +
		"io.kubernetes.pod.name,io.kubernetes.pod.namespace,io.kubernetes.pod.uid"
	if got := strings.Join(removed(adj), ","); got != want {
		t.Errorf("under containerd removed %s\nwant %s", got, want)
	}
	// CRI-O, told by its own record of the container's id: containerd's keys are a pod's.
	crio := maps.Clone(spoofs)
	crio["io.kubernetes.cri-o.ContainerID"] = "c1"
	adj, err = Adjust(testHook, testPod(), &api.Container{Id: "c1", Annotations: crio})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(removed(adj), ","); got != "io.kubernetes.cri.sandbox-namespace" {
		t.Errorf("under CRI-O removed %s", got)
	}
	if adj.GetAnnotations()[AnnotationContainerID] != "c1" {
		t.Errorf("no container id: %v", adj.GetAnnotations())
	}
}

func TestAdjustKeepsExistingHook(t *testing.T) {
	for _, path := range []string{"/usr/local/bin/karmor-hook", "/opt/karmor/bin/karmor-hook"} {
		ctr := &api.Container{Id: "c1", Hooks: &api.Hooks{CreateRuntime: []*api.Hook{{Path: path}}}}
		adj, err := Adjust(testHook, testPod(), ctr)
		if err != nil {
			t.Fatal(err)
		}
		if adj.GetHooks() != nil {
			t.Fatalf("hooks added twice when the container already runs %s: %+v", path, adj.GetHooks())
		}
		if adj.GetAnnotations()[AnnotationPodName] != "web-1" {
			t.Fatal("annotations missing when hooks were already present")
		}
	}
	other := &api.Container{Id: "c1", Hooks: &api.Hooks{CreateRuntime: []*api.Hook{{Path: "/usr/bin/other-hook"}}}}
	adj, _ := Adjust(testHook, testPod(), other)
	if len(adj.GetHooks().GetCreateRuntime()) != 1 {
		t.Fatal("another tool's hook stopped karmor's from being added")
	}
}

func TestAdjustRejects(t *testing.T) {
	if _, err := Adjust(testHook, nil, &api.Container{}); err == nil {
		t.Error("nil pod accepted")
	}
	if _, err := Adjust(testHook, testPod(), nil); err == nil {
		t.Error("nil container accepted")
	}
	if _, err := Adjust(install.HookConfig{}, testPod(), &api.Container{}); err == nil {
		t.Error("empty hook configuration accepted")
	}
}

func TestLabelsJSONBounded(t *testing.T) {
	labels := map[string]string{}
	for i := 0; i < 400; i++ {
		labels[strings.Repeat("k", 40)+string(rune('a'+i%26))+strings.Repeat("z", i%7)+string(rune('A'+i/26))] = strings.Repeat("v", 63)
	}
	labels[`quote"and\backslash`] = "\u2028<>&"
	for _, limit := range []int{2, 50, 1000, MaxLabelsJSON} {
		s, err := labelsJSON(labels, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) > limit {
			t.Fatalf("limit %d: %d bytes", limit, len(s))
		}
		var back map[string]string
		if err := json.Unmarshal([]byte(s), &back); err != nil {
			t.Fatalf("limit %d: not JSON: %v", limit, err)
		}
		for k, v := range back {
			if labels[k] != v {
				t.Fatalf("limit %d: label %q=%q was changed", limit, k, v)
			}
		}
		if limit == MaxLabelsJSON && len(back) < 100 {
			t.Fatalf("only %d labels kept in %d bytes", len(back), limit)
		}
	}
	if s, _ := labelsJSON(nil, MaxLabelsJSON); s != "{}" {
		t.Fatalf("no labels: %q", s)
	}
}

func FuzzLabelsJSON(f *testing.F) {
	f.Add("app", "web", "x", "\xff", 100)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, limit int) {
		limit = 2 + abs(limit)%4096
		s, err := labelsJSON(map[string]string{k1: v1, k2: v2}, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(s) > limit || !json.Valid([]byte(s)) {
			t.Fatalf("limit %d: %q", limit, s)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

func TestCreateContainerFailsOpen(t *testing.T) {
	p := NewPlugin(Config{}, quietLogger(), nil) // no hook path: every adjustment fails
	adj, upd, err := p.CreateContainer(context.Background(), testPod(), &api.Container{Id: "c1"})
	if adj != nil || upd != nil || err != nil {
		t.Fatalf("got %v %v %v, want no adjustment and no error", adj, upd, err)
	}
	if a, f := p.Stats(); a != 0 || f != 1 {
		t.Fatalf("stats adjusted=%d failed=%d", a, f)
	}
}

// nriRuntime is NRI's runtime side (the code containerd and CRI-O embed) in this process.
type nriRuntime struct {
	*adaptation.Adaptation
	socket string
}

func startNRIRuntime(t *testing.T, dir string) *nriRuntime {
	t.Helper()
	sync := func(ctx context.Context, cb adaptation.SyncCB) error { _, err := cb(ctx, nil, nil); return err }
	update := func(context.Context, []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
		return nil, nil
	}
	socket := filepath.Join(dir, "nri.sock")
	r, err := adaptation.New("test-runtime", "v0", sync, update,
		adaptation.WithSocketPath(socket), adaptation.WithPluginPath(t.TempDir()), adaptation.WithPluginConfigPath(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	return &nriRuntime{Adaptation: r, socket: socket}
}

func init() { nrilog.Set(slogAdapter{quietLogger()}) }

// The plugin registers with a real NRI runtime started after it, adjusts containers, and comes
// back by itself after the runtime's process dies and starts again. The runtime runs in a child
// process (this test binary, see TestMain) so that its death closes the connection as a
// containerd restart does.
func TestRunReconnects(t *testing.T) {
	dir := t.TempDir()
	socket := filepath.Join(dir, "nri.sock")
	p := NewPlugin(Config{Hook: testHook}, quietLogger(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, p, RunOptions{Socket: socket, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: quietLogger()})
	}()

	rt := startRuntimeProcess(t, socket) // after the plugin: it must wait and retry
	adj := rt.createUntilAdjusted(t, "c1")
	if got := adj.GetHooks().GetCreateRuntime(); len(got) != 1 || got[0].Path != testHook.Path {
		t.Fatalf("createRuntime hooks through NRI: %+v", got)
	}
	if got := adj.GetAnnotations()[AnnotationPodLabels]; got != `{"app":"web","io.cri-containerd.kind":"sandbox","tier":"front"}` {
		t.Fatalf("labels through NRI: %q", got)
	}

	rt.kill(t) // the runtime dies ...
	rt = startRuntimeProcess(t, socket)
	rt.createUntilAdjusted(t, "c2") // ... and the plugin is back without help
	rt.kill(t)

	if adjusted, failed := p.Stats(); adjusted < 2 || failed != 0 {
		t.Fatalf("stats adjusted=%d failed=%d", adjusted, failed)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// envRuntimeSocket makes this test binary act as an NRI runtime on that socket (see TestMain).
const envRuntimeSocket = "KARMOR_NRI_TEST_RUNTIME_SOCKET"

func TestMain(m *testing.M) {
	if socket := os.Getenv(envRuntimeSocket); socket != "" {
		os.Exit(serveRuntime(socket))
	}
	os.Exit(m.Run())
}

// serveRuntime runs NRI's runtime side on socket and answers each container id read from stdin
// with the JSON of the adjustment the plugins made, one line each.
func serveRuntime(socket string) int {
	// An empty plugin dir in the test's directory: this process is killed, not cleaned up after.
	empty, err := os.MkdirTemp(filepath.Dir(socket), "plugins-")
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	r, err := adaptation.New("test-runtime", "v0",
		func(ctx context.Context, cb adaptation.SyncCB) error { _, err := cb(ctx, nil, nil); return err },
		func(context.Context, []*adaptation.ContainerUpdate) ([]*adaptation.ContainerUpdate, error) {
			return nil, nil
		},
		adaptation.WithSocketPath(socket), adaptation.WithPluginPath(empty), adaptation.WithPluginConfigPath(empty))
	if err == nil {
		err = r.Start()
	}
	if err != nil {
		fmt.Println("ERROR", err)
		return 1
	}
	fmt.Println("READY")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		resp, err := r.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: testPod(),
			Container: &api.Container{Id: sc.Text(), PodSandboxId: "pod1", Name: "main"}})
		if err != nil {
			fmt.Println("ERROR", err)
			continue
		}
		b, _ := protojson.Marshal(resp.GetAdjust())
		fmt.Println(string(b))
	}
	return 0
}

type runtimeProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startRuntimeProcess(t *testing.T, socket string) *runtimeProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRuntimeSocket+"="+socket)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rp := &runtimeProcess{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(func() { rp.kill(t) })
	if !rp.out.Scan() || rp.out.Text() != "READY" {
		t.Fatalf("NRI runtime process did not start: %q", rp.out.Text())
	}
	return rp
}

func (rp *runtimeProcess) kill(t *testing.T) {
	if rp.cmd.ProcessState != nil {
		return
	}
	_ = rp.cmd.Process.Kill()
	_ = rp.cmd.Wait()
}

// createUntilAdjusted asks the runtime to create a container until a plugin answers with
// annotations (it may not have registered yet) and returns the adjustment.
func (rp *runtimeProcess) createUntilAdjusted(t *testing.T, id string) *api.ContainerAdjustment {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := fmt.Fprintln(rp.stdin, id); err != nil {
			t.Fatal(err)
		}
		if !rp.out.Scan() {
			t.Fatal("NRI runtime process ended")
		}
		line := rp.out.Text()
		if strings.HasPrefix(line, "ERROR") {
			t.Fatalf("runtime's CreateContainer: %s", line)
		}
		adj := &api.ContainerAdjustment{}
		if err := protojson.Unmarshal([]byte(line), adj); err != nil {
			t.Fatalf("adjustment %q: %v", line, err)
		}
		if adj.GetAnnotations()[AnnotationPodName] != "" {
			return adj
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin never adjusted a container")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A plugin that cannot build an adjustment leaves containers to be created unchanged.
func TestRunFailsOpenThroughNRI(t *testing.T) {
	dir := t.TempDir()
	rt := startNRIRuntime(t, dir)
	defer rt.Stop()
	p := NewPlugin(Config{}, quietLogger(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = Run(ctx, p, RunOptions{Socket: rt.socket, MinBackoff: 10 * time.Millisecond, Logger: quietLogger()})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := rt.CreateContainer(context.Background(), &adaptation.CreateContainerRequest{Pod: testPod(), Container: &api.Container{Id: "c1", PodSandboxId: "pod1"}})
		if err != nil {
			t.Fatalf("the runtime's CreateContainer failed: %v", err)
		}
		if _, failed := p.Stats(); failed > 0 {
			if h := resp.GetAdjust().GetHooks(); len(resp.GetAdjust().GetAnnotations()) != 0 || len(h.GetCreateRuntime())+len(h.GetPoststop()) != 0 {
				t.Fatalf("a failed adjustment changed the container: %+v", resp.GetAdjust())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin never received the request")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRunRejectsBadIndex(t *testing.T) {
	if err := Run(context.Background(), NewPlugin(Config{Hook: testHook}, nil, nil), RunOptions{Index: "1x", Socket: "/nonexistent"}); err == nil {
		t.Fatal("index 1x accepted")
	}
}
