// Package nri measures what karmor adds to container starts under containerd: a pod's start time
// (crictl runp + create + start) without karmor, with karmor-nri, and with karmor-runc as runc,
// against containerd v2 and a real karmord; and what karmor-runc adds to runc commands.
//
// Run it with bench/nri/run.sh (as root). Every benchmark interleaves its set-ups round by round
// (see measureInterleaved) and reports, per set-up, the median and p90 of its rounds, its median
// over the first set-up's, and the median of the per-round differences to the first set-up;
// -benchtime=48x means 48 measured rounds after the warm-up rounds.
package nri

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/runcwrap"
	"github.com/karmor/karmor/internal/testutil"
)

// startKarmord starts a karmord that learns containers only from karmor-hook.
func startKarmord(b *testing.B) *testutil.Karmord {
	return testutil.NewKarmord(b, testutil.KarmordOptions{Args: []string{"--reconcile-interval", "1h"}, Start: true})
}

func hookConfig(b *testing.B, k *testutil.Karmord) install.HookConfig {
	h := install.DefaultHookConfig()
	h.Path = testutil.Binary(b, "karmor-hook")
	h.Socket, h.SpoolDir = k.Socket, k.SpoolDir
	return h
}

// writeRuncConfig writes karmor-runc's configuration (hook settings, the real runc) into dir and
// returns its path, for runcwrap.EnvConfig.
func writeRuncConfig(b *testing.B, dir string, hook install.HookConfig, runc string) string {
	path := filepath.Join(dir, "karmor-runc.json")
	cfg, err := json.Marshal(runcwrap.ConfigFromHook(hook, runc))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	return path
}

// startNRIPlugin runs karmor-nri against c's NRI socket until the benchmark ends and waits until
// containerd has configured it.
func startNRIPlugin(b *testing.B, c *testutil.Containerd, hook install.HookConfig) {
	logPath := filepath.Join(c.Dir, "karmor-nri.log")
	plugin := exec.Command(testutil.Binary(b, "karmor-nri"), "--nri-socket", c.NRISocket, "--hook-path", hook.Path,
		"--socket", hook.Socket, "--spool-dir", hook.SpoolDir, "--log-file", logPath)
	if err := plugin.Start(); err != nil {
		b.Fatalf("start karmor-nri: %v", err)
	}
	b.Cleanup(func() {
		_ = plugin.Process.Kill()
		_ = plugin.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if lb, _ := os.ReadFile(logPath); strings.Contains(string(lb), "configured by the runtime") {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("karmor-nri did not register with containerd within 30s; its log:\n%s", testutil.TailFile(logPath, 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkPodStart times pod starts without karmor, with karmor-nri and with karmor-runc as runc,
// interleaved pod by pod, plus an A/A control ("without-again": a second containerd exactly like
// "without-karmor"), whose difference to "without-karmor" shows the noise floor and that the
// instances themselves favour none of the set-ups.
//
// The three set-ups need different containerd configurations (a connected NRI plugin or not;
// NRI off and BinaryName = karmor-runc), and restarting one containerd between pods would time
// restarts' after-effects, not pod starts. So three containerd instances run side by side for
// the whole benchmark (four with the control), each in its own directory (root, state, sockets, runc root), all idle but
// for the one starting a pod; karmor-nri and karmord also run throughout. Every set-up thus
// shares the same background: the only difference while one pod starts is which containerd is
// asked. "without-karmor" keeps containerd 2.x's default NRI on, with no plugin connected (what a
// cluster without karmor runs); "karmor-runc" turns NRI off, its documented set-up (containerd
// without NRI). Each pod is removed right after its start is timed, untimed.
func BenchmarkPodStart(b *testing.B) {
	testutil.RequireContainerd(b)
	runc := testutil.RequireCommand(b, "runc", "apt-get install runc")
	k := startKarmord(b)
	hook := hookConfig(b, k)

	without := testutil.StartContainerd(b, testutil.ContainerdOptions{})
	again := testutil.StartContainerd(b, testutil.ContainerdOptions{})
	withNRI := testutil.StartContainerd(b, testutil.ContainerdOptions{})
	startNRIPlugin(b, withNRI, hook)
	runcCfg := writeRuncConfig(b, b.TempDir(), hook, runc)
	withRunc := testutil.StartContainerd(b, testutil.ContainerdOptions{DisableNRI: true,
		RuncBinary: testutil.Binary(b, "karmor-runc"), Env: []string{runcwrap.EnvConfig + "=" + runcCfg}})

	podStart := func(name string, c *testutil.Containerd) arm {
		return arm{name: name, run: func(b *testing.B, round int) time.Duration {
			spec := testutil.PodSpec{Name: fmt.Sprintf("bench-%s-%d", name, round), Labels: map[string]string{"app": "bench"}}
			start := time.Now()
			p, err := c.StartPodErr(spec)
			d := time.Since(start)
			if err != nil {
				b.Fatalf("%s: pod %s: %v\ncontainerd log:\n%s", name, spec.Name, err, testutil.TailFile(c.LogPath, 20))
			}
			c.RemovePod(b, p.ID)
			return d
		}}
	}
	benchInterleaved(b, []arm{podStart("without-karmor", without), podStart("without-again", again),
		podStart("karmor-nri", withNRI), podStart("karmor-runc", withRunc)})
}

// BenchmarkRuncCommand runs the same runc commands directly and through karmor-runc, interleaved
// command by command: `state` (a pass-through, which must cost no more than the wrapper's exec)
// and `create` + `delete` (which pays for the injection).
func BenchmarkRuncCommand(b *testing.B) {
	testutil.RequireRoot(b)
	runc := testutil.RequireCommand(b, "runc", "apt-get install runc")
	k := startKarmord(b)
	wrapper := testutil.Binary(b, "karmor-runc")
	root := b.TempDir()
	env := append(os.Environ(), runcwrap.EnvConfig+"="+writeRuncConfig(b, b.TempDir(), hookConfig(b, k), runc))
	// Output goes to a file: a created container keeps its stdio, and a pipe would never close.
	outPath := filepath.Join(b.TempDir(), "out")
	do := func(b *testing.B, bin string, args ...string) time.Duration {
		out, err := os.Create(outPath)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		cmd := exec.Command(bin, append([]string{"--root", root}, args...)...)
		cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
		start := time.Now()
		err = cmd.Run()
		d := time.Since(start)
		if err != nil {
			msg, _ := os.ReadFile(outPath)
			b.Fatalf("%s %q: %v\n%s", bin, args, err, msg)
		}
		return d
	}
	do(b, runc, "create", "--bundle", testutil.Bundle(b, []string{"sleep", "1000"}, nil), "bench-state")
	b.Cleanup(func() { _ = exec.Command(runc, "--root", root, "delete", "-f", "bench-state").Run() })

	// The floor for any wrapper written in Go: a program that only execs runc.
	bare := bareExecWrapper(b, runc)
	state := func(name, bin string) arm {
		return arm{name: name, run: func(b *testing.B, _ int) time.Duration { return do(b, bin, "state", "bench-state") }}
	}
	b.Run("state", func(b *testing.B) {
		benchInterleaved(b, []arm{state("runc", runc), state("bare-go-exec", bare), state("karmor-runc", wrapper)})
	})

	createDelete := func(name, bin string) arm {
		return arm{name: name, run: func(b *testing.B, round int) time.Duration {
			// A fresh bundle each time (made untimed), so the wrapper's injection is paid on every create.
			bundle := testutil.Bundle(b, []string{"sleep", "1000"}, nil)
			id := fmt.Sprintf("bench-%s-%d", name, round)
			return do(b, bin, "create", "--bundle", bundle, id) + do(b, bin, "delete", "-f", id)
		}}
	}
	b.Run("create+delete", func(b *testing.B) {
		benchInterleaved(b, []arm{createDelete("runc", runc), createDelete("karmor-runc", wrapper)})
	})
}

// bareExecWrapper builds a Go program that does nothing but exec runc with its arguments, built
// the way testutil.Binary builds karmor-runc, as the baseline for the wrapper's pass-through cost.
func bareExecWrapper(b *testing.B, runc string) string {
	dir := b.TempDir()
	src := fmt.Sprintf(`package main

import (
	"os"
	"syscall"
)

func main() { _ = syscall.Exec(%q, append([]string{%q}, os.Args[1:]...), os.Environ()) }
`, runc, runc)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module bare\n\ngo 1.26\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "bare")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the bare exec wrapper: %v\n%s", err, msg)
	}
	return out
}
