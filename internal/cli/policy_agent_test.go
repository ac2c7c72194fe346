package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/agent"
	"github.com/karmor/karmor/internal/kubearmor/kapolicytest"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

const blockShellYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: block-shell
spec:
  severity: 5
  selector:
    matchLabels:
      app: web
  process:
    matchPaths:
    - path: /bin/sh
  file:
    matchDirectories:
    - dir: /etc/
      recursive: true
      readOnly: true
      action: Audit
  action: Block
`

// shopAuditYAML selects app=web in namespace shop, except tier=front.
const shopAuditYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: web-audit
  namespace: shop
spec:
  selector:
    matchLabels:
      app: web
    matchExpressions:
    - key: label
      operator: NotIn
      values: [tier=front]
  file:
    matchPaths:
    - path: /etc/shadow
  action: Audit
`

const nodeAuditYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: node-audit
spec:
  nodeSelector:
    matchLabels:
      kubearmor.io/hostname: test-node
  process:
    matchPaths:
    - path: /usr/bin/passwd
  action: Audit
`

// policyAgent runs karmord in-process following a policy directory holding files (name, content
// pairs), and returns its socket and the directory.
func policyAgent(t *testing.T, files ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	for i := 0; i+1 < len(files); i += 2 {
		writePolicyFile(t, filepath.Join(dir, files[i]), files[i+1])
	}
	sock, _ := startConfiguredAgent(t, func(c *agent.Config) {
		c.PolicyDirs = []string{dir}
		c.NodeName = "test-node"
		c.NodeLabels = map[string]string{"zone": "z1"}
	})
	return sock, dir
}

// writePolicyFile replaces a file atomically, as editors and config managers do.
func writePolicyFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// outsideWeb is a runc container outside Kubernetes whose annotations say app=web.
func outsideWeb() *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime",
		Container: agentapi.Container{ID: "aaaa1111", Name: "web1", PID: 11, Annotations: map[string]string{"app": "web"}}}
}

// shopFront is a Kubernetes container in namespace shop labelled app=web, tier=front.
func shopFront() *agentapi.Event {
	return &agentapi.Event{Kind: agentapi.KindStart, Stage: "createRuntime",
		Container: agentapi.Container{ID: "bbbb2222", Name: "front", PID: 22, Pod: "front-0", Namespace: "shop", ContainerName: "front",
			Labels: map[string]string{"app": "web", "tier": "front"}}}
}

func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out, errOut := containersCLI(args...)
	if code != ExitOK {
		t.Fatalf("karmor %v: exit %d: %s", args, code, errOut)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("karmor %v: %v\n%s", args, err, out)
	}
}

func TestContainersShowMatchedPolicies(t *testing.T) {
	sock, _ := policyAgent(t, "a.yaml", blockShellYAML, "b.yaml", shopAuditYAML, "node.yaml", nodeAuditYAML)
	reportToAgent(t, sock, outsideWeb())
	reportToAgent(t, sock, shopFront())

	var list []containerView
	cliJSON(t, &list, "containers", "--socket", sock, "-o", "json")
	if len(list) != 2 {
		t.Fatalf("%d containers", len(list))
	}
	// Outside Kubernetes every namespace's policies select by labels (annotations here); in
	// Kubernetes block-shell is in another namespace and web-audit's NotIn excludes tier=front.
	if want := []string{"KubeArmorPolicy/default/block-shell", "KubeArmorPolicy/shop/web-audit"}; !slices.Equal(list[0].Policies, want) {
		t.Errorf("web1's policies %v, want %v", list[0].Policies, want)
	}
	if list[1].Policies == nil || len(list[1].Policies) != 0 {
		t.Errorf("front's policies %#v, want []", list[1].Policies)
	}

	code, out, errOut := containersCLI("containers", "--socket", sock)
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q (no source is failing)", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if !strings.Contains(lines[0], "POLICIES") || !strings.Contains(lines[1], "ksp/default/block-shell,ksp/shop/web-audit") {
		t.Errorf("table:\n%s", out)
	}
}

func TestPolicyExplain(t *testing.T) {
	sock, _ := policyAgent(t, "a.yaml", blockShellYAML, "b.yaml", shopAuditYAML, "node.yaml", nodeAuditYAML)
	reportToAgent(t, sock, outsideWeb())
	reportToAgent(t, sock, shopFront())

	var e agentapi.Explanation
	cliJSON(t, &e, "policy", "explain", "front", "--socket", sock, "-o", "json")
	if e.Container == nil || e.Container.ID != "bbbb2222" || e.Generation != 1 || len(e.Verdicts) != 3 || len(e.Rules) != 0 {
		t.Fatalf("explanation of front: %+v", e)
	}
	reasons := map[string]string{}
	for _, v := range e.Verdicts {
		if v.Applies {
			t.Errorf("%s applies to front", v.Policy)
		}
		reasons[v.Name] = strings.Join(v.Reasons, "; ")
		if !strings.HasPrefix(v.Source, "dir:") || v.File == "" || v.Selects == "" {
			t.Errorf("verdict %+v lacks its source, file or selector", v)
		}
	}
	for name, want := range map[string]string{"block-shell": "other namespace", "web-audit": "NotIn", "node-audit": "host policy"} {
		if !strings.Contains(reasons[name], want) {
			t.Errorf("%s: reasons %q lack %q", name, reasons[name], want)
		}
	}

	var web agentapi.Explanation
	cliJSON(t, &web, "policy", "explain", "web1", "--socket", sock, "-o", "json")
	if got := web.Rules; len(got) != 3 || got[0].Action != "Block" || got[0].Severity != 5 || got[0].Value != "/bin/sh" ||
		got[1].Action != "Audit" || !got[1].Recursive || !got[1].ReadOnly || got[2].Policy != "KubeArmorPolicy/shop/web-audit" {
		t.Fatalf("web1's effective rules: %+v", got)
	}

	code, out, errOut := containersCLI("policy", "explain", "web1", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"Container web1 (aaaa1111), outside Kubernetes", "2 of 3 policies apply", "APPLIES         KubeArmorPolicy default/block-shell",
		"does not apply  KubeArmorHostPolicy node-audit", "host policy: applies to the node", "Effective rules (3)",
		"Block   5         process  path /bin/sh", "recursive"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain text lacks %q:\n%s", want, out)
		}
	}

	var node agentapi.Explanation
	cliJSON(t, &node, "policy", "explain", "--node", "--socket", sock, "-o", "json")
	if node.Node == nil || node.Node.Name != "test-node" || node.Node.Labels["zone"] != "z1" || node.Container != nil ||
		len(node.Rules) != 1 || node.Rules[0].Value != "/usr/bin/passwd" || node.Rules[0].Action != "Audit" {
		t.Fatalf("node explanation: %+v", node)
	}

	code, _, errOut = containersCLI("policy", "explain", "nope", "--socket", sock)
	if code != ExitFailure || !strings.Contains(errOut, `no live container with id, id prefix or name "nope"`) {
		t.Errorf("unknown container: exit %d, %s", code, errOut)
	}
}

func TestPolicyList(t *testing.T) {
	sock, dir := policyAgent(t, "a.yaml", blockShellYAML, "node.yaml", nodeAuditYAML)
	var s agentapi.PolicyState
	cliJSON(t, &s, "policy", "list", "--socket", sock, "-o", "json")
	if s.Generation != 1 || s.Node.Name != "test-node" || len(s.Sources) != 1 || len(s.Policies) != 2 {
		t.Fatalf("policy state: %+v", s)
	}
	src := s.Sources[0]
	if src.Name != "dir:"+dir || src.Kind != "dir" || src.Policies != 2 || src.Failing || src.LoadedAt.IsZero() || !strings.HasPrefix(src.Digest, "sha256:") {
		t.Errorf("source: %+v", src)
	}
	p := s.Policies[0]
	if p.ID != "KubeArmorPolicy/default/block-shell" || p.Source != src.Name || p.File != filepath.Join(dir, "a.yaml") || p.Scope != "namespace" ||
		p.Selects != `namespace "default", app=web` || p.Rules != 2 || !p.LoadedAt.Equal(src.LoadedAt) {
		t.Errorf("policy: %+v", p)
	}

	code, out, errOut := containersCLI("policy", "list", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"generation 1", "2 policies in force on node test-node (zone=z1)", "dir:" + dir, "ok",
		"KubeArmorHostPolicy  node-audit", "node kubearmor.io/hostname=test-node"} {
		if !strings.Contains(out, want) {
			t.Errorf("list text lacks %q:\n%s", want, out)
		}
	}
}

// TestPolicyChangesInListAndWatch: a directory change is in force within a second and seen by
// the watch, the containers' policies follow it, and a broken file leaves the last good set in
// force with the error visible in the watch and in the list.
func TestPolicyChangesInListAndWatch(t *testing.T) {
	sock, dir := policyAgent(t, "a.yaml", blockShellYAML)
	reportToAgent(t, sock, outsideWeb())

	var out, errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run([]string{"containers", "-w", "--socket", sock}, strings.NewReader(""), &out, &errOut)
	}()
	waitOutput(t, &out, "listed", "policies=ksp/default/block-shell")

	writePolicyFile(t, filepath.Join(dir, "a.yaml"), strings.Replace(blockShellYAML, "app: web", "app: api", 1))
	waitOutput(t, &out, "policy", "generation=2")
	var list []containerView
	cliJSON(t, &list, "containers", "--socket", sock, "-o", "json")
	if len(list) != 1 || len(list[0].Policies) != 0 {
		t.Fatalf("after the selector moved to app=api: %+v", list)
	}

	writePolicyFile(t, filepath.Join(dir, "a.yaml"), strings.Replace(blockShellYAML, "action: Block", "actionn: Block", 1))
	waitOutput(t, &out, "policy-error", "generation=2")
	var s agentapi.PolicyState
	cliJSON(t, &s, "policy", "list", "--socket", sock, "-o", "json")
	if s.Generation != 2 || len(s.Policies) != 1 || !s.Sources[0].Failing || !strings.Contains(s.Sources[0].LastError, "actionn") {
		t.Fatalf("after a broken write: %+v", s)
	}
	code, text, _ := containersCLI("policy", "list", "--socket", sock)
	if code != ExitOK || !strings.Contains(text, "FAILING (last good policies in force)") || !strings.Contains(text, "actionn") {
		t.Errorf("list text with a failing source:\n%s", text)
	}
	code, _, warning := containersCLI("containers", "--socket", sock)
	if code != ExitOK || !strings.Contains(warning, "Warning: policy source dir:"+dir+" is failing") || !strings.Contains(warning, "actionn") {
		t.Errorf("karmor containers with a failing source: exit %d, stderr %q", code, warning)
	}
	select {
	case code := <-done:
		t.Fatalf("the watch ended (exit %d): %s", code, errOut.String())
	default:
	}
}

// waitOutput waits for a line of out holding every one of wants.
func waitOutput(t *testing.T, out *testutil.SyncBuffer, wants ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, line := range strings.Split(out.String(), "\n") {
			all := true
			for _, w := range wants {
				all = all && strings.Contains(line, w)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in the watch:\n%s", wants, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestContainersWatchFromRetained(t *testing.T) {
	sock, stop := startContainersAgent(t)
	reportToAgent(t, sock, webContainerStart())
	reportToAgent(t, sock, &agentapi.Event{Kind: agentapi.KindStop, Stage: "poststop", Container: agentapi.Container{ID: "0123456789abcdef0123"}})
	var out, errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Run([]string{"containers", "-w", "--from-seq", "0", "--socket", sock}, strings.NewReader(""), &out, &errOut)
	}()
	waitOutput(t, &out, "stop", "web1")
	stop()
	<-done
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "start") || strings.Contains(out.String(), "listed") {
		t.Fatalf("--from-seq 0 replays the retained events without listing; got:\n%s", out.String())
	}
}

func TestPolicyAgentUsageAndErrors(t *testing.T) {
	for _, args := range [][]string{
		{"policy", "explain"},
		{"policy", "explain", "web1", "--node"},
		{"policy", "explain", "a", "b"},
		{"policy", "list", "extra"},
		{"policy", "list", "-o", "yaml"},
		{"policy", "explain", "web1", "-o", "table"},
	} {
		if code, _, errOut := containersCLI(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
	sock := filepath.Join(t.TempDir(), "absent.sock")
	for _, args := range [][]string{{"policy", "list", "--socket", sock}, {"policy", "explain", "--node", "--socket", sock}} {
		code, _, errOut := containersCLI(args...)
		if code != ExitFailure || !strings.Contains(errOut, "is karmord running?") {
			t.Errorf("%v: exit %d, %s", args, code, errOut)
		}
	}
}

// webNameYAML selects the container named "web" outside Kubernetes: karmor matches the name
// exactly, KubeArmor as an unanchored regular expression (so web1 too).
const webNameYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: web-name
spec:
  selector:
    matchLabels:
      kubearmor.io/container.name: web
  file:
    matchPaths:
    - path: /etc/passwd
  action: Block
`

const clusterYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: prod-shadow
spec:
  selector:
    matchExpressions:
    - key: namespace
      operator: In
      values: [prod]
  file:
    matchPaths:
    - path: /etc/shadow
  action: Block
`

// TestPolicyListAndExplainShowKubeArmor: with karmord sending KubeArmor policies (a stand-in
// PolicyService here), `policy list` has a KUBEARMOR column and says why a policy is not sent,
// and `policy explain` shows KubeArmor's state per verdict and where its non-Kubernetes
// matching differs from karmor's: web1's app=web is an annotation, which the container feed
// does not send as a label, and web-name's container name is a regular expression there.
func TestPolicyListAndExplainShowKubeArmor(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{"a.yaml": blockShellYAML, "b.yaml": webNameYAML, "c.yaml": clusterYAML} {
		writePolicyFile(t, filepath.Join(dir, name), content)
	}
	ka := kapolicytest.New(nil)
	addr, _ := kapolicytest.Serve(t, "127.0.0.1:0", ka)
	sock, _ := startConfiguredAgent(t, func(c *agent.Config) {
		c.PolicyDirs = []string{dir}
		c.KubeArmorPolicyAddr = addr
	})
	reportToAgent(t, sock, outsideWeb())

	deadline := time.Now().Add(10 * time.Second)
	var s agentapi.PolicyState
	for {
		cliJSON(t, &s, "policy", "list", "--socket", sock, "-o", "json")
		if len(s.Policies) == 3 && s.Policies[0].KubeArmor == "Applied" && s.Policies[1].KubeArmor == "Applied" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("KubeArmor states: %+v", s.Policies)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := s.Policies[2]; p.KubeArmor != "NotSent" || !strings.Contains(p.KubeArmorDetail, "cluster policies") {
		t.Errorf("cluster policy: %+v", p)
	}
	code, out, errOut := containersCLI("policy", "list", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"KUBEARMOR", "Applied", "NotSent", "KubeArmor: KubeArmorClusterPolicy prod-shadow: NotSent: not sent to KubeArmor: KubeArmor outside Kubernetes takes no cluster policies"} {
		if !strings.Contains(out, want) {
			t.Errorf("list text lacks %q:\n%s", want, out)
		}
	}

	var e agentapi.Explanation
	cliJSON(t, &e, "policy", "explain", "web1", "--socket", sock, "-o", "json")
	differs := map[string]string{}
	for _, v := range e.Verdicts {
		differs[v.Name] = v.KubeArmorDiffers
		if v.KubeArmor == "" {
			t.Errorf("%s: no KubeArmor state", v.Name)
		}
	}
	if d := differs["block-shell"]; !strings.HasPrefix(d, "KubeArmor does not apply it: app=web is not among the labels karmord sends KubeArmor") {
		t.Errorf("block-shell: %q", d)
	}
	if d := differs["web-name"]; !strings.HasPrefix(d, "KubeArmor applies it:") || !strings.Contains(d, "unanchored") {
		t.Errorf("web-name: %q", d)
	}
	if d := differs["prod-shadow"]; d != "" {
		t.Errorf("prod-shadow applies nowhere outside Kubernetes, in karmor and KubeArmor alike: %q", d)
	}
	code, out, errOut = containersCLI("policy", "explain", "web1", "--socket", sock)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"[KubeArmor: Applied]", "! KubeArmor differs: KubeArmor does not apply it: app=web", "[KubeArmor: NotSent]"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain text lacks %q:\n%s", want, out)
		}
	}
}
