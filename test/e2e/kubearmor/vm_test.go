// Package kubearmor proves that karmor drives the real KubeArmor to real enforcement: a policy
// pushed with `karmor oci push` and followed by karmord blocks a file read and a binary in a runc
// container, with BPF-LSM, in a QEMU guest running the stock Debian 12 kernel (this host's kernel
// cannot load BPF-LSM programs; see ../shared/docs/kubearmor.md).
//
// The guest runs scripts/kubearmor-vm/scenario/scenario.sh, which records what happened; this test
// judges the records.
package kubearmor

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
)

// guestDeadline bounds the whole guest run: KubeArmor alone takes a minute or more to start under
// TCG, and it starts twice.
const guestDeadline = 15 * time.Minute

// policyName is the policy of scripts/kubearmor-vm/scenario/policies.
const policyName = "web-guard"

func TestKubeArmorEnforcesRegistryPoliciesInVM(t *testing.T) {
	testutil.RequireRoot(t)
	for _, name := range []string{"KARMOR_KUBEARMOR_GUEST_BIN", "KARMOR_KUBEARMOR_GUEST_BPF_DIR", "KARMOR_KUBEARMOR_VMLINUZ"} {
		if _, err := os.Stat(testutil.KubeArmorEnv(t, name)); err != nil {
			testutil.Unavailable(t, "%s: %v: run scripts/kubearmor-vm/prepare.sh", name, err)
		}
	}
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Unavailable(t, "%s is not installed: run scripts/kubearmor-vm/prepare.sh", tool)
		}
	}
	repo := testutil.RepoRoot(t)
	bin := guestPrograms(t, repo)
	out := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), guestDeadline+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts/kubearmor-vm/run.sh"), out,
		filepath.Join(repo, "scripts/kubearmor-vm/scenario"))
	cmd.Env = append(os.Environ(), "BIN="+bin, "KARMOR_VM_TIMEOUT="+strconv.Itoa(int(guestDeadline.Seconds())))
	began := time.Now()
	output, runErr := cmd.CombinedOutput()
	t.Logf("guest run took %v:\n%s", time.Since(began).Round(time.Second), output)
	r := readResults(t, filepath.Join(out, "out"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("guest console, last lines:\n%s", testutil.TailFile(filepath.Join(out, "console.log"), 60))
			t.Logf("KubeArmor log, last lines:\n%s", testutil.TailFile(r.path("kubearmor.log"), 40))
			t.Logf("karmord log, last lines:\n%s", testutil.TailFile(r.path("karmord.log"), 40))
		}
	})
	if runErr != nil {
		t.Errorf("run.sh: %v", runErr)
	}

	kaLog := r.file("kubearmor.log")
	// KubeArmor answers Applied to policies even when it enforces nothing: it must have loaded
	// its BPF-LSM enforcer at both starts.
	if n := strings.Count(kaLog, "Initialized BPF-LSM Enforcer"); n != 2 {
		t.Errorf(`KubeArmor logged "Initialized BPF-LSM Enforcer" %d times, want 2 (one per start)`, n)
	}
	r.succeeded(t, "push-v1", "push-v2", "kubearmor-start-1", "kubearmor-start-2", "karmord-up")

	// d. KubeArmor started with no containers: karmord opened its ready gate, so the first
	// container after it was taken (acknowledged) and is enforced below.
	r.succeeded(t, "run-web-1", "web-1-acknowledged")
	for _, line := range strings.Split(kaLog, "\n") {
		// The empty detached message that opens the gate is refused as "container ID is empty";
		// any other refusal is a container KubeArmor did not take.
		if strings.Contains(line, "Failed to create container") && !strings.Contains(line, "container ID is empty") {
			t.Errorf("KubeArmor refused a container: %s", line)
		}
	}

	// a. v1 blocks the read of /etc/shadow and the binary /usr/local/bin/cat; other reads and
	// other binaries work.
	r.deniedWith(t, "a-shadow-denied", 1, "Permission denied")
	r.succeeded(t, "a-hello-read", "a-bin-cat-runs")
	r.outputHas(t, "a-hello-read", "hello from the container")
	r.execDenied(t, "a-tool-denied")
	t.Logf("a: web-1 enforced %ss after its start was acknowledged", r.seconds("a-shadow-denied"))

	// b. v2 drops the file rule: the read works again; the process rule stays.
	r.succeeded(t, "b-shadow-read")
	r.outputHas(t, "b-shadow-read", "not-a-real-hash")
	r.execDenied(t, "b-tool-denied")
	t.Logf("b: /etc/shadow readable %ss after v2 was pushed (policy interval 2s)", r.seconds("b-shadow-read"))

	// c. KubeArmor killed: web-2's start did not wait for it, karmord marked it away; after the
	// restart both containers are acknowledged and enforced again, untouched.
	r.succeeded(t, "c-run-web-2-while-down", "c-web-2-away", "c-web-1-acknowledged", "c-web-2-acknowledged",
		"c-web-2-hello-read")
	r.execDenied(t, "c-web-1-tool-denied")
	r.execDenied(t, "c-web-2-tool-denied")
	t.Logf("c: runc run took %ss with KubeArmor down; after its restart web-1 enforced in %ss, web-2 in %ss more",
		r.seconds("c-run-web-2-while-down"), r.seconds("c-web-1-tool-denied"), r.seconds("c-web-2-tool-denied"))
	// karmor containers -o json, as the guest saw it with KubeArmor down.
	var down []struct{ Name, KubeArmor string }
	if err := json.Unmarshal([]byte(r.file("containers-c-down.json")), &down); err != nil {
		t.Errorf("containers-c-down.json: %v", err)
	}
	for _, c := range down {
		if c.KubeArmor != "away" {
			t.Errorf("with KubeArmor down, karmord says KubeArmor's state of %s is %q, want away", c.Name, c.KubeArmor)
		}
	}
	if len(down) != 2 {
		t.Errorf("with KubeArmor down, karmord lists %d containers, want 2 (web-1, web-2)", len(down))
	}

	// e. KubeArmor's alerts for the denied accesses name our policy.
	alerts := r.alerts(t)
	for _, want := range []struct{ resource, operation string }{
		{"/etc/shadow", "File"},
		{"/usr/local/bin/cat", "Process"},
	} {
		found := false
		for _, a := range alerts {
			if a.PolicyName == policyName && a.Operation == want.operation && strings.Contains(a.Resource, want.resource) &&
				a.Action == "Block" && a.Result == "Permission denied" && a.Enforcer == "BPFLSM" {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no BPFLSM alert of policy %s blocking %s %s among %d alerts", policyName, want.operation, want.resource, len(alerts))
		}
	}
	t.Logf("KubeArmor started in %ss and %ss under TCG", r.seconds("kubearmor-start-1"), r.seconds("kubearmor-start-2"))
}

// guestPrograms builds karmor's programs and the demo registry, statically, into one directory.
func guestPrograms(t *testing.T, repo string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"karmor", "karmord", "karmor-hook"} {
		if err := os.Symlink(testutil.Binary(t, name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "karmor-demo-registry"), "./demo/registry")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the registry: %v\n%s", err, b)
	}
	return dir
}

// results are the scenario's records: results.txt's "NAME rc=N seconds=S" lines and the files.
type results struct {
	dir   string
	steps map[string]map[string]string
}

func readResults(t *testing.T, dir string) *results {
	t.Helper()
	r := &results{dir: dir, steps: map[string]map[string]string{}}
	f, err := os.Open(filepath.Join(dir, "results.txt"))
	if err != nil {
		t.Fatalf("the guest recorded no results: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 {
			continue
		}
		kv := map[string]string{}
		for _, f := range fields[1:] {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		r.steps[fields[0]] = kv
	}
	return r
}

func (r *results) path(name string) string { return filepath.Join(r.dir, name) }

func (r *results) file(name string) string {
	b, _ := os.ReadFile(r.path(name))
	return string(b)
}

func (r *results) seconds(step string) string { return r.steps[step]["seconds"] }

// rc is a step's exit status, or -1 when the scenario never got to it.
func (r *results) rc(step string) int {
	kv, ok := r.steps[step]
	if !ok {
		return -1
	}
	n, err := strconv.Atoi(kv["rc"])
	if err != nil {
		return -1
	}
	return n
}

func (r *results) succeeded(t *testing.T, steps ...string) {
	t.Helper()
	for _, s := range steps {
		if rc := r.rc(s); rc != 0 {
			t.Errorf("%s: exit status %d, want 0 (-1: not reached); output:\n%s", s, rc, r.file(s+".out"))
		}
	}
}

// deniedWith checks that a step failed with exit status rc and said why.
func (r *results) deniedWith(t *testing.T, step string, rc int, reason string) {
	t.Helper()
	out := r.file(step + ".out")
	if got := r.rc(step); got != rc || !strings.Contains(out, reason) {
		t.Errorf("%s: exit status %d, want %d with %q (-1: not reached); output:\n%s", step, got, rc, reason, out)
	}
}

// execDenied checks that runc exec failed because the binary could not be executed (runc says
// "exec: ...: permission denied").
func (r *results) execDenied(t *testing.T, step string) {
	t.Helper()
	out := r.file(step + ".out")
	if got := r.rc(step); got <= 0 || !strings.Contains(out, "permission denied") {
		t.Errorf("%s: exit status %d, want a failure with %q (-1: not reached); output:\n%s", step, got, "permission denied", out)
	}
}

func (r *results) outputHas(t *testing.T, step, want string) {
	t.Helper()
	if out := r.file(step + ".out"); !strings.Contains(out, want) {
		t.Errorf("%s: output does not have %q:\n%s", step, want, out)
	}
}

// alert holds the fields of a KubeArmor alert (a JSON line of its -logPath file) we judge.
type alert struct {
	PolicyName string `json:"PolicyName"`
	Operation  string `json:"Operation"`
	Resource   string `json:"Resource"`
	Action     string `json:"Action"`
	Result     string `json:"Result"`
	Enforcer   string `json:"Enforcer"`
}

func (r *results) alerts(t *testing.T) []alert {
	t.Helper()
	var all []alert
	for _, line := range strings.Split(r.file("alerts.jsonl"), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var a alert
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Errorf("alerts.jsonl: %v: %s", err, line)
			continue
		}
		all = append(all, a)
	}
	return all
}
