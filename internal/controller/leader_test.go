package controller

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

// replica is a karmor-controller process.
type replica struct {
	cmd     *exec.Cmd
	metrics string // base URL
	health  string // base URL
	log     string
	done    chan struct{}
	err     error // set when done is closed
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startReplica(t *testing.T, bin, kubeconfig, ns, name string) *replica {
	t.Helper()
	mport, hport := freePort(t), freePort(t)
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(bin, "--kubeconfig", kubeconfig, "--watch-namespace", ns,
		"--leader-election-namespace", leaseNamespace, "--leader-election-id", "lease-"+ns,
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "500ms",
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport), "--health-addr", fmt.Sprintf("127.0.0.1:%d", hport), "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	r := &replica{cmd: cmd, metrics: fmt.Sprintf("http://127.0.0.1:%d", mport), health: fmt.Sprintf("http://127.0.0.1:%d", hport),
		log: logPath, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); logFile.Close(); close(r.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("%s log:\n%s", name, testutil.TailFile(logPath, 60))
		}
	})
	return r
}

// metric reads one unlabelled or summed series from the replica's /metrics; -1 when it cannot.
func (r *replica) metric(name string) float64 {
	resp, err := http.Get(r.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err == nil {
				sum += v
				found = true
			}
		}
	}
	if !found {
		return 0
	}
	return sum
}

// TestTwoReplicas runs two karmor-controller processes as the non-admin user: one leads and
// writes, the other stands by and writes nothing; killed, the leader is replaced and the
// other applies the next version; stopped with SIGTERM, the new leader releases the Lease.
func TestTwoReplicas(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "replicas")
	bin := testutil.Binary(t, "karmor-controller")
	kubeconfig := k.WriteKubeconfig(t, controllerUser)
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/replicas:prod"

	push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	a := startReplica(t, bin, kubeconfig, ns, "a")
	b := startReplica(t, bin, kubeconfig, ns, "b")
	createSource(t, k, ns, "rep", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	waitCondition(t, k, ns, "rep", CondReady, metav1.ConditionTrue, ReasonApplied)

	var leader, standby *replica
	eventually(t, "one leader", func() (bool, string) {
		la, lb := a.metric("karmor_controller_leader"), b.metric("karmor_controller_leader")
		switch {
		case la == 1 && lb == 0:
			leader, standby = a, b
		case lb == 1 && la == 0:
			leader, standby = b, a
		default:
			return false, fmt.Sprintf("leader metrics a=%v b=%v", la, lb)
		}
		return true, ""
	})
	if w := leader.metric("karmor_controller_object_writes_total"); w < 1 {
		t.Errorf("the leader wrote %v objects", w)
	}
	if w := standby.metric("karmor_controller_object_writes_total"); w != 0 {
		t.Errorf("the standby wrote %v objects", w)
	}
	if c := standby.metric("karmor_controller_registry_checks_total"); c != 0 {
		t.Errorf("the standby checked the registry %v times", c)
	}
	for _, r := range []*replica{leader, standby} {
		for _, path := range []string{"/healthz", "/readyz"} {
			resp, err := http.Get(r.health + path)
			must(t, err)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s%s: %s", r.health, path, resp.Status)
			}
		}
	}
	if s := leader.metric("karmor_controller_source_ready"); s != 1 {
		t.Errorf("the leader's source_ready is %v", s)
	}

	// The leader dies without releasing the Lease: the standby takes over when it expires.
	must(t, leader.cmd.Process.Signal(syscall.SIGKILL))
	<-leader.done
	v2 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"), "api.yaml", testutil.BlockShellPolicy("api", "", "api"))
	eventually(t, "v2 applied by the new leader", func() (bool, string) {
		s := getSource(t, k, ns, "rep")
		return s.status.Digest == v2 && s.status.PolicyCount == 2, fmt.Sprintf("%+v", s.status)
	})
	if l := standby.metric("karmor_controller_leader"); l != 1 {
		t.Errorf("the standby's leader metric is %v after taking over", l)
	}
	if w := standby.metric("karmor_controller_object_writes_total"); w < 1 {
		t.Errorf("the new leader wrote %v objects", w)
	}

	// SIGTERM: the leader stops and releases the Lease (no holder), exiting 0.
	must(t, standby.cmd.Process.Signal(syscall.SIGTERM))
	<-standby.done
	if standby.err != nil {
		t.Errorf("karmor-controller exited with %v on SIGTERM", standby.err)
	}
	lease, err := adminKube(k).CoordinationV1().Leases(leaseNamespace).Get(context.Background(), "lease-"+ns, metav1.GetOptions{})
	must(t, err)
	if h := lease.Spec.HolderIdentity; h != nil && *h != "" {
		t.Errorf("the Lease is still held by %q after a clean stop", *h)
	}
}
