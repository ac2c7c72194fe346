// Package nri measures what karmor adds to container starts under containerd: a pod's start time
// (crictl runp + create + start) without karmor, with karmor-nri, and with karmor-runc as runc,
// all against one containerd v2 and a real karmord; and what karmor-runc adds to runc commands.
//
// Run it with bench/nri/run.sh (as root). Each benchmark reports the median of its iterations,
// so -benchtime=21x means a median over 21 pods.
package nri

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/runcwrap"
	"github.com/karmor/karmor/internal/testutil"
)

// samples collects one duration per iteration and reports their median and 90th percentile.
type samples []time.Duration

func (s samples) report(b *testing.B) {
	if len(s) == 0 {
		return
	}
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(sorted[len(sorted)/2]), "ms-median")
	b.ReportMetric(ms(sorted[len(sorted)*9/10]), "ms-p90")
}

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

// BenchmarkPodStart starts pods one after the other in three set-ups, side by side in one run.
func BenchmarkPodStart(b *testing.B) {
	testutil.RequireContainerd(b)
	k := startKarmord(b)
	hook := hookConfig(b, k)
	c := testutil.StartContainerd(b, testutil.ContainerdOptions{})

	runcCfg := filepath.Join(c.Dir, "karmor-runc.json")
	cfg, _ := json.Marshal(runcwrap.ConfigFromHook(hook, testutil.RequireCommand(b, "runc", "apt-get install runc")))
	if err := os.WriteFile(runcCfg, cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	var plugin *exec.Cmd
	stopPlugin := func() {
		if plugin != nil {
			_ = plugin.Process.Kill()
			_ = plugin.Wait()
			plugin = nil
		}
	}
	b.Cleanup(stopPlugin)

	modes := []struct {
		name  string
		setUp func(b *testing.B)
	}{
		{"without-karmor", func(b *testing.B) { c.Restart(b, testutil.ContainerdOptions{}) }},
		{"karmor-nri", func(b *testing.B) {
			c.Restart(b, testutil.ContainerdOptions{})
			logPath := filepath.Join(c.Dir, "karmor-nri.log")
			plugin = exec.Command(testutil.Binary(b, "karmor-nri"), "--nri-socket", c.NRISocket, "--hook-path", hook.Path,
				"--socket", hook.Socket, "--spool-dir", hook.SpoolDir, "--log-file", logPath)
			if err := plugin.Start(); err != nil {
				b.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				if lb, _ := os.ReadFile(logPath); strings.Contains(string(lb), "configured by the runtime") {
					break
				}
				if time.Now().After(deadline) {
					b.Fatal("karmor-nri did not register")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}},
		{"karmor-runc", func(b *testing.B) {
			stopPlugin()
			c.Restart(b, testutil.ContainerdOptions{DisableNRI: true, RuncBinary: testutil.Binary(b, "karmor-runc"),
				Env: []string{runcwrap.EnvConfig + "=" + runcCfg}})
		}},
	}
	pod := 0
	for _, m := range modes {
		ready := false
		b.Run(m.name, func(b *testing.B) {
			if !ready {
				m.setUp(b)
				ready = true
			}
			var s samples
			for range b.N {
				pod++
				spec := testutil.PodSpec{Name: fmt.Sprintf("bench-%d", pod), Labels: map[string]string{"app": "bench"}}
				start := time.Now()
				p, err := c.StartPodErr(spec)
				s = append(s, time.Since(start))
				if err != nil {
					b.Fatalf("pod %s: %v", spec.Name, err)
				}
				c.RemovePod(b, p.ID)
			}
			s.report(b)
		})
	}
}

// BenchmarkRuncCommand runs the same runc commands directly and through karmor-runc: `state` (a
// pass-through, which must cost no more than the wrapper's exec) and `create` + `delete` (which
// pays for the injection).
func BenchmarkRuncCommand(b *testing.B) {
	testutil.RequireRoot(b)
	runc := testutil.RequireCommand(b, "runc", "apt-get install runc")
	k := startKarmord(b)
	wrapper := testutil.Binary(b, "karmor-runc")
	root := b.TempDir()
	cfgPath := filepath.Join(b.TempDir(), "karmor-runc.json")
	cfg, _ := json.Marshal(runcwrap.ConfigFromHook(hookConfig(b, k), runc))
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), runcwrap.EnvConfig+"="+cfgPath)
	bundle := testutil.Bundle(b, []string{"sleep", "1000"}, nil)
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
	do(b, runc, "create", "--bundle", bundle, "bench-state")
	b.Cleanup(func() { _ = exec.Command(runc, "--root", root, "delete", "-f", "bench-state").Run() })

	// The floor for any wrapper written in Go: a program that only execs runc.
	bare := bareExecWrapper(b, runc)
	for _, bin := range []struct{ name, path string }{{"runc", runc}, {"bare-go-exec", bare}, {"karmor-runc", wrapper}} {
		b.Run("state/"+bin.name, func(b *testing.B) {
			var s samples
			for range b.N {
				s = append(s, do(b, bin.path, "state", "bench-state"))
			}
			s.report(b)
		})
	}
	for _, bin := range []struct{ name, path string }{{"runc", runc}, {"karmor-runc", wrapper}} {
		b.Run("create+delete/"+bin.name, func(b *testing.B) {
			var s samples
			for i := range b.N {
				// A fresh bundle each time, so the wrapper's injection is paid on every create.
				fresh := testutil.Bundle(b, []string{"sleep", "1000"}, nil)
				id := fmt.Sprintf("bench-%s-%d", bin.name, i)
				s = append(s, do(b, bin.path, "create", "--bundle", fresh, id)+do(b, bin.path, "delete", "-f", id))
			}
			s.report(b)
		})
	}
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
