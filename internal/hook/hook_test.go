package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/hook/hooktest"
	"github.com/karmor/karmor/pkg/agentapi"
)

func TestParseArgs(t *testing.T) {
	o, err := ParseArgs([]string{"--socket", "/s", "--spool-dir=/sp", "--timeout", "300ms", "createRuntime", "--fail-closed",
		"--allow-namespace", "kube-system", "--allow-namespace", "karmor", "--allow-annotation", "k=v", "--log-file", "/l", "--proc-root", "/p"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Socket != "/s" || o.SpoolDir != "/sp" || o.Timeout != 300*time.Millisecond || o.Stage != "createRuntime" || !o.FailClosed ||
		strings.Join(o.AllowNamespaces, ",") != "kube-system,karmor" || strings.Join(o.AllowAnnotations, ",") != "k=v" ||
		o.LogFile != "/l" || o.ProcRoot != "/p" {
		t.Fatalf("parsed %+v", o)
	}
	o, err = ParseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Stage != "" || o.Socket != agentapi.DefaultSocket || o.SpoolDir != agentapi.DefaultSpoolDir || o.Timeout != DefaultTimeout || o.FailClosed {
		t.Fatalf("defaults %+v", o)
	}
	for _, stage := range []string{"createRuntime", "prestart", "poststart", "poststop"} {
		if o, err := ParseArgs([]string{stage}); err != nil || o.Stage != stage {
			t.Errorf("stage %s: %+v %v", stage, o, err)
		}
	}
	bad := [][]string{
		{"createContainer"},
		{"createRuntime", "poststop"},
		{"--timeout", "0s"},
		{"--timeout", "-1s", "poststop"},
		{"--socket", ""},
		{"--spool-dir="},
		{"--no-such-flag"},
		{"--allow-annotation", "=v"},
		{"--timeout", "soon"},
	}
	for _, args := range bad {
		if o, err := ParseArgs(args); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: got %+v, %v; want a usage error", args, o, err)
		}
	}
}

func TestKindForStageAndStatus(t *testing.T) {
	for stage, want := range map[string]string{"createRuntime": "start", "prestart": "start", "poststart": "start", "poststop": "stop", "createContainer": "", "": ""} {
		if got := KindForStage(stage); got != want {
			t.Errorf("stage %q: %q, want %q", stage, got, want)
		}
	}
	for status, want := range map[rspec.ContainerState]string{"creating": "start", "created": "start", "running": "start", "stopped": "stop", "paused": "", "": ""} {
		if got := kindForStatus(status); got != want {
			t.Errorf("status %q: %q, want %q", status, got, want)
		}
	}
}

// scene is a container as a runtime would present it to the hook: a bundle with config.json, a
// /proc tree for its pid, and the state JSON.
type scene struct {
	bundle, proc string
	pid          int
	state        rspec.State
}

func newScene(t testing.TB, specAnnotations, stateAnnotations map[string]string) *scene {
	t.Helper()
	return newSceneAt(t, t.TempDir(), "c1", specAnnotations, stateAnnotations)
}

// newSceneAt is newScene for container id with its bundle in the directory bundle (created).
func newSceneAt(t testing.TB, bundle, id string, specAnnotations, stateAnnotations map[string]string) *scene {
	t.Helper()
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &scene{bundle: bundle, proc: t.TempDir(), pid: 4321}
	spec := rspec.Spec{
		Version:     rspec.Version,
		Process:     &rspec.Process{Args: []string{"sh"}, ApparmorProfile: "karmor-test"},
		Linux:       &rspec.Linux{CgroupsPath: "/karmor/c1"},
		Annotations: specAnnotations,
	}
	writeJSON(t, filepath.Join(s.bundle, "config.json"), &spec)
	dir := filepath.Join(s.proc, strconv.Itoa(s.pid))
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "stat"), fmt.Sprintf("%d (runc:[2:INIT]) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 777 0 0\n", s.pid))
	for i, kind := range containerinfo.NamespaceKinds {
		if err := os.Symlink(fmt.Sprintf("%s:[%d]", kind, 4026532000+i), filepath.Join(dir, "ns", kind)); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(dir, "cgroup"), "0::/karmor/c1\n")
	write(t, filepath.Join(s.proc, "uptime"), "5000.00 9000.00\n")
	s.state = rspec.State{Version: rspec.Version, ID: id, Status: rspec.StateCreating, Pid: s.pid, Bundle: s.bundle, Annotations: stateAnnotations}
	return s
}

func (s *scene) stdin(t *testing.T) *bytes.Reader {
	b, err := json.Marshal(&s.state)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

func (s *scene) opts(socket, spool string, extra ...string) Options {
	o, err := ParseArgs(append([]string{"--socket", socket, "--spool-dir", spool, "--proc-root", s.proc}, extra...))
	if err != nil {
		panic(err)
	}
	return o
}

func write(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, string(b))
}

// crioAnnotations returns ann with the keys by which CRI-O is told for container id.
func crioAnnotations(id string, ann map[string]string) map[string]string {
	out := map[string]string{"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": id}
	maps.Copy(out, ann)
	return out
}

func quietLogger(buf *bytes.Buffer, verbose bool) *slog.Logger { return newLogger(buf, verbose) }

func TestStartDelivered(t *testing.T) {
	agent := hooktest.Start(t)
	s := newScene(t, map[string]string{
		"io.container.manager":            "cri-o",
		"io.kubernetes.cri-o.ContainerID": "c1",
		"io.kubernetes.pod.name":          "web-0",
		"io.kubernetes.pod.namespace":     "shop",
		"io.kubernetes.container.name":    "nginx",
		"io.kubernetes.cri-o.Labels":      `{"app":"web"}`,
	}, map[string]string{"io.kubernetes.pod.uid": "u1"})
	spool := t.TempDir()
	var logs bytes.Buffer
	out := Run(context.Background(), s.opts(agent.Socket, spool, "createRuntime"), s.stdin(t), quietLogger(&logs, false), time.Now())
	if !out.Delivered || out.Err != nil || out.Seq != 1 {
		t.Fatalf("outcome %+v; logs:\n%s", out, logs.String())
	}
	if logs.Len() != 0 {
		t.Errorf("not quiet on success:\n%s", logs.String())
	}
	ev := agent.Next(t, 5*time.Second)
	c := ev.Container
	if ev.Kind != agentapi.KindStart || ev.Stage != "createRuntime" || ev.HookDuration <= 0 || ev.Time.IsZero() {
		t.Errorf("event %+v", ev)
	}
	if c.ID != "c1" || c.PID != s.pid || c.PIDStart != 777 || c.Namespaces["net"] != 4026532002 || len(c.Namespaces) != 6 ||
		c.CgroupPath != "/karmor/c1" || c.AppArmor != "karmor-test" || c.Bundle != s.bundle ||
		c.Pod != "web-0" || c.Namespace != "shop" || c.PodUID != "u1" || c.ContainerName != "nginx" || c.Name != "nginx" ||
		c.Labels["app"] != "web" || c.Annotations["io.kubernetes.pod.uid"] != "u1" {
		t.Errorf("container %+v", c)
	}
	if ents, _ := agentapi.ReadSpool(spool); len(ents) != 0 {
		t.Errorf("delivered event was also spooled: %d files", len(ents))
	}
}

func TestStopAndStatusInference(t *testing.T) {
	agent := hooktest.Start(t)
	s := newScene(t, nil, map[string]string{"a": "b"})
	s.state.Status, s.state.Pid = rspec.StateStopped, 0
	var logs bytes.Buffer
	out := Run(context.Background(), s.opts(agent.Socket, t.TempDir()), s.stdin(t), quietLogger(&logs, false), time.Now())
	if !out.Delivered {
		t.Fatalf("outcome %+v; logs:\n%s", out, logs.String())
	}
	ev := agent.Next(t, 5*time.Second)
	if ev.Kind != agentapi.KindStop || ev.Stage != "" || ev.Container.ID != "c1" || ev.Container.PID != 0 ||
		ev.Container.Annotations != nil || ev.Container.Bundle != "" {
		t.Errorf("stop event carries more than id and pid: %+v", ev)
	}
	// With no stage, "creating" is a start.
	s.state.Status, s.state.Pid = rspec.StateCreating, s.pid
	Run(context.Background(), s.opts(agent.Socket, t.TempDir()), s.stdin(t), quietLogger(&logs, false), time.Now())
	if ev := agent.Next(t, 5*time.Second); ev.Kind != agentapi.KindStart || ev.Container.PIDStart != 777 {
		t.Errorf("inferred start %+v", ev)
	}
	// The stage on the command line wins over the status.
	s.state.Status = rspec.StateRunning
	Run(context.Background(), s.opts(agent.Socket, t.TempDir(), "poststop"), s.stdin(t), quietLogger(&logs, false), time.Now())
	if ev := agent.Next(t, 5*time.Second); ev.Kind != agentapi.KindStop || ev.Stage != "poststop" || ev.Container.PID != s.pid {
		t.Errorf("poststop with status running: %+v", ev)
	}
	// Neither stage nor a telling status: nothing sent, failure logged.
	s.state.Status = "paused"
	logs.Reset()
	out = Run(context.Background(), s.opts(agent.Socket, t.TempDir()), s.stdin(t), quietLogger(&logs, false), time.Now())
	if out.Err == nil || out.Event != nil || !strings.Contains(logs.String(), "stage") {
		t.Errorf("paused without a stage: %+v, logs %s", out, logs.String())
	}
}

func TestAgentDownSpools(t *testing.T) {
	s := newScene(t, map[string]string{"io.kubernetes.pod.namespace": "shop"}, nil)
	spool := filepath.Join(t.TempDir(), "spool") // created by the hook
	missing := filepath.Join(t.TempDir(), "no.sock")
	var logs bytes.Buffer
	opts := s.opts(missing, spool, "createRuntime")
	out := Run(context.Background(), opts, s.stdin(t), quietLogger(&logs, false), time.Now())
	if out.Delivered || out.Err == nil || out.SpoolPath == "" {
		t.Fatalf("outcome %+v", out)
	}
	if out.ExitCode(opts) != ExitOK {
		t.Errorf("fail-open hook exits %d", out.ExitCode(opts))
	}
	if !strings.Contains(logs.String(), "spooled") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("logs do not say the event was spooled:\n%s", logs.String())
	}
	ents, err := agentapi.ReadSpool(spool)
	if err != nil || len(ents) != 1 || ents[0].Err != nil {
		t.Fatalf("spool: %v %+v", err, ents)
	}
	if got := ents[0].Event; got.Container.ID != "c1" || got.Container.Namespaces["pid"] != 4026532000 || got.Kind != agentapi.KindStart {
		t.Errorf("spooled %+v", got)
	}
	fi, err := os.Stat(spool)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("spool dir mode %v (%v)", fi.Mode(), err)
	}
}

func TestSlowAgentDeadline(t *testing.T) {
	agent := hooktest.StartSilent(t)
	s := newScene(t, nil, nil)
	spool := t.TempDir()
	timeout := 300 * time.Millisecond
	started := time.Now()
	done := make(chan *Outcome, 1)
	go func() {
		done <- Run(context.Background(), s.opts(agent.Socket, spool, "--timeout", timeout.String(), "createRuntime"), s.stdin(t), quietLogger(new(bytes.Buffer), false), started)
	}()
	var out *Outcome
	select {
	case out = <-done:
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("hook still waiting %v after its %v deadline", 10*time.Second, timeout)
	}
	if elapsed := time.Since(started); elapsed < timeout {
		t.Errorf("gave up after %v, before its %v deadline", elapsed, timeout)
	}
	if ev := agent.Next(t, time.Second); ev.Container.ID != "c1" {
		t.Errorf("agent read %+v", ev)
	}
	if out.Delivered || !errors.Is(out.Err, os.ErrDeadlineExceeded) {
		t.Errorf("outcome %+v, want a deadline error", out)
	}
	if ents, _ := agentapi.ReadSpool(spool); len(ents) != 1 {
		t.Errorf("%d spooled events, want 1", len(ents))
	}
}

func TestFailClosedAndAllowLists(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no.sock")
	ann := map[string]string{"io.kubernetes.pod.namespace": "karmor", "team": "sec"}
	cases := []struct {
		name  string
		args  []string
		stage string
		want  int
	}{
		{"fail-open", nil, "createRuntime", ExitOK},
		{"fail-closed", []string{"--fail-closed"}, "createRuntime", ExitFailed},
		{"allowed namespace", []string{"--fail-closed", "--allow-namespace", "kube-system", "--allow-namespace", "karmor"}, "createRuntime", ExitOK},
		{"other namespace", []string{"--fail-closed", "--allow-namespace", "kube-system"}, "createRuntime", ExitFailed},
		{"annotation key", []string{"--fail-closed", "--allow-annotation", "team"}, "createRuntime", ExitOK},
		{"annotation value", []string{"--fail-closed", "--allow-annotation", "team=sec"}, "createRuntime", ExitOK},
		{"annotation other value", []string{"--fail-closed", "--allow-annotation", "team=web"}, "createRuntime", ExitFailed},
		{"stop never fails", []string{"--fail-closed"}, "poststop", ExitOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newScene(t, crioAnnotations("c1", map[string]string{"io.kubernetes.pod.namespace": "karmor"}), ann)
			spool := t.TempDir()
			opts := s.opts(missing, spool, append(tc.args, tc.stage)...)
			var logs bytes.Buffer
			out := Run(context.Background(), opts, s.stdin(t), quietLogger(&logs, false), time.Now())
			if got := out.ExitCode(opts); got != tc.want {
				t.Errorf("exit %d, want %d; logs:\n%s", got, tc.want, logs.String())
			}
			if ents, _ := agentapi.ReadSpool(spool); len(ents) != 1 {
				t.Errorf("%d spooled events, want 1 (spooled even when refusing)", len(ents))
			}
			if tc.want == ExitFailed && !strings.Contains(logs.String(), "refusing the start") {
				t.Errorf("refusal not logged:\n%s", logs.String())
			}
		})
	}
}

func TestMalformedStdin(t *testing.T) {
	agent := hooktest.Start(t)
	for name, in := range map[string]string{
		"not json":  "{garbage",
		"no id":     `{"status":"creating","pid":1}`,
		"oversized": `{"id":"x","bundle":"` + strings.Repeat("b", containerinfo.MaxStateBytes) + `"}`,
	} {
		for _, failClosed := range []bool{false, true} {
			args := []string{"--socket", agent.Socket, "--spool-dir", t.TempDir(), "createRuntime"}
			if failClosed {
				args = append(args, "--fail-closed")
			}
			var stdout, stderr bytes.Buffer
			code := Main(args, strings.NewReader(in), &stdout, &stderr)
			want := ExitOK
			if failClosed {
				want = ExitFailed
			}
			if code != want || !strings.Contains(stderr.String(), "OCI state") {
				t.Errorf("%s fail-closed=%v: exit %d (want %d), stderr %q", name, failClosed, code, want, stderr.String())
			}
		}
	}
	if ev, err := agent.TryNext(); err == nil {
		t.Errorf("a malformed state reached the agent: %+v", ev)
	}
}

func TestMissingConfigStillReports(t *testing.T) {
	agent := hooktest.Start(t)
	s := newScene(t, nil, crioAnnotations("c1", map[string]string{"io.kubernetes.pod.name": "p"}))
	if err := os.Remove(filepath.Join(s.bundle, "config.json")); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	out := Run(context.Background(), s.opts(agent.Socket, t.TempDir(), "createRuntime"), s.stdin(t), quietLogger(&logs, false), time.Now())
	ev := agent.Next(t, 5*time.Second)
	if !out.Delivered || ev.Container.Pod != "p" || ev.Container.PIDStart != 777 || !strings.Contains(logs.String(), "config.json") {
		t.Errorf("outcome %+v event %+v logs %s", out, ev, logs.String())
	}
}

func TestMainLogFileAndUsage(t *testing.T) {
	s := newScene(t, nil, nil)
	logFile := filepath.Join(t.TempDir(), "hook.log")
	missing := filepath.Join(t.TempDir(), "no.sock")
	agent := hooktest.Start(t)

	// Quiet success: nothing on stderr, no log file created.
	var stdout, stderr bytes.Buffer
	code := Main([]string{"--socket", agent.Socket, "--spool-dir", t.TempDir(), "--proc-root", s.proc, "--log-file", logFile, "createRuntime"}, s.stdin(t), &stdout, &stderr)
	if code != ExitOK || stderr.Len() != 0 || stdout.Len() != 0 {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(logFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("quiet run created the log file: %v", err)
	}
	agent.Next(t, 5*time.Second)

	// Agent down: logged to stderr and appended to the file, twice.
	for range 2 {
		stderr.Reset()
		code = Main([]string{"--socket", missing, "--spool-dir", t.TempDir(), "--proc-root", s.proc, "--log-file", logFile, "createRuntime"}, s.stdin(t), &stdout, &stderr)
		if code != ExitOK || !strings.Contains(stderr.String(), "spooled") {
			t.Fatalf("exit %d stderr %q", code, stderr.String())
		}
	}
	body, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(body), "spooled"); n != 2 {
		t.Errorf("log file holds %d spool lines, want 2:\n%s", n, body)
	}
	if fi, _ := os.Stat(logFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v, want 0600", fi.Mode().Perm())
	}

	// Verbose: success is logged.
	stderr.Reset()
	Main([]string{"--socket", agent.Socket, "--spool-dir", t.TempDir(), "--proc-root", s.proc, "--verbose", "createRuntime"}, s.stdin(t), &stdout, &stderr)
	if !strings.Contains(stderr.String(), "reported") {
		t.Errorf("verbose success not logged: %q", stderr.String())
	}

	// A bad command line lets the container start, unless it asked to fail closed.
	stderr.Reset()
	if code := Main([]string{"--bogus", "createRuntime"}, s.stdin(t), &stdout, &stderr); code != ExitOK || !strings.Contains(stderr.String(), "fix the hook's arguments") {
		t.Errorf("bad args: exit %d stderr %q", code, stderr.String())
	}
	if code := Main([]string{"--bogus", "--fail-closed", "createRuntime"}, s.stdin(t), &stdout, &stderr); code != ExitUsage {
		t.Errorf("bad args with --fail-closed: exit %d, want %d", code, ExitUsage)
	}
	stdout.Reset()
	if code := Main([]string{"--help"}, s.stdin(t), &stdout, &stderr); code != ExitOK || !strings.Contains(stdout.String(), "--spool-dir") && !strings.Contains(stdout.String(), "-spool-dir") {
		t.Errorf("help: exit %d stdout %q", code, stdout.String())
	}
	stdout.Reset()
	if code := Main([]string{"--version"}, s.stdin(t), &stdout, &stderr); code != ExitOK || !strings.HasPrefix(stdout.String(), "karmor-hook ") {
		t.Errorf("version: exit %d stdout %q", code, stdout.String())
	}
}

// A workload that adds another runtime's identity keys to its annotations (containerd passes a
// pod's through, CRI-O copies them, `podman --annotation` sets any) keeps its true identity, and
// `--fail-closed --allow-namespace kube-system` does not let it start as kube-system's
// (issue 12 item 1). Each case is a bundle as its runtime lays it out.
func TestSpoofedIdentityKeepsTrueIdentity(t *testing.T) {
	const id = "9d2c41a7e0b3"
	missing := filepath.Join(t.TempDir(), "no.sock")
	agent := hooktest.Start(t)
	containerd := map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-namespace": "tenant-a",
		"io.kubernetes.cri.sandbox-name": "web-1", "io.kubernetes.cri.sandbox-uid": "u-1", "io.kubernetes.cri.container-name": "main"}
	nri := map[string]string{"karmor.io/container-id": id, "karmor.io/pod-namespace": "tenant-a", "karmor.io/pod-name": "web-1",
		"karmor.io/pod-uid": "u-1", "karmor.io/pod-labels": `{"app":"web"}`}
	crio := crioAnnotations(id, map[string]string{"io.kubernetes.pod.namespace": "tenant-a", "io.kubernetes.pod.name": "web-1",
		"io.kubernetes.pod.uid": "u-1", "io.kubernetes.container.name": "main", "io.kubernetes.cri-o.Labels": `{"app":"web"}`})
	crioSpoofs := map[string]string{"io.kubernetes.pod.namespace": "kube-system", "io.kubernetes.cri-o.Labels": `{"app":"trusted"}`}
	cdSpoofs := map[string]string{"io.kubernetes.cri.sandbox-namespace": "kube-system", "io.kubernetes.cri.container-type": "container"}
	nriSpoofs := map[string]string{"karmor.io/pod-namespace": "kube-system", "karmor.io/pod-labels": `{"app":"trusted"}`, "karmor.io/container-id": "guessed"}
	all := func(sets ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, s := range sets {
			maps.Copy(out, s)
		}
		return out
	}
	cases := []struct {
		name, bundle      string
		ann               map[string]string
		namespace, labels string
	}{
		{"containerd with karmor-nri", "io.containerd.runtime.v2.task/k8s.io/" + id, all(crioSpoofs, containerd, nri), "tenant-a", `{"app":"web"}`},
		{"containerd without NRI", "io.containerd.runtime.v2.task/k8s.io/" + id, all(crioSpoofs, nriSpoofs, containerd), "tenant-a", "null"},
		{"CRI-O hooks.d", "overlay-containers/" + id + "/userdata", all(cdSpoofs, nriSpoofs, crio), "tenant-a", `{"app":"web"}`},
		{"CRI-O with karmor-nri", "overlay-containers/" + id + "/userdata",
			all(cdSpoofs, crio, map[string]string{"io.kubernetes.cri-o.Labels": `{"io.kubernetes.pod.name":"web-1"}`}, nri), "tenant-a", `{"app":"web"}`},
		{"Podman", "overlay-containers/" + id + "/userdata",
			all(crioSpoofs, cdSpoofs, nriSpoofs, map[string]string{"io.container.manager": "libpod", "karmor.io/container-id": id}), "", "null"},
		{"Podman claiming CRI-O", "overlay-containers/" + id + "/userdata",
			all(crioSpoofs, map[string]string{"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": "guessed"}), "", "null"},
		{"plain runc", "bundle", all(crioSpoofs, cdSpoofs, nriSpoofs), "", "null"},
		{"containerd outside CRI", "io.containerd.runtime.v2.task/default/" + id, all(crioSpoofs, cdSpoofs), "", "null"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSceneAt(t, filepath.Join(t.TempDir(), tc.bundle), id, tc.ann, nil)
			var logs bytes.Buffer
			if out := Run(context.Background(), s.opts(agent.Socket, t.TempDir(), "createRuntime"), s.stdin(t), quietLogger(&logs, false), time.Now()); !out.Delivered {
				t.Fatalf("not delivered: %+v\n%s", out, logs.String())
			}
			c := agent.Next(t, 5*time.Second).Container
			labels, _ := json.Marshal(c.Labels)
			if c.Namespace != tc.namespace || string(labels) != tc.labels {
				t.Errorf("namespace %q labels %s, want %q %s", c.Namespace, labels, tc.namespace, tc.labels)
			}
			allow := func(ns string) int {
				opts := s.opts(missing, t.TempDir(), "--fail-closed", "--allow-namespace", ns, "createRuntime")
				return Run(context.Background(), opts, s.stdin(t), quietLogger(&logs, false), time.Now()).ExitCode(opts)
			}
			if got := allow("kube-system"); got != ExitFailed {
				t.Errorf("--fail-closed --allow-namespace kube-system: exit %d, want %d (the spoof was allow-listed)", got, ExitFailed)
			}
			if tc.namespace != "" {
				if got := allow(tc.namespace); got != ExitOK {
					t.Errorf("--allow-namespace %s, its true namespace: exit %d", tc.namespace, got)
				}
			}
		})
	}
}

// With a command line that cannot be parsed, --fail-closed is read as Go's flag package reads a
// bool flag, so that --fail-closed=1 does not let containers start (issue 12 item 6).
func TestBrokenCommandLineFailClosedSpellings(t *testing.T) {
	cases := map[string]int{"": ExitUsage}
	for _, v := range []string{"1", "t", "T", "TRUE", "true", "True"} {
		cases["="+v] = ExitUsage
	}
	for _, v := range []string{"0", "f", "F", "FALSE", "false", "False"} {
		cases["="+v] = ExitOK
	}
	cases["=yes"] = ExitUsage // not a bool: the line asked for the flag; stay closed
	for suffix, want := range cases {
		for _, dashes := range []string{"-", "--"} {
			args := []string{"--bogus", dashes + "fail-closed" + suffix, "createRuntime"}
			var stdout, stderr bytes.Buffer
			if got := Main(args, strings.NewReader("{}"), &stdout, &stderr); got != want {
				t.Errorf("%q: exit %d, want %d", args, got, want)
			}
			// The same spelling on a line that parses means the same to the flag package.
			if o, err := ParseArgs(args[1:]); err == nil && o.FailClosed != (want == ExitUsage) {
				t.Errorf("%q parses to fail-closed=%v, yet a broken line reads it as %v", args[1:], o.FailClosed, want == ExitUsage)
			}
		}
	}
	// As with flag, the last occurrence wins.
	for args, want := range map[string]int{
		"--fail-closed=1 --fail-closed=0": ExitOK,
		"--fail-closed=0 --fail-closed":   ExitUsage,
		"--fail-closed=F -fail-closed=t":  ExitUsage,
		"--fail-closedx=1 ---fail-closed": ExitOK,
	} {
		var stdout, stderr bytes.Buffer
		if got := Main(append([]string{"--bogus"}, strings.Fields(args)...), strings.NewReader("{}"), &stdout, &stderr); got != want {
			t.Errorf("%q: exit %d, want %d", args, got, want)
		}
	}
}

// A full spool: the hook drops the oldest spooled start to make room, never a stop, drops its
// own event when only stops are left, and logs and counts each drop (issue 12 item 7). The
// spool's files here are empty but named as 256 MiB ones: names carry sizes.
func TestFullSpoolDropsAndLogs(t *testing.T) {
	s := newScene(t, nil, nil)
	spool := t.TempDir()
	missing := filepath.Join(t.TempDir(), "no.sock")
	full := agentapi.DefaultSpoolLimits.Bytes
	oldStart := filepath.Join(spool, fmt.Sprintf("%020d-start-%d-old-1.event", 1, full))
	oldStop := filepath.Join(spool, fmt.Sprintf("%020d-stop-%d-gone-2.event", 2, full))
	write(t, oldStart, "")
	run := func(stage string) (*Outcome, string) {
		var logs bytes.Buffer
		out := Run(context.Background(), s.opts(missing, spool, stage), s.stdin(t), quietLogger(&logs, false), time.Now())
		return out, logs.String()
	}
	dropped := func() uint64 {
		n, err := agentapi.SpoolDropped(spool)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	out, logs := run("createRuntime")
	if _, err := os.Stat(oldStart); !os.IsNotExist(err) || out.SpoolPath == "" || dropped() != 1 || !strings.Contains(logs, "the spool is full") {
		t.Fatalf("oldest start not replaced: old file %v, outcome %+v, dropped %d, logs:\n%s", err, out, dropped(), logs)
	}
	if err := os.Remove(out.SpoolPath); err != nil {
		t.Fatal(err)
	}
	write(t, oldStop, "")
	for i, stage := range []string{"createRuntime", "poststop"} {
		out, logs = run(stage)
		if out.SpoolPath != "" || dropped() != uint64(2+i) || !strings.Contains(logs, "spool full") {
			t.Errorf("%s into a spool full of stops: outcome %+v, dropped %d, logs:\n%s", stage, out, dropped(), logs)
		}
		if _, err := os.Stat(oldStop); err != nil {
			t.Errorf("%s: the spooled stop was removed: %v", stage, err)
		}
	}
}
