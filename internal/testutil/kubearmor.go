package testutil

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The real KubeArmor daemon for tests. scripts/kubearmor-vm/prepare.sh builds it from
// ../shared/kubearmor (with system_monitor.bpf.o for this host's kernel and for the QEMU guest's)
// and records the paths in an env file; .ci/run runs it before the tests. On this host KubeArmor
// runs but cannot load BPF-LSM programs, so it enforces nothing here: host tests use it for its
// protocols (ka.sock, gRPC), and test/e2e/kubearmor proves enforcement in a QEMU guest.

// KubeArmorEnvFile is where prepare.sh records the paths of what it built.
const KubeArmorEnvFile = "/var/cache/karmor-kubearmor/env"

// KubeArmor's fixed endpoints: ka.sock's path is not configurable, and the gRPC port is its default.
const (
	KubeArmorSocket   = "/var/run/kubearmor/ka.sock"
	KubeArmorGRPCAddr = "127.0.0.1:32767"
	// kubeArmorSavedPolicies is where KubeArmor keeps the policies it restores at its next start.
	kubeArmorSavedPolicies = "/opt/kubearmor/policies"
	// kubeArmorLock serialises the tests of every package that run KubeArmor: its socket, port
	// and pinned BPF maps are per host.
	kubeArmorLock = "/run/karmor-test-kubearmor.lock"
	kubeArmorWait = 90 * time.Second
)

// KubeArmorEnv returns a variable prepare.sh sets (KARMOR_KUBEARMOR_BIN, ..._BPF_DIR,
// ..._GUEST_BIN, ..._GUEST_BPF_DIR, ..._VMLINUZ, ..._GUEST_RELEASE): from the environment, else
// from KubeArmorEnvFile; the test stops (loudly) when neither has it.
func KubeArmorEnv(t testing.TB, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	f, err := os.Open(KubeArmorEnvFile)
	if err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(s.Text()), "=")
			if ok && k == name && v != "" {
				return v
			}
		}
	}
	Unavailable(t, "%s is not set and %s does not have it (%v): run scripts/kubearmor-vm/prepare.sh as root (.ci/run does)",
		name, KubeArmorEnvFile, err)
	return ""
}

// KubeArmorOptions choose how a test KubeArmor runs.
type KubeArmorOptions struct {
	// Args are more flags after the non-Kubernetes, OCI-hooks defaults (a later flag wins).
	Args []string
	// KeepSavedPolicies keeps the policies an earlier KubeArmor saved; by default they are removed
	// before the first start, so that each test begins with a KubeArmor that holds nothing.
	KeepSavedPolicies bool
}

// KubeArmor is the real KubeArmor daemon, non-Kubernetes mode, taking containers from ka.sock
// (-useOCIHooks) and policies over gRPC. It can be stopped, killed and started again; when the
// test ends it is stopped, its log printed if the test failed, and the host lock released.
type KubeArmor struct {
	// LogPath has KubeArmor's stdout and stderr; AlertPath its alerts and logs as JSON lines.
	LogPath, AlertPath string

	bin, dir string
	args     []string
	cmd      *exec.Cmd
	exited   chan error
}

// StartKubeArmor starts the real KubeArmor and waits until it serves ka.sock and answers on gRPC.
func StartKubeArmor(t testing.TB, opts KubeArmorOptions) *KubeArmor {
	t.Helper()
	RequireRoot(t)
	bin := KubeArmorEnv(t, "KARMOR_KUBEARMOR_BIN")
	bpf := KubeArmorEnv(t, "KARMOR_KUBEARMOR_BPF_DIR")
	if _, err := os.Stat(filepath.Join(bpf, "system_monitor.bpf.o")); err != nil {
		Unavailable(t, "KubeArmor's BPF object is missing (%v): run scripts/kubearmor-vm/prepare.sh", err)
	}
	lockHost(t)
	dir, err := os.MkdirTemp("", "ka-")
	if err != nil {
		t.Fatal(err)
	}
	// KubeArmor looks for BPF/ beside its binary, then in $PWD/../BPF: run it from dir/run with
	// dir/BPF pointing at the objects built for this kernel.
	if err := os.Symlink(bpf, filepath.Join(dir, "BPF")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if !opts.KeepSavedPolicies {
		if err := os.RemoveAll(kubeArmorSavedPolicies); err != nil {
			t.Fatal(err)
		}
	}
	k := &KubeArmor{
		LogPath:   filepath.Join(dir, "kubearmor.log"),
		AlertPath: filepath.Join(dir, "alerts.jsonl"),
		bin:       bin,
		dir:       dir,
	}
	k.args = append([]string{"-k8s=false", "-useOCIHooks=true", "-enableKubeArmorPolicy=true",
		"-enableKubeArmorHostPolicy=false", "-lsm=bpf", "-defaultFilePosture=audit", "-defaultNetworkPosture=audit",
		"-defaultCapabilitiesPosture=audit", "-logPath=" + k.AlertPath}, opts.Args...)
	t.Cleanup(func() {
		k.Stop(t)
		if t.Failed() {
			t.Logf("KubeArmor log (%s), last lines:\n%s", k.LogPath, TailFile(k.LogPath, 40))
		}
		_ = os.RemoveAll(dir)
	})
	k.Start(t)
	return k
}

// lockHost holds the host-wide KubeArmor lock until the test ends.
func lockHost(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(kubeArmorLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", kubeArmorLock, err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}

// Start runs KubeArmor (again), appending to its log, and returns once it serves ka.sock and answers
// on gRPC.
func (k *KubeArmor) Start(t testing.TB) {
	t.Helper()
	if k.cmd != nil {
		t.Fatal("KubeArmor is already running")
	}
	logf, err := os.OpenFile(k.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	// A killed KubeArmor leaves its ka.sock behind; the new one replaces it (inode numbers are
	// reused, change times are not).
	stale := socketIdentity()
	cmd := exec.Command(k.bin, k.args...)
	cmd.Dir = filepath.Join(k.dir, "run")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start KubeArmor: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	k.cmd, k.exited = cmd, exited
	until := time.Now().Add(kubeArmorWait)
	for {
		// KubeArmor listens on its gRPC port long before it serves it (seconds, minutes under
		// QEMU), so only an answer counts. It serves gRPC after it listens on ka.sock, so an answer
		// should also mean this KubeArmor's socket is in place; the socket's identity makes sure a
		// killed one's stale socket file cannot fool the check.
		if err := kubeArmorAnswers(); err == nil {
			id := socketIdentity()
			if id == (syscall.Timespec{}) {
				t.Fatalf("KubeArmor serves gRPC but %s is not a socket", KubeArmorSocket)
			}
			if id != stale {
				return
			}
		}
		select {
		case werr := <-exited:
			k.cmd = nil
			t.Fatalf("KubeArmor exited during start-up (%v):\n%s", werr, TailFile(k.LogPath, 30))
		default:
		}
		if time.Now().After(until) {
			t.Fatalf("KubeArmor did not serve %s and %s within %v:\n%s", KubeArmorSocket, KubeArmorGRPCAddr,
				kubeArmorWait, TailFile(k.LogPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// kubeArmorAnswers makes one gRPC call to KubeArmor: ProbeService.getProbeData, which it serves in
// non-Kubernetes mode once its policy service is registered. The answer's content does not matter
// (it decodes into Empty, its fields kept as unknown), only that one came.
func kubeArmorAnswers() error {
	conn, err := grpc.NewClient(KubeArmorGRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return conn.Invoke(ctx, "/policy.ProbeService/getProbeData", &emptypb.Empty{}, &emptypb.Empty{})
}

// Stop ends KubeArmor with SIGTERM (KILL after a while), if it runs.
func (k *KubeArmor) Stop(t testing.TB) { t.Helper(); k.signal(t, syscall.SIGTERM) }

// Kill ends KubeArmor with SIGKILL, as a crash would: its socket and pinned maps stay behind.
func (k *KubeArmor) Kill(t testing.TB) { t.Helper(); k.signal(t, syscall.SIGKILL) }

func (k *KubeArmor) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if k.cmd == nil {
		return
	}
	defer func() { k.cmd = nil }()
	_ = k.cmd.Process.Signal(sig)
	select {
	case <-k.exited:
	case <-time.After(kubeArmorWait):
		t.Errorf("KubeArmor did not exit within %v of %v; killing it", kubeArmorWait, sig)
		_ = k.cmd.Process.Kill()
		<-k.exited
	}
}

// Log returns KubeArmor's log so far.
func (k *KubeArmor) Log() string {
	b, _ := os.ReadFile(k.LogPath)
	return string(b)
}

// socketIdentity tells one ka.sock from another: its change time; zero when there is no socket.
func socketIdentity() syscall.Timespec {
	fi, err := os.Stat(KubeArmorSocket)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return syscall.Timespec{}
	}
	return fi.Sys().(*syscall.Stat_t).Ctim
}
