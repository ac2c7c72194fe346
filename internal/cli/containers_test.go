package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/agent"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// startContainersAgent runs a real karmord in-process on a private socket and returns the socket and a
// function that stops the agent.
func startContainersAgent(t *testing.T) (string, func()) {
	t.Helper()
	return startConfiguredAgent(t, nil)
}

// startConfiguredAgent is startContainersAgent with edit applied to the agent's configuration.
func startConfiguredAgent(t *testing.T, edit func(*agent.Config)) (string, func()) {
	t.Helper()
	dir, err := os.MkdirTemp("", "karmor-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "k.sock")
	cfg := agent.Config{Socket: sock, SpoolDir: filepath.Join(dir, "spool"), StateDir: filepath.Join(dir, "state"),
		RuntimeRoots: []string{}, ReconcileInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if edit != nil {
		edit(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("karmord: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("karmord: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return sock, stop
}

func reportToAgent(t *testing.T, sock string, ev *agentapi.Event) {
	t.Helper()
	if _, err := agentapi.NewClient(sock).Report(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

func webContainerStart() *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
		Container: agentapi.Container{ID: "0123456789abcdef0123", Name: "web1", PID: 4242, Pod: "web-0", Namespace: "shop",
			Image: "nginx:1.27", Labels: map[string]string{"app": "web", "tier": "front"}, Namespaces: map[string]uint64{"pid": 4026532000},
			Created: time.Date(2026, 3, 4, 5, 6, 6, 0, time.UTC)}}
}

func containersCLI(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := Run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestContainersTableAndJSON(t *testing.T) {
	sock, _ := startContainersAgent(t)
	reportToAgent(t, sock, webContainerStart())
	reportToAgent(t, sock, &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "fedcba", PID: 7}})

	code, out, errOut := containersCLI("containers", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"ID", "NAME", "PID", "POD", "IMAGE", "SOURCE"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("header %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"0123456789ab", "web1", "4242", "shop/web-0", "nginx:1.27", "app=web,tier=front", "hook", "2026-03-04T05:06:06Z"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row %q lacks %q", lines[1], want)
		}
	}
	if strings.Contains(lines[1], "0123456789abc") {
		t.Errorf("row shows the full id: %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[0] != "fedcba" || f[1] != "-" || f[2] != "7" {
		t.Errorf("sparse row %q", lines[2])
	}

	code, out, errOut = containersCLI("containers", "--socket", sock, "-o", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if len(got) != 2 {
		t.Fatalf("%d objects", len(got))
	}
	for _, key := range []string{"id", "name", "pid", "namespaces", "pod", "namespace", "labels", "image", "source", "policies"} {
		for i, obj := range got {
			if _, ok := obj[key]; !ok {
				t.Errorf("object %d lacks %q: %v", i, key, obj)
			}
		}
	}
	web := got[0]
	if web["name"] != "web1" || web["pid"] != float64(4242) || web["pod"] != "web-0" || web["namespace"] != "shop" ||
		web["source"] != "hook" || web["image"] != "nginx:1.27" || web["labels"].(map[string]any)["app"] != "web" ||
		web["namespaces"].(map[string]any)["pid"] != float64(4026532000) {
		t.Errorf("json object %v", web)
	}
}

func TestContainersGetOne(t *testing.T) {
	sock, _ := startContainersAgent(t)
	reportToAgent(t, sock, webContainerStart())
	for _, key := range []string{"web1", "0123", "0123456789abcdef0123"} {
		code, out, errOut := containersCLI("containers", key, "--socket", sock, "-o", "json")
		if code != ExitOK {
			t.Fatalf("%s: exit %d: %s", key, code, errOut)
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(out), &obj); err != nil || obj["id"] != "0123456789abcdef0123" {
			t.Fatalf("%s: %v %s", key, err, out)
		}
	}
	code, _, errOut := containersCLI("containers", "nope", "--socket", sock)
	if code != ExitFailure || !strings.Contains(errOut, `no live container with id, id prefix or name "nope"`) {
		t.Fatalf("missing container: exit %d, %s", code, errOut)
	}
}

func TestContainersAgentNotRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	for _, args := range [][]string{{"containers", "--socket", sock}, {"containers", "-w", "--socket", sock}} {
		code, _, errOut := containersCLI(args...)
		if code != ExitFailure {
			t.Fatalf("%v: exit %d, want 1", args, code)
		}
		for _, want := range []string{"karmord not reachable at " + sock, "is karmord running?", "karmord --socket " + sock} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: message lacks %q:\n%s", args, want, errOut)
			}
		}
	}
}

func TestContainersUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"containers", "-o", "yaml"},
		{"containers", "-w", "web1"},
		{"containers", "--from-seq", "3"},
		{"containers", "a", "b"},
	} {
		if code, _, errOut := containersCLI(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}

func TestContainersWatch(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		t.Run(format, func(t *testing.T) {
			sock, stop := startContainersAgent(t)
			reportToAgent(t, sock, webContainerStart()) // live before the watch starts: listed first
			var out, errOut testutil.SyncBuffer
			done := make(chan int, 1)
			go func() {
				done <- Run([]string{"containers", "-w", "-o", format, "--socket", sock}, strings.NewReader(""), &out, &errOut)
			}()
			// The watch lists the live container, then sees its stop.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(out.String(), "web1") && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			reportToAgent(t, sock, &agentapi.Event{Kind: agentapi.KindStop, Stage: "poststop", Container: agentapi.Container{ID: "0123456789abcdef0123"}})
			for strings.Count(out.String(), "\n") < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			stop() // the agent's shutdown ends the watch with an error
			code := <-done
			if code != ExitFailure || !strings.Contains(errOut.String(), "karmord ended the watch: karmord is shutting down") {
				t.Fatalf("watch ended with exit %d: %s", code, errOut.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("watch printed:\n%s", out.String())
			}
			if format == "table" {
				if !strings.Contains(lines[0], "listed") || !strings.Contains(lines[0], "web1") || !strings.Contains(lines[0], "pid=4242") ||
					!strings.Contains(lines[1], "stop") || !strings.Contains(lines[1], "web1") || !strings.Contains(lines[1], "source=hook") {
					t.Fatalf("watch lines:\n%s", out.String())
				}
				return
			}
			type watched struct {
				Seq       uint64 `json:"seq"`
				Kind      string `json:"kind"`
				Container struct {
					Name string `json:"name"`
					PID  int    `json:"pid"`
				} `json:"container"`
			}
			var evs []watched
			for _, l := range lines {
				var one watched
				if err := json.Unmarshal([]byte(l), &one); err != nil {
					t.Fatalf("json line %q: %v", l, err)
				}
				evs = append(evs, one)
			}
			// The listed container carries the list's seq, the seq of its start: the stop follows it.
			if evs[0].Kind != "listed" || evs[1].Kind != "stop" || evs[1].Container.Name != "web1" || evs[1].Seq != evs[0].Seq+1 {
				t.Fatalf("json events %+v", evs)
			}
		})
	}
}
