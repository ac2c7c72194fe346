// Command hookbench measures what karmor-hook costs a container start: the hook binary's own
// latency on a realistic state and config.json with karmord up and down, and `runc run` of a
// trivial container with and without the hook. bench/hook/run.sh builds the programs, starts
// karmord and runs it.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/install"
)

type config struct {
	hook, socket, workDir string
	latencyRuns, runcRuns int
	// runcCases, when given, replace the agent up/down start cases: the hook reporting to each
	// named karmord socket, compared with the first.
	runcCases []runcCase
}

type runcCase struct{ name, socket string }

// runcCaseFlag parses repeated -runc-case NAME=SOCKET flags.
type runcCaseFlag struct{ c *config }

func (f runcCaseFlag) String() string { return "" }

func (f runcCaseFlag) Set(v string) error {
	name, sock, ok := strings.Cut(v, "=")
	if !ok || name == "" || sock == "" {
		return fmt.Errorf("want NAME=SOCKET, got %q", v)
	}
	f.c.runcCases = append(f.c.runcCases, runcCase{name, sock})
	return nil
}

func main() {
	var c config
	flag.StringVar(&c.hook, "hook", "", "karmor-hook binary to measure")
	flag.StringVar(&c.socket, "socket", "", "socket of a running karmord (the 'agent up' case)")
	flag.StringVar(&c.workDir, "work-dir", "", "scratch directory (bundles, spool, runc root)")
	flag.IntVar(&c.latencyRuns, "latency-runs", 300, "hook executions per latency case")
	flag.IntVar(&c.runcRuns, "runc-runs", 30, "runc run executions per start case")
	flag.Var(runcCaseFlag{&c}, "runc-case", "NAME=SOCKET: time `runc run` with the hook reporting to this karmord (repeatable; replaces the agent up/down cases; ratios are to the first)")
	flag.Parse()
	if c.hook == "" || c.socket == "" || c.workDir == "" {
		fmt.Fprintln(os.Stderr, "usage: hookbench -hook PATH -socket KARMORD_SOCKET -work-dir DIR [-latency-runs N] [-runc-runs N]")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "hookbench:", err)
		os.Exit(1)
	}
}

func run(c config) error {
	bundle, err := makeBundle(filepath.Join(c.workDir, "bundle-latency"), []string{"sleep", "1"})
	if err != nil {
		return err
	}
	// A live process stands in for the container's init, so the hook reads a real /proc entry.
	stand := exec.Command("sleep", "3600")
	if err := stand.Start(); err != nil {
		return err
	}
	defer func() { _ = stand.Process.Kill(); _ = stand.Wait() }()

	if c.latencyRuns > 0 {
		if err := latency(c, bundle, stand.Process.Pid); err != nil {
			return err
		}
	}
	return startCases(c)
}

// latency measures the hook binary with karmord up and down.
func latency(c config, bundle string, pid int) error {
	fmt.Printf("karmor-hook latency (exec to exit, %d runs each, realistic state + %s)\n", c.latencyRuns, "config.json with CRI-O annotations")
	for _, tc := range []struct{ name, socket string }{
		{"agent up", c.socket},
		{"agent down", filepath.Join(c.workDir, "no-karmord.sock")},
	} {
		spool := filepath.Join(c.workDir, "spool-"+strings.ReplaceAll(tc.name, " ", "-"))
		d, err := hookLatency(c, bundle, pid, tc.socket, spool)
		if err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
		// With karmord up every event must have been acknowledged, or this measured the spool.
		spooled, _ := os.ReadDir(spool)
		if tc.socket == c.socket && len(spooled) > 0 {
			return fmt.Errorf("%s: %d events were spooled, so karmord did not acknowledge them; see its log", tc.name, len(spooled))
		}
		if tc.socket != c.socket && len(spooled) < c.latencyRuns {
			return fmt.Errorf("%s: only %d of %d events spooled", tc.name, len(spooled), c.latencyRuns)
		}
		fmt.Printf("  %-10s p50 %6.2f ms  p90 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n", tc.name, ms(pct(d, 50)), ms(pct(d, 90)), ms(pct(d, 99)), ms(d[len(d)-1]))
	}
	return nil
}

// startCases times `runc run` of a trivial container without the hook and with it for each case,
// interleaved, and prints each median with its ratio to the first case.
func startCases(c config) error {
	hooked := c.runcCases
	if len(hooked) == 0 {
		hooked = []runcCase{{"hook, agent up", c.socket}, {"hook, agent down", filepath.Join(c.workDir, "no-karmord.sock")}}
	}
	type startCase struct {
		name, bundle string
		times        []time.Duration
	}
	fmt.Printf("runc run of sh -c true (%d runs each, interleaved)\n", c.runcRuns)
	plain, err := makeBundle(filepath.Join(c.workDir, "bundle-plain"), []string{"sh", "-c", "true"})
	if err != nil {
		return err
	}
	cases := []startCase{{name: "no hook", bundle: plain}}
	for i, hc := range hooked {
		b, err := makeBundle(filepath.Join(c.workDir, fmt.Sprintf("bundle-%d", i)), []string{"sh", "-c", "true"})
		if err != nil {
			return err
		}
		h := install.DefaultHookConfig()
		h.Path, h.Socket, h.SpoolDir = c.hook, hc.socket, filepath.Join(c.workDir, "spool-runc")
		if _, err := install.InjectBundle(b, h); err != nil {
			return err
		}
		cases = append(cases, startCase{name: hc.name, bundle: b})
	}
	root := filepath.Join(c.workDir, "runc-root")
	for i := 0; i < c.runcRuns+2; i++ { // the first two rounds warm caches and are dropped
		for j := range cases {
			d, err := runcRun(root, cases[j].bundle, fmt.Sprintf("hookbench-%d-%d", j, i))
			if err != nil {
				return fmt.Errorf("%s: %w", cases[j].name, err)
			}
			if i >= 2 {
				cases[j].times = append(cases[j].times, d)
			}
		}
	}
	base := pct(sorted(cases[0].times), 50)
	first := pct(sorted(cases[1].times), 50)
	for j, tc := range cases {
		d := sorted(tc.times)
		line := fmt.Sprintf("  %-28s median %6.2f ms  p90 %6.2f ms  ratio to no hook %.3f  (+%.2f ms)", tc.name, ms(pct(d, 50)), ms(pct(d, 90)),
			float64(pct(d, 50))/float64(base), ms(pct(d, 50)-base))
		if len(c.runcCases) > 0 && j > 1 {
			line += fmt.Sprintf("  ratio to %s %.3f", cases[1].name, float64(pct(d, 50))/float64(first))
		}
		fmt.Println(line)
	}
	return nil
}

// hookLatency execs the hook with a createRuntime state on stdin, latencyRuns times, and returns
// the sorted wall times. Each run reports a new container id, as a node starting containers does.
func hookLatency(c config, bundle string, pid int, socket, spool string) ([]time.Duration, error) {
	var out []time.Duration
	for i := 0; i < c.latencyRuns+10; i++ {
		id := fmt.Sprintf("hookbench-%d-%d", time.Now().UnixNano(), i)
		// CRI-O's own record of the id makes the hook read the bundle's CRI-O identity, as on a node.
		st := rspec.State{Version: rspec.Version, ID: id, Status: rspec.StateCreating, Pid: pid, Bundle: bundle,
			Annotations: map[string]string{"io.kubernetes.pod.name": "bench", "io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": id}}
		body, err := json.Marshal(&st)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(c.hook, "--socket", socket, "--spool-dir", spool, "--timeout", "2s", "createRuntime")
		cmd.Stdin = bytes.NewReader(body)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 := time.Now()
		err = cmd.Run()
		d := time.Since(t0)
		if err != nil {
			return nil, fmt.Errorf("hook run %d: %v: %s", i, err, stderr.String())
		}
		if i >= 10 { // warm-up runs are dropped
			out = append(out, d)
		}
	}
	return sorted(out), nil
}

func runcRun(root, bundle, id string) (time.Duration, error) {
	cmd := exec.Command("runc", "--root", root, "run", "--bundle", bundle, id)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		return 0, fmt.Errorf("runc run: %v: %s", err, stderr.String())
	}
	return d, nil
}

// makeBundle makes a runc bundle running args in a busybox rootfs, with a config.json as large
// as a CRI-O container's (runc spec's defaults plus Kubernetes annotations).
func makeBundle(dir string, args []string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		return "", err
	}
	for _, sub := range []string{"proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, sub), 0o755); err != nil {
			return "", err
		}
	}
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("%w (install busybox-static)", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), busybox, 0o755); err != nil {
		return "", err
	}
	for _, c := range []string{"sh", "true", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", c)); err != nil && !errors.Is(err, os.ErrExist) {
			return "", err
		}
	}
	cmd := exec.Command("runc", "spec")
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("runc spec: %v: %s", err, b)
	}
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	var spec rspec.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return "", err
	}
	spec.Root = &rspec.Root{Path: rootfs, Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = args
	spec.Annotations = map[string]string{
		"io.kubernetes.pod.name":        "web-7d9f8c6b5-x2x4k",
		"io.kubernetes.pod.namespace":   "shop",
		"io.kubernetes.pod.uid":         "5b8e0f4e-2f0c-4b8e-9d7e-0d7d0c8d9a1b",
		"io.kubernetes.container.name":  "nginx",
		"io.kubernetes.cri-o.ImageName": "docker.io/library/nginx:1.27",
		"io.kubernetes.cri-o.Labels":    `{"app":"web","pod-template-hash":"7d9f8c6b5","io.kubernetes.container.name":"nginx","io.kubernetes.pod.name":"web-7d9f8c6b5-x2x4k","io.kubernetes.pod.namespace":"shop"}`,
		"io.kubernetes.cri-o.Created":   time.Now().UTC().Format(time.RFC3339Nano),
	}
	b, err := json.MarshalIndent(&spec, "", "\t")
	if err != nil {
		return "", err
	}
	return dir, os.WriteFile(cfgPath, b, 0o644)
}

func sorted(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

// pct returns the p-th percentile of sorted durations (nearest rank).
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[max(i-1, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
