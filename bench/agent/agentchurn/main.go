// Command agentchurn measures karmord's memory under container churn: it starts a karmord
// binary on a private socket, spool, state and runtime root, reads its RSS idle, then reports
// the start and stop of many containers with large annotations (a few live at a time) through
// the real karmor-hook, or straight over the socket, and reads its RSS again, right after the
// churn and once the Go runtime has had time to return freed memory. It prints one line per
// karmord, so that run.sh can compare binaries built from different commits in the same run.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/pkg/agentapi"
)

type config struct {
	name       string
	karmord    string
	hook       string
	workDir    string
	containers int
	live       int
	annKiB     int
	via        string
	settle     time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.name, "name", "karmord", "label of this karmord in the output")
	flag.StringVar(&c.karmord, "karmord", "", "karmord binary")
	flag.StringVar(&c.hook, "hook", "", "karmor-hook binary (with -via hook)")
	flag.StringVar(&c.workDir, "work-dir", "", "private directory for the socket, spool, state and bundle")
	flag.IntVar(&c.containers, "containers", 2000, "containers started and stopped")
	flag.IntVar(&c.live, "live", 3, "containers live at a time")
	flag.IntVar(&c.annKiB, "annotation-kib", 240, "annotations per container, KiB (in 16 KiB values, the hook's per-value bound)")
	flag.StringVar(&c.via, "via", "hook", "how events reach karmord: hook (exec karmor-hook per event) or socket (the hook's protocol, in process)")
	flag.DurationVar(&c.settle, "settle", 10*time.Second, "wait after the churn before the settled RSS reading")
	flag.Parse()
	if c.karmord == "" || c.workDir == "" || (c.via == "hook" && c.hook == "") || (c.via != "hook" && c.via != "socket") {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "agentchurn:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	dir := filepath.Join(c.workDir, c.name)
	sock := filepath.Join(dir, "run", "karmor.sock")
	logPath := filepath.Join(dir, "karmord.log")
	if err := os.MkdirAll(filepath.Join(dir, "runtime-root"), 0o700); err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	agent := exec.Command(c.karmord, "--socket", sock, "--spool-dir", filepath.Join(dir, "spool"), "--state-dir", filepath.Join(dir, "state"),
		"--runtime-root", filepath.Join(dir, "runtime-root"), "--podman-db", "", "--log-level", "warn")
	agent.Stderr = logFile
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() { _ = agent.Process.Kill(); _ = agent.Wait() }()
	cl := agentapi.NewClient(sock)
	cl.Timeout = 10 * time.Second
	if err := waitReady(cl, 20*time.Second); err != nil {
		return fmt.Errorf("%s: %w (log %s)", c.name, err, logPath)
	}

	// A live process stands in for every container's init, so the hook reads a real /proc entry
	// and reconciliation keeps the live ones.
	stand := exec.Command("sleep", "3600")
	if err := stand.Start(); err != nil {
		return err
	}
	defer func() { _ = stand.Process.Kill(); _ = stand.Wait() }()
	annotations := bigAnnotations(c.annKiB)
	bundle, err := makeBundle(filepath.Join(dir, "bundle"), annotations)
	if err != nil {
		return err
	}

	time.Sleep(2 * time.Second)
	idle, err := rssKiB(agent.Process.Pid)
	if err != nil {
		return err
	}
	began := time.Now()
	report := func(id string, start bool) error {
		if c.via == "hook" {
			return runHook(c.hook, sock, filepath.Join(dir, "spool"), id, stand.Process.Pid, bundle, start)
		}
		return reportDirect(cl, id, stand.Process.Pid, bundle, annotations, start)
	}
	for i := range c.containers {
		if err := report(containerID(i), true); err != nil {
			return fmt.Errorf("start %d: %w", i, err)
		}
		if i >= c.live {
			if err := report(containerID(i-c.live), false); err != nil {
				return fmt.Errorf("stop %d: %w", i-c.live, err)
			}
		}
	}
	churnTime := time.Since(began)
	if spooled, _ := os.ReadDir(filepath.Join(dir, "spool")); len(spooled) > 0 {
		return fmt.Errorf("%s: %d events were spooled instead of acknowledged; see %s", c.name, len(spooled), logPath)
	}
	after, err := rssKiB(agent.Process.Pid)
	if err != nil {
		return err
	}
	list, err := cl.List(context.Background())
	if err != nil {
		return fmt.Errorf("%s: list after the churn: %w", c.name, err)
	}
	if len(list) != c.live {
		return fmt.Errorf("%s: %d containers live after the churn, want %d", c.name, len(list), c.live)
	}
	time.Sleep(c.settle)
	settled, err := rssKiB(agent.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Printf("  %-8s idle %7.1f MB  after churn %7.1f MB (%5.2fx)  settled %7.1f MB (%5.2fx)  churn %.1f s\n", c.name,
		mb(idle), mb(after), float64(after)/float64(idle), mb(settled), float64(settled)/float64(idle), churnTime.Seconds())
	return nil
}

func waitReady(cl *agentapi.Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.List(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("karmord not answering after %v: %w", limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func containerID(i int) string { return fmt.Sprintf("%064x", 0xc0ffee0000+i) }

// bigAnnotations is kib KiB of annotations in 16 KiB values.
func bigAnnotations(kib int) map[string]string {
	m := map[string]string{}
	for i := 0; i*16 < kib; i++ {
		m[fmt.Sprintf("example.com/blob-%02d", i)] = strings.Repeat(string(rune('a'+i%26)), 16<<10)
	}
	return m
}

// makeBundle writes a bundle whose config.json carries the annotations and a Kubernetes pod's
// identity (as CRI-O writes it), read by karmor-hook on every start.
func makeBundle(dir string, annotations map[string]string) (string, error) {
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		return "", err
	}
	ann := map[string]string{
		"io.kubernetes.pod.name":       "web-7d9f8c6b5-x2x4k",
		"io.kubernetes.pod.namespace":  "shop",
		"io.kubernetes.container.name": "nginx",
		"io.kubernetes.cri-o.Labels":   `{"app":"web","pod-template-hash":"7d9f8c6b5"}`,
	}
	for k, v := range annotations {
		ann[k] = v
	}
	spec := rspec.Spec{Version: rspec.Version, Root: &rspec.Root{Path: "rootfs"}, Process: &rspec.Process{Args: []string{"sleep", "1"}, Cwd: "/"},
		Annotations: ann}
	b, err := json.Marshal(&spec)
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

// runHook execs karmor-hook as a runtime does at createRuntime (start) or poststop.
func runHook(hook, sock, spool, id string, pid int, bundle string, start bool) error {
	// CRI-O's own record of the id makes the hook believe the bundle's CRI-O identity
	// (docs/identity.md), as on a node.
	st := rspec.State{Version: rspec.Version, ID: id, Status: rspec.StateCreating, Pid: pid, Bundle: bundle,
		Annotations: map[string]string{"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": id}}
	stage := "createRuntime"
	if !start {
		st.Status, stage = rspec.StateStopped, "poststop"
	}
	body, err := json.Marshal(&st)
	if err != nil {
		return err
	}
	cmd := exec.Command(hook, "--socket", sock, "--spool-dir", spool, "--timeout", "5s", stage)
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("karmor-hook %s: %v: %s", stage, err, stderr.String())
	}
	return nil
}

// reportDirect sends the event karmor-hook would send, over the socket.
func reportDirect(cl *agentapi.Client, id string, pid int, bundle string, annotations map[string]string, start bool) error {
	ev := &agentapi.Event{Kind: agentapi.KindStop, Stage: "poststop", Time: time.Now(), Container: agentapi.Container{ID: id, PID: pid}}
	if start {
		c := agentapi.Container{ID: id, PID: pid, Bundle: bundle, Pod: "web-7d9f8c6b5-x2x4k", Namespace: "shop", ContainerName: "nginx",
			Labels: map[string]string{"app": "web", "pod-template-hash": "7d9f8c6b5"}, Annotations: annotations}
		ev = &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime", Time: time.Now(), Container: c}
	}
	_, err := cl.Report(context.Background(), ev)
	return err
}

// rssKiB reads a process's resident set size from /proc/PID/status.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}

func mb(kib int) float64 { return float64(kib) / 1024 }
