package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// karmord is a real karmord for one test, and the events it streamed.
type karmord struct {
	*testutil.Karmord

	mu     sync.Mutex
	events []agentapi.Event
	cond   chan struct{} // closed and replaced on each new event
}

// startKarmord starts a karmord that learns containers only from karmor-hook (see
// testutil.Karmord) and follows its event stream.
func startKarmord(t *testing.T) *karmord {
	t.Helper()
	kd := testutil.NewKarmord(t, testutil.KarmordOptions{Args: []string{"--reconcile-interval", "1h"}, Start: true})
	k := &karmord{Karmord: kd, cond: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	t.Cleanup(func() { cancel(); <-watchDone }) // runs before karmord stops
	go func() {
		defer close(watchDone)
		_ = k.Client.Watch(ctx, 0, func(env *agentapi.Envelope) error {
			if env.Event != nil {
				k.mu.Lock()
				k.events = append(k.events, *env.Event)
				close(k.cond)
				k.cond = make(chan struct{})
				k.mu.Unlock()
			}
			return nil
		})
	}()
	return k
}

// waitEvent waits for an event of kind for container id (a prefix of the id is enough) that came
// from karmor-hook, and returns it.
func (k *karmord) waitEvent(t *testing.T, kind, id string) agentapi.Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		k.mu.Lock()
		for _, ev := range k.events {
			if ev.Kind == kind && ev.Source == agentapi.SourceHook && id != "" && strings.HasPrefix(ev.Container.ID, id) {
				k.mu.Unlock()
				return ev
			}
		}
		wake := k.cond
		k.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("karmord got no %s event from karmor-hook for container %s; events: %s", kind, id, k.describe())
		}
	}
}

// hasEvent reports whether any event was received for container id.
func (k *karmord) hasEvent(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ev := range k.events {
		if strings.HasPrefix(ev.Container.ID, id) {
			return true
		}
	}
	return false
}

func (k *karmord) describe() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, ev := range k.events {
		fmt.Fprintf(&b, "\n  %s %s %.12s pod=%s/%s", ev.Source, ev.Kind, ev.Container.ID, ev.Container.Namespace, ev.Container.Pod)
	}
	return b.String()
}

// hookConfig is how karmor-hook runs in these tests: the test's hook binary and karmord.
func (k *karmord) hookConfig(t *testing.T) install.HookConfig {
	h := install.DefaultHookConfig()
	h.Path = testutil.Binary(t, "karmor-hook")
	h.Socket = k.Socket
	h.SpoolDir = k.SpoolDir
	return h
}

// nriPlugin is a running karmor-nri process.
type nriPlugin struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// startNRIPlugin starts karmor-nri against socket with the test's hook configuration.
func startNRIPlugin(t *testing.T, socket string, h install.HookConfig) *nriPlugin {
	t.Helper()
	dir := t.TempDir()
	p := &nriPlugin{logPath: filepath.Join(dir, "karmor-nri.log"), exited: make(chan struct{})}
	p.cmd = exec.Command(testutil.Binary(t, "karmor-nri"), "--nri-socket", socket, "--hook-path", h.Path,
		"--socket", h.Socket, "--spool-dir", h.SpoolDir, "--log-file", p.logPath, "--log-level", "debug")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("karmor-nri log:\n%s", testutil.TailFile(p.logPath, 30))
		}
	})
	return p
}

func (p *nriPlugin) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// waitConfigured waits until the runtime has configured the plugin n times in all (once per
// registration), so that a pod started next is seen by it.
func (p *nriPlugin) waitConfigured(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(p.logPath)
		if strings.Count(string(b), "karmor-nri configured by the runtime") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmor-nri was not configured %d times within 30s:\n%s", n, testutil.TailFile(p.logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runtimeSpec returns the OCI spec containerd generated for a container (crictl inspect).
func runtimeSpec(t *testing.T, c *testutil.Containerd, id string) (annotations map[string]string, hookPaths []string) {
	t.Helper()
	var info struct {
		Info struct {
			RuntimeSpec struct {
				Annotations map[string]string `json:"annotations"`
				Hooks       struct {
					CreateRuntime []struct {
						Path string `json:"path"`
					} `json:"createRuntime"`
				} `json:"hooks"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	out := c.Crictl(t, "inspect", id)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("crictl inspect: %v\n%s", err, out)
	}
	for _, h := range info.Info.RuntimeSpec.Hooks.CreateRuntime {
		hookPaths = append(hookPaths, h.Path)
	}
	return info.Info.RuntimeSpec.Annotations, hookPaths
}

// run runs a command and returns stdout, stderr and the exit code (-1 when it could not start).
// Output goes through files, not pipes: a container made by `create` keeps its stdio open, and a
// pipe would make the wait last as long as the container.
func run(env []string, name string, args ...string) (stdout, stderr string, code int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	o, err := os.CreateTemp("", "run-out-")
	if err != nil {
		return "", err.Error(), -1
	}
	defer os.Remove(o.Name())
	defer o.Close()
	e, err := os.CreateTemp("", "run-err-")
	if err != nil {
		return "", err.Error(), -1
	}
	defer os.Remove(e.Name())
	defer e.Close()
	cmd.Stdout, cmd.Stderr = o, e
	err = cmd.Run()
	ob, _ := os.ReadFile(o.Name())
	eb, _ := os.ReadFile(e.Name())
	stdout, stderr = string(ob), string(eb)
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		code = -1
		stderr += err.Error()
	}
	return stdout, stderr, code
}
