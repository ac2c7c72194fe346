package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// dockerCLI is Debian's docker client. Another client may come first on PATH (this project's
// machines have one in /usr/local/bin), so the test names it.
const (
	dockerCLI = "/usr/bin/docker"
	dockerd   = "/usr/sbin/dockerd"
	webPolicy = "KubeArmorPolicy/default/web-block"
)

// TestDockerContainersThroughKarmorRunc: `karmor hook install --runtime docker --default-runtime`
// registers karmor-runc in daemon.json (other keys kept); dockerd runs `docker run --name web
// --label app=web` through it, and karmord lists the container with its name and labels and the
// policy that selects app=web; a dockerd restart (live-restore) and a karmord restart lose
// nothing; docker stop and rm are seen; uninstall takes karmor-runc out of daemon.json again.
func TestDockerContainersThroughKarmorRunc(t *testing.T) {
	testutil.RequireRoot(t)
	for _, p := range []string{dockerCLI, dockerd} {
		if _, err := os.Stat(p); err != nil {
			testutil.Unavailable(t, "%s missing; install Debian's docker.io (.ci/install.d/20-docker.sh does)", p)
		}
	}
	rootfs := testutil.BusyboxRootfs(t)
	karmor := testutil.Binary(t, "karmor")
	hookBin := testutil.Binary(t, "karmor-hook")
	runcBin := testutil.Binary(t, "karmor-runc")

	dir, err := os.MkdirTemp("", "kdock-") // short: dockerd's and containerd's sockets live under it
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	policies := filepath.Join(dir, "policies")
	if err := os.MkdirAll(policies, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policies, "web.yaml"), []byte(testutil.BlockShellPolicy("web-block", "", "web")), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &dockerDaemon{dir: dir, dataRoot: filepath.Join(dir, "data"), execRoot: filepath.Join(dir, "exec"),
		daemonJSON: filepath.Join(dir, "daemon.json"), runcConfig: filepath.Join(dir, "karmor-runc.json")}
	k := testutil.NewKarmord(t, testutil.KarmordOptions{
		// Docker's runc state root: every runtime of dockerd keeps its state under runtime-runc/moby.
		RuntimeRoots: []string{filepath.Join(d.execRoot, "runtime-runc", "moby")},
		Args:         []string{"--docker-root", d.dataRoot, "--policy-dir", policies, "--reconcile-interval", "1s"},
		Start:        true,
	})

	// An operator's daemon.json with a key of its own; live-restore keeps containers running
	// across dockerd restarts.
	if err := os.WriteFile(d.daemonJSON, []byte(`{"live-restore": true, "log-level": "info"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	installArgs := []string{"--runtime", "docker", "--daemon-json", d.daemonJSON, "--runc-config", d.runcConfig,
		"--runc-path", filepath.Join(dir, "bin", "karmor-runc"), "--hook-path", filepath.Join(dir, "bin", "karmor-hook")}
	out := run(t, karmor, append([]string{"hook", "install", "--default-runtime", "--hook-binary", hookBin, "--runc-binary", runcBin,
		"--socket", k.Socket, "--spool-dir", k.SpoolDir}, installArgs...)...)
	if !strings.Contains(out, "systemctl reload docker") {
		t.Errorf("install does not say how to reload dockerd:\n%s", out)
	}
	var daemonCfg map[string]any
	readJSON(t, d.daemonJSON, &daemonCfg)
	if daemonCfg["live-restore"] != true || daemonCfg["log-level"] != "info" || daemonCfg["default-runtime"] != "karmor" ||
		fmt.Sprint(daemonCfg["runtimes"]) != fmt.Sprintf("map[karmor:map[path:%s]]", filepath.Join(dir, "bin", "karmor-runc")) {
		t.Fatalf("daemon.json after install: %v", daemonCfg)
	}
	if again := run(t, karmor, append([]string{"hook", "install", "--default-runtime", "--hook-binary", hookBin, "--runc-binary", runcBin,
		"--socket", k.Socket, "--spool-dir", k.SpoolDir}, installArgs...)...); !strings.Contains(again, "already registered") {
		t.Errorf("second install:\n%s", again)
	}
	statusArgs := []string{"hook", "status", "--runtime", "docker", "--daemon-json", d.daemonJSON, "--runc-config", d.runcConfig}
	if out, code := runCode(t, karmor, statusArgs...); code != 0 || !strings.Contains(out, "the default-runtime") || !strings.Contains(out, "karmord answers") {
		t.Errorf("hook status --runtime docker: exit %d\n%s", code, out)
	}

	d.start(t)
	t.Cleanup(func() { d.stop(t) })
	d.docker(t, "import", tarOf(t, rootfs, dir), "busybox:karmor")

	webID := d.docker(t, "run", "-d", "--network", "none", "--name", "web", "--label", "app=web", "busybox:karmor", "/bin/sleep", "1000")
	dbID := d.docker(t, "run", "-d", "--network", "none", "--name", "db", "--label", "app=db", "busybox:karmor", "/bin/sleep", "1000")
	checkListed := func(when string) {
		t.Helper()
		list := waitList(t, k, when, func(l []agentapi.Container) bool { return find(l, webID) != nil && find(l, dbID) != nil })
		web, db := find(list, webID), find(list, dbID)
		if web.Name != "web" || web.Labels["app"] != "web" || web.Image != "busybox:karmor" || fmt.Sprint(web.Policies) != "["+webPolicy+"]" {
			t.Errorf("%s: web as karmord lists it: name %q image %q labels %v policies %v", when, web.Name, web.Image, web.Labels, web.Policies)
		}
		if db.Name != "db" || db.Labels["app"] != "db" || len(db.Policies) != 0 {
			t.Errorf("%s: db as karmord lists it: name %q labels %v policies %v", when, db.Name, db.Labels, db.Policies)
		}
	}
	checkListed("after docker run")
	if c := find(waitList(t, k, "web", nil), webID); c.Source != agentapi.SourceHook {
		t.Errorf("web came from %q, want the hook (karmor-runc added it)", c.Source)
	}
	if out := run(t, karmor, "containers", "--socket", k.Socket); !strings.Contains(out, "web") || !strings.Contains(out, "app=web") || !strings.Contains(out, "web-block") {
		t.Errorf("karmor containers:\n%s", out)
	}

	// dockerd restarts (live-restore keeps the containers): karmord's table is unchanged.
	d.stop(t)
	d.start(t)
	checkListed("after a dockerd restart")
	if ps := d.docker(t, "ps", "-q", "--no-trunc"); !strings.Contains(ps, webID) {
		t.Fatalf("web did not survive dockerd's restart: %q", ps)
	}

	// karmord restarts: its reconciliation with Docker's runc state brings both back, named
	// and labelled from dockerd's records.
	k.Kill(t)
	k.Start(t)
	checkListed("after a karmord restart")

	d.docker(t, "stop", "-t", "1", "web")
	waitList(t, k, "web gone after docker stop", func(l []agentapi.Container) bool { return find(l, webID) == nil })
	d.docker(t, "rm", "-f", "db")
	waitList(t, k, "db gone after docker rm -f", func(l []agentapi.Container) bool { return find(l, dbID) == nil })
	d.docker(t, "rm", "web")

	d.stop(t)
	uninstall := run(t, karmor, append([]string{"hook", "uninstall"}, installArgs[:len(installArgs)-2]...)...)
	readJSON(t, d.daemonJSON, &daemonCfg)
	daemonCfg = nil
	readJSON(t, d.daemonJSON, &daemonCfg)
	if _, ok := daemonCfg["runtimes"]; ok || daemonCfg["default-runtime"] != nil || daemonCfg["live-restore"] != true {
		t.Errorf("daemon.json after uninstall: %v\n%s", daemonCfg, uninstall)
	}
	if _, err := os.Stat(filepath.Join(dir, "bin", "karmor-runc")); !os.IsNotExist(err) {
		t.Errorf("karmor-runc still installed after uninstall: %v", err)
	}
}

// dockerDaemon is a dockerd of the test's own: private data and exec roots, socket and
// daemon.json, no networking of its own (these machines allow none).
type dockerDaemon struct {
	dir, dataRoot, execRoot, daemonJSON, runcConfig string

	cmd    *exec.Cmd
	exited chan error
}

func (d *dockerDaemon) socket() string { return filepath.Join(d.dir, "docker.sock") }

func (d *dockerDaemon) start(t *testing.T) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(d.dir, "dockerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(dockerd, "--config-file", d.daemonJSON, "--data-root", d.dataRoot, "--exec-root", d.execRoot,
		"-H", "unix://"+d.socket(), "--pidfile", filepath.Join(d.dir, "docker.pid"),
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs")
	// Debian's containerd and runc, as on a Docker host; karmor-runc's configuration through the
	// variable it reads (dockerd's containerd and its shims inherit the environment).
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "KARMOR_RUNC_CONFIG=" + d.runcConfig}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d.cmd, d.exited = cmd, make(chan error, 1)
	go func() { d.exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, code := d.dockerCode(t, "version"); code == 0 {
			return
		}
		select {
		case err := <-d.exited:
			d.cmd = nil
			t.Fatalf("dockerd exited during start-up (%v):\n%s", err, testutil.TailFile(filepath.Join(d.dir, "dockerd.log"), 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 60s:\n%s", testutil.TailFile(filepath.Join(d.dir, "dockerd.log"), 30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stop ends dockerd with SIGTERM and waits; with live-restore its containers keep running.
func (d *dockerDaemon) stop(t *testing.T) {
	t.Helper()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(60 * time.Second):
		t.Errorf("dockerd did not stop within 60s of SIGTERM; killing it")
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
	d.cmd = nil
	if t.Failed() {
		t.Logf("dockerd log, last lines:\n%s", testutil.TailFile(filepath.Join(d.dir, "dockerd.log"), 40))
	}
}

func (d *dockerDaemon) dockerCode(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, dockerCLI, append([]string{"-H", "unix://" + d.socket()}, args...)...)
	// Only stdout is the answer: the CLI prints the daemon's warnings (IPv4 forwarding off,
	// unsupported cgroup controllers, which depend on the host's state) on stderr, and a
	// container ID followed by one would match nothing.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return stdout.String() + stderr.String(), ee.ExitCode()
		}
		return stdout.String() + stderr.String() + err.Error(), -1
	}
	if stderr.Len() > 0 {
		t.Logf("docker %s (stderr): %s", strings.Join(args, " "), strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), 0
}

func (d *dockerDaemon) docker(t *testing.T, args ...string) string {
	t.Helper()
	out, code := d.dockerCode(t, args...)
	if code != 0 {
		t.Fatalf("docker %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

func tarOf(t *testing.T, rootfs, dir string) string {
	t.Helper()
	tarball := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return tarball
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, code := runCode(t, bin, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\n%s", filepath.Base(bin), strings.Join(args, " "), code, out)
	}
	return out
}

func runCode(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("%s: %v", bin, err)
	}
	return string(out), 0
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
}

// waitList polls karmord's list until cond holds (nil: at once) and returns it.
func waitList(t *testing.T, k *testutil.Karmord, what string, cond func([]agentapi.Container) bool) []agentapi.Container {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		list, err := k.Client.List(ctx)
		cancel()
		if err == nil && (cond == nil || cond(list)) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("karmord never showed %s (%v); it lists %d containers", what, err, len(list))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func find(list []agentapi.Container, id string) *agentapi.Container {
	for i := range list {
		if list[i].ID == id {
			return &list[i]
		}
	}
	return nil
}
