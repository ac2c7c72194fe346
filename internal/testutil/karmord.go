package testutil

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/pkg/agentapi"
)

// karmordWait bounds every wait for karmord (to answer, to exit). It is generous on purpose: the
// tests wait for karmord, they do not time it.
const karmordWait = 30 * time.Second

// karmordLogLines is how much of karmord's log a failed test prints.
const karmordLogLines = 60

// KarmordOptions choose how a test karmord runs.
type KarmordOptions struct {
	// RuntimeRoots are the runtime state roots karmord reconciles with (--runtime-root each).
	// None gives it an empty directory of its own, so that every container it knows comes from
	// karmor-hook or its spool.
	RuntimeRoots []string
	// Args are more flags, after the ones that give karmord its private paths.
	Args []string
	// Env is karmord's environment; nil inherits the test's.
	Env []string
	// Start starts karmord now and waits until it answers; otherwise the test calls Start.
	Start bool
}

// Karmord is the real karmord binary (built by Binary) with its own socket, spool and state in a
// new directory. It can be stopped, killed and started again on the same paths. When the test
// ends it is stopped, its log's last lines are printed if the test failed, and the directory goes.
type Karmord struct {
	Dir      string
	Socket   string
	SpoolDir string
	StateDir string
	LogPath  string
	// Client talks to this karmord.
	Client *agentapi.Client

	bin    string
	args   []string
	env    []string
	cmd    *exec.Cmd
	exited chan error // receives the process's exit once
}

// NewKarmord prepares a karmord for the test, and starts it when opts.Start is set.
func NewKarmord(t testing.TB, opts KarmordOptions) *Karmord {
	t.Helper()
	bin := Binary(t, "karmord")
	dir, err := os.MkdirTemp("", "kd-") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	k := &Karmord{
		Dir: dir,
		// In a directory karmord has to create, as it does for its default socket.
		Socket:   filepath.Join(dir, "run", "karmor.sock"),
		SpoolDir: filepath.Join(dir, "spool"),
		StateDir: filepath.Join(dir, "state"),
		LogPath:  filepath.Join(dir, "karmord.log"),
		bin:      bin,
		env:      opts.Env,
	}
	k.Client = agentapi.NewClient(k.Socket)
	k.Client.Timeout = 10 * time.Second
	roots := opts.RuntimeRoots
	if len(roots) == 0 {
		empty := filepath.Join(dir, "no-runtime")
		if err := os.MkdirAll(empty, 0o700); err != nil {
			t.Fatal(err)
		}
		roots = []string{empty}
	}
	k.args = []string{"--socket", k.Socket, "--spool-dir", k.SpoolDir, "--state-dir", k.StateDir, "--log-level", "debug"}
	for _, r := range roots {
		k.args = append(k.args, "--runtime-root", r)
	}
	k.args = append(k.args, opts.Args...)
	t.Cleanup(func() {
		k.Stop(t)
		if t.Failed() {
			t.Logf("karmord log (%s), last lines:\n%s", k.LogPath, TailFile(k.LogPath, karmordLogLines))
		}
		_ = os.RemoveAll(dir)
	})
	if opts.Start {
		k.Start(t)
	}
	return k
}

// Start runs karmord, appending to its log, and returns once it answers a list request.
func (k *Karmord) Start(t testing.TB) {
	t.Helper()
	if k.cmd != nil {
		t.Fatal("karmord is already running")
	}
	logf, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(k.bin, k.args...)
	cmd.Env = k.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start karmord: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	k.cmd, k.exited = cmd, exited
	until := time.Now().Add(karmordWait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := k.Client.List(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case werr := <-exited:
			k.cmd = nil
			t.Fatalf("karmord exited during start-up (%v):\n%s", werr, TailFile(k.LogPath, 30))
		default:
		}
		if time.Now().After(until) {
			t.Fatalf("karmord did not answer within %v: %v\n%s", karmordWait, err, TailFile(k.LogPath, 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends karmord with SIGTERM, if it runs, and fails the test unless it exits cleanly.
func (k *Karmord) Stop(t testing.TB) {
	t.Helper()
	if err := k.Signal(t, syscall.SIGTERM); err != nil {
		t.Errorf("karmord exited with %v after SIGTERM", err)
	}
}

// Kill ends karmord with SIGKILL, if it runs: no clean-up, its socket stays behind.
func (k *Karmord) Kill(t testing.TB) {
	t.Helper()
	_ = k.Signal(t, syscall.SIGKILL)
}

// Signal sends sig to karmord, if it runs, waits for it to exit and returns how it exited (nil
// for status 0). A karmord that outlives the wait fails the test and is killed.
func (k *Karmord) Signal(t testing.TB, sig syscall.Signal) error {
	t.Helper()
	if k.cmd == nil {
		return nil
	}
	defer func() { k.cmd = nil }()
	_ = k.cmd.Process.Signal(sig)
	select {
	case err := <-k.exited:
		return err
	case <-time.After(karmordWait):
		t.Errorf("karmord did not exit within %v of %v; killing it", karmordWait, sig)
		_ = k.cmd.Process.Kill()
		<-k.exited
		return nil
	}
}

// HookedBundle makes a busybox bundle running args (see Bundle; edit may be nil) whose
// config.json runs karmor-hook, put there by `karmor hook inject`, reporting to k.
func HookedBundle(t testing.TB, k *Karmord, args []string, edit func(*rspec.Spec)) string {
	t.Helper()
	bundle := Bundle(t, args, edit)
	out, err := exec.Command(Binary(t, "karmor"), "hook", "inject", bundle, "--hook-path", Binary(t, "karmor-hook"),
		"--socket", k.Socket, "--spool-dir", k.SpoolDir, "--timeout", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("karmor hook inject: %v\n%s", err, out)
	}
	return bundle
}

// TailFile returns the last n lines of a file, for failure messages.
func TailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
