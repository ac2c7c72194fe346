package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/hook/hooktest"
	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestHookInstallStatusUninstall(t *testing.T) {
	hookBin := testutil.Binary(t, "karmor-hook")
	root := t.TempDir()
	hooksDir := filepath.Join(root, "hooks.d")
	hookPath := filepath.Join(root, "bin", "karmor-hook")
	agent := hooktest.Start(t)

	code, out, errOut := runCLI(t, "hook", "install", "--runtime", "podman", "--hooks-dir", hooksDir, "--hook-path", hookPath,
		"--hook-binary", hookBin, "--socket", agent.Socket, "--spool-dir", filepath.Join(root, "spool"), "--timeout", "1s",
		"--fail-closed", "--allow-namespace", "karmor")
	if code != 0 {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "installed "+hookPath) || !strings.Contains(out, filepath.Join(hooksDir, "karmor-createRuntime.json")) {
		t.Errorf("install output:\n%s", out)
	}
	var f install.HooksFile
	body, err := os.ReadFile(filepath.Join(hooksDir, "karmor-createRuntime.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, &f); err != nil {
		t.Fatal(err)
	}
	if args := strings.Join(f.Hook.Args, " "); !strings.Contains(args, "--socket "+agent.Socket) || !strings.Contains(args, "--timeout 1s") ||
		!strings.Contains(args, "--fail-closed --allow-namespace karmor") || !strings.HasSuffix(args, " createRuntime") {
		t.Errorf("hook args %q", args)
	}

	code, out, _ = runCLI(t, "hook", "status", "--hooks-dir", hooksDir)
	if code != 0 || !strings.Contains(out, "binary: "+hookPath+" version ") || !strings.Contains(out, "karmord answers at "+agent.Socket) {
		t.Errorf("status: exit %d\n%s", code, out)
	}
	// With the agent gone, status says so and fails.
	agent.Close()
	code, out, _ = runCLI(t, "hook", "status", "--hooks-dir", hooksDir)
	if code != 1 || !strings.Contains(out, "not answering at "+agent.Socket) {
		t.Errorf("status with the agent down: exit %d\n%s", code, out)
	}

	code, out, _ = runCLI(t, "hook", "uninstall", "--hooks-dir", hooksDir)
	if code != 0 || strings.Count(out, "removed ") != 3 {
		t.Errorf("uninstall: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(hookPath); !os.IsNotExist(err) {
		t.Errorf("binary still there: %v", err)
	}
	code, out, _ = runCLI(t, "hook", "status", "--hooks-dir", hooksDir, "--hook-path", hookPath)
	if code != 1 || !strings.Contains(out, "not installed") || !strings.Contains(out, "missing") {
		t.Errorf("status after uninstall: exit %d\n%s", code, out)
	}
}

func TestHookUsageErrors(t *testing.T) {
	cases := [][]string{
		{"hook"},
		{"hook", "install"},
		{"hook", "install", "--runtime", "lxc"},
		{"hook", "install", "--runtime", "podman", "--hook-path", "relative/karmor-hook"},
		{"hook", "install", "--runtime", "podman", "--timeout", "0s"},
		{"hook", "uninstall"},
		{"hook", "inject"},
		{"hook", "inject", "a", "b"},
		{"hook", "status", "--runtime", "lxc"},
	}
	for _, args := range cases {
		if code, out, errOut := runCLI(t, args...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d\n%s%s", args, code, ExitUsage, out, errOut)
		}
	}
	// A missing hook binary is a failure, not a usage error, and leaves the bundle alone.
	bundle := t.TempDir()
	cfg := `{"ociVersion":"1.0.2"}`
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(cfg), 0o644)
	if code, _, errOut := runCLI(t, "hook", "inject", bundle, "--hook-path", filepath.Join(bundle, "nope")); code != ExitFailure || !strings.Contains(errOut, "--hook-path") {
		t.Errorf("inject with a missing hook: exit %d %s", code, errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(bundle, "config.json")); string(b) != cfg {
		t.Errorf("bundle changed: %s", b)
	}
}

// runcContainer runs a real container with runc under its own state root.
type runcContainer struct {
	root, id, bundle string
	cmd              *exec.Cmd
	stderr           bytes.Buffer
}

func startRunc(t *testing.T, bundle string) *runcContainer {
	t.Helper()
	c := &runcContainer{root: t.TempDir(), id: fmt.Sprintf("karmor-hook-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6), bundle: bundle}
	c.cmd = exec.Command("runc", "--root", c.root, "run", "--bundle", bundle, c.id)
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("runc", "--root", c.root, "kill", c.id, "KILL").Run()
		_ = c.cmd.Wait()
		_ = exec.Command("runc", "--root", c.root, "delete", "--force", c.id).Run()
	})
	return c
}

// runningState waits for runc to say the container runs (runc writes its state after the
// createRuntime hook returned) and returns that state.
func (c *runcContainer) runningState(t *testing.T) rspec.State {
	t.Helper()
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		out, err := exec.Command("runc", "--root", c.root, "state", c.id).Output()
		if err != nil {
			last = err.Error()
			continue
		}
		var st rspec.State
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		if st.Status == rspec.StateRunning {
			return st
		}
		last = string(st.Status)
	}
	t.Fatalf("runc never reported container %s running (last: %s; runc: %s)", c.id, last, c.stderr.String())
	return rspec.State{}
}

func injectHook(t *testing.T, bundle, socket, spool string, extra ...string) {
	t.Helper()
	args := append([]string{"hook", "inject", bundle, "--hook-path", testutil.Binary(t, "karmor-hook"), "--socket", socket, "--spool-dir", spool, "--timeout", "1s"}, extra...)
	code, out, errOut := runCLI(t, args...)
	if code != 0 || !strings.Contains(out, "added karmor-hook") {
		t.Fatalf("inject: exit %d\n%s%s", code, out, errOut)
	}
	// Injecting twice adds nothing.
	code, out, _ = runCLI(t, args...)
	if code != 0 || !strings.Contains(out, "already runs karmor-hook") {
		t.Fatalf("second inject: exit %d\n%s", code, out)
	}
}

func TestRuncContainerReportsStartAndStop(t *testing.T) {
	testutil.RequireRoot(t)
	agent := hooktest.Start(t)
	spool := t.TempDir()
	bundle := testutil.Bundle(t, []string{"sleep", "30"}, nil)
	injectHook(t, bundle, agent.Socket, spool)

	before := time.Now()
	c := startRunc(t, bundle)
	start := agent.Next(t, 20*time.Second)
	if start.Kind != agentapi.KindStart || start.Stage != "createRuntime" || start.Container.ID != c.id {
		t.Fatalf("first event %+v", start)
	}
	st := c.runningState(t)
	if st.Pid <= 0 || start.Container.PID != st.Pid {
		t.Fatalf("event pid %d, runc state pid %d", start.Container.PID, st.Pid)
	}
	for _, kind := range []string{"pid", "mnt", "net", "uts", "ipc", "cgroup"} {
		var s syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/%s", st.Pid, kind), &s); err != nil {
			t.Fatal(err)
		}
		if start.Container.Namespaces[kind] != s.Ino {
			t.Errorf("namespace %s: event %d, /proc says %d", kind, start.Container.Namespaces[kind], s.Ino)
		}
	}
	// The container's namespaces are its own, not the host's.
	var host syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &host); err != nil {
		t.Fatal(err)
	}
	if start.Container.Namespaces["pid"] == host.Ino {
		t.Error("the event carries the host's pid namespace")
	}
	// Created comes from the init's start time, to the 10 ms of /proc's clocks.
	if created := start.Container.Created; created.Before(before.Add(-50*time.Millisecond)) || created.After(start.Time.Add(50*time.Millisecond)) {
		t.Errorf("created %v, not between the run (%v) and the event (%v)", created, before, start.Time)
	}
	if start.Container.PIDStart == 0 || start.Container.Bundle != bundle || start.Container.CgroupPath == "" || start.Container.Created.IsZero() {
		t.Errorf("start event container %+v", start.Container)
	}

	if err := exec.Command("runc", "--root", c.root, "kill", c.id, "KILL").Run(); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	stop := agent.Next(t, 20*time.Second)
	if stop.Kind != agentapi.KindStop || stop.Stage != "poststop" || stop.Container.ID != c.id {
		t.Errorf("stop event %+v", stop)
	}
	if ents, _ := agentapi.ReadSpool(spool); len(ents) != 0 {
		t.Errorf("%d events spooled with the agent up", len(ents))
	}
}

func TestRuncContainerWithAgentDown(t *testing.T) {
	testutil.RequireRoot(t)
	spool := filepath.Join(t.TempDir(), "spool")
	missing := filepath.Join(t.TempDir(), "karmord.sock")

	// Fail-open: the container runs, both events are spooled.
	bundle := testutil.Bundle(t, []string{"sh", "-c", "true"}, nil)
	injectHook(t, bundle, missing, spool)
	c := startRunc(t, bundle)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("container with the agent down failed: %v\n%s", err, c.stderr.String())
	}
	ents, err := agentapi.ReadSpool(spool)
	if err != nil || len(ents) != 2 || ents[0].Event.Kind != agentapi.KindStart || ents[1].Event.Kind != agentapi.KindStop ||
		ents[0].Event.Container.ID != c.id || ents[0].Event.Container.PID <= 0 {
		t.Fatalf("spool %v: %+v", err, ents)
	}

	// Fail-closed: the start is refused, the event still spooled.
	closed := filepath.Join(t.TempDir(), "spool")
	bundle = testutil.Bundle(t, []string{"sh", "-c", "true"}, nil)
	injectHook(t, bundle, missing, closed, "--fail-closed")
	c = startRunc(t, bundle)
	if err := c.cmd.Wait(); err == nil {
		t.Fatal("runc started a container whose fail-closed hook could not report it")
	}
	if ents, _ := agentapi.ReadSpool(closed); len(ents) < 1 || ents[0].Event.Kind != agentapi.KindStart {
		t.Errorf("fail-closed spool: %+v", ents)
	}
}

func TestPodmanContainerName(t *testing.T) {
	testutil.RequirePodman(t)
	image := testutil.PodmanImage(t)
	agent := hooktest.Start(t)
	root := t.TempDir()
	hooksDir := filepath.Join(root, "hooks.d")
	code, out, errOut := runCLI(t, "hook", "install", "--runtime", "podman", "--hooks-dir", hooksDir,
		"--hook-path", filepath.Join(root, "bin", "karmor-hook"), "--hook-binary", testutil.Binary(t, "karmor-hook"),
		"--socket", agent.Socket, "--spool-dir", filepath.Join(root, "spool"))
	if code != 0 {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	// A name of this process's own, so that concurrent test runs cannot collide on "web1".
	name := fmt.Sprintf("web1-%d", os.Getpid())
	run := exec.Command("podman", "--hooks-dir", hooksDir, "run", "--rm", "--net=none", "--name", name, image, "true")
	if b, err := run.CombinedOutput(); err != nil {
		t.Fatalf("podman run: %v\n%s", err, b)
	}
	start := agent.Next(t, 20*time.Second)
	if start.Kind != agentapi.KindStart || start.Container.Name != name || start.Container.Image != image ||
		start.Container.Annotations["io.container.manager"] != "libpod" || start.Container.Namespaces["mnt"] == 0 {
		t.Errorf("podman start event %+v", start)
	}
	stop := agent.Next(t, 20*time.Second)
	if stop.Kind != agentapi.KindStop || stop.Container.ID != start.Container.ID {
		t.Errorf("podman stop event %+v", stop)
	}
}
