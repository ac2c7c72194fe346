package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/kubearmor"
	"github.com/karmor/karmor/internal/kubearmor/kapolicytest"
	"github.com/karmor/karmor/internal/kubearmor/kasocktest"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// kubearmorSocket returns a ka.sock path in a short directory of the test's own.
func kubearmorSocket(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ka-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "kubearmor", "ka.sock")
}

func stateOf(t *testing.T, cfg Config, id string) string {
	t.Helper()
	c, err := client(cfg).Get(ctxT(t), id)
	if err != nil || c == nil {
		t.Fatalf("get %s: %v %v", id, c, err)
	}
	return c.KubeArmor
}

// TestKubeArmorFeedFollowsTheTable: karmord's containers, as the hook reports them, reach
// KubeArmor's socket; `list` says KubeArmor has them; a stop deletes them; a KubeArmor started
// after karmord gets the whole set, and one that restarts gets it again.
func TestKubeArmorFeedFollowsTheTable(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.KubeArmorSocket = kubearmorSocket(t)
	runAgent(t, cfg)
	cl := client(cfg)

	web := agentapi.Container{ID: "web-1", Name: "web", PID: os.Getpid(), Labels: map[string]string{"app": "web"},
		Namespaces: map[string]uint64{"pid": 4026531836, "mnt": 4026531841}}
	pod := agentapi.Container{ID: "pod-1", PID: os.Getpid(), Pod: "shop-0", Namespace: "shop", ContainerName: "cart",
		Labels: map[string]string{"app": "cart"}}
	reportStarts(t, cl, []agentapi.Container{web, pod})
	if s := stateOf(t, cfg, "web-1"); s != "away" {
		t.Fatalf("with no KubeArmor the state is %q, want away", s)
	}

	ka := kasocktest.Start(t, cfg.KubeArmorSocket)
	waitFor(t, "KubeArmor has both", func() bool { return len(ka.Containers()) == 2 })
	got := ka.Containers()
	if w := got["web-1"]; w.NamespaceName != "container_namespace" || w.Labels != "kubearmor.io/container.name=web,namespaceName=container_namespace,app=web" ||
		w.PidNS != 4026531836 || w.MntNS != 4026531841 || int(w.Pid) != os.Getpid() {
		t.Errorf("web as KubeArmor has it: %+v", w)
	}
	if p := got["pod-1"]; p.NamespaceName != "shop" || p.EndPointName != "shop-0" || p.ContainerName != "cart" || p.Labels != "app=cart" {
		t.Errorf("pod container as KubeArmor has it: %+v", p)
	}
	waitFor(t, "state yes", func() bool { return stateOf(t, cfg, "web-1") == "yes" })
	list, err := cl.List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.KubeArmor != "yes" {
			t.Errorf("list: %s kubearmor=%q", c.ID, c.KubeArmor)
		}
	}

	if _, err := cl.Report(ctxT(t), &agentapi.Event{Kind: agentapi.KindStop, Container: agentapi.Container{ID: "pod-1"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pod deleted from KubeArmor", func() bool { _, ok := ka.Containers()["pod-1"]; return !ok })

	// KubeArmor restarts and forgets: karmord tells the new one what is live.
	ka.Close()
	os.Remove(cfg.KubeArmorSocket)
	ka2 := kasocktest.Start(t, cfg.KubeArmorSocket)
	waitFor(t, "the new KubeArmor has web", func() bool { _, ok := ka2.Containers()["web-1"]; return ok && len(ka2.Containers()) == 1 })
}

// TestKubeArmorFeedOffTheHooksPath: a KubeArmor that accepts but never answers does not delay
// the hook's acknowledgement.
func TestKubeArmorFeedOffTheHooksPath(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.KubeArmorSocket = kubearmorSocket(t)
	kasocktest.Silent(t, cfg.KubeArmorSocket)
	runAgent(t, cfg)
	cl := client(cfg)
	cl.Timeout = 2 * time.Second // the hook's own deadline
	for i := range 50 {
		c := agentapi.Container{ID: "c" + string(rune('a'+i%26)) + string(rune('a'+i/26)), PID: os.Getpid()}
		if _, err := cl.Report(ctxT(t), &agentapi.Event{Kind: agentapi.KindStart, Container: c}); err != nil {
			t.Fatalf("report %d while KubeArmor hangs: %v", i, err)
		}
	}
	if s := stateOf(t, cfg, "caa"); s == "yes" {
		t.Fatalf("state %q from a KubeArmor that never answered", s)
	}
}

func policyStates(t *testing.T, cfg Config) map[string]string {
	t.Helper()
	st, err := client(cfg).Policies(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range st.Policies {
		out[p.ID] = p.KubeArmor
	}
	return out
}

// TestKubeArmorPolicyFeedFollowsTheSetInForce: with --kubearmor-policy-addr, the policies of
// karmord's directory reach KubeArmor's PolicyService (a stand-in here: the real KubeArmor is
// driven by internal/kubearmor's tests and test/e2e/kubearmor), `policy list` shows KubeArmor's
// answer per policy, an edit reaches it, a removed file deletes the policy, and a file that
// fails validation leaves the last good set in KubeArmor too.
func TestKubeArmorPolicyFeedFollowsTheSetInForce(t *testing.T) {
	cfg, dir := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"), "host.yaml", hostPolicyYAML)
	ka := kapolicytest.New(nil)
	cfg.KubeArmorPolicyAddr, _ = kapolicytest.Serve(t, "127.0.0.1:0", ka)
	runAgent(t, cfg)
	waitFor(t, "KubeArmor has both", func() bool {
		return slices.Equal(ka.Names(), []string{"containerPolicy/web-block", "hostPolicy/zone-audit"})
	})
	waitFor(t, "policy list says Applied", func() bool {
		st := policyStates(t, cfg)
		return st["KubeArmorPolicy/default/web-block"] == "Applied" && st["KubeArmorHostPolicy/zone-audit"] == "Applied"
	})

	replaceFile(t, filepath.Join(dir, "web.yaml"), testutil.BlockShellPolicy("web-block", "", "api"))
	waitFor(t, "the edit reaches KubeArmor", func() bool {
		return strings.Contains(string(ka.Object("containerPolicy", "web-block")), `"app":"api"`)
	})
	if err := os.Remove(filepath.Join(dir, "host.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the host policy is deleted", func() bool {
		return slices.Equal(ka.Names(), []string{"containerPolicy/web-block"})
	})

	// An invalid file: the directory's last good set stays in force, in KubeArmor too.
	replaceFile(t, filepath.Join(dir, "web.yaml"), "apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata: {name: web-block}\nspec: {bogus: 1}\n")
	time.Sleep(time.Second)
	if got := ka.Names(); !slices.Equal(got, []string{"containerPolicy/web-block"}) ||
		!strings.Contains(string(ka.Object("containerPolicy", "web-block")), `"app":"api"`) {
		t.Fatalf("after an invalid file KubeArmor holds %v: %s", got, ka.Object("containerPolicy", "web-block"))
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, kubeArmorPolicyLedger)); err != nil {
		t.Fatalf("the policy ledger: %v", err)
	}
}

func TestKubeArmorPolicyAddrIsChecked(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.KubeArmorPolicyAddr = "32767"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--kubearmor-policy-addr") {
		t.Fatalf("New with a bad address: %v", err)
	}
}

// TestKubeArmorPolicyFeedDeletesNothingUntilEverySourceLoaded: a policy karmord sent before it
// restarted (in its ledger, restored by KubeArmor) may belong to an OCI source that has not
// loaded yet (registry unreachable, no cache): the feed sends the directory's policies but
// deletes nothing while that source has never loaded.
func TestKubeArmorPolicyFeedDeletesNothingUntilEverySourceLoaded(t *testing.T) {
	cfg, _ := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"))
	cfg.PolicyTransport.PlainHTTP = true
	cfg.PolicyRefs = []string{freeAddr(t) + "/team/policies:prod"} // nothing listens there
	left := json.RawMessage(`{"metadata":{"name":"from-registry"},"spec":{"selector":{"matchLabels":{"app":"db"}},"file":{"matchPaths":[{"path":"/etc/shadow"}]},"action":"Block"}}`)
	ka := kapolicytest.New(map[string]kapolicytest.Saved{"from-registry": {Service: kapolicytest.Container, Object: left}})
	cfg.KubeArmorPolicyAddr, _ = kapolicytest.Serve(t, "127.0.0.1:0", ka)
	ledger := `{"version":1,"policies":{"from-registry":{"service":"containerPolicy","object":` + string(left) + `}}}`
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, kubeArmorPolicyLedger), []byte(ledger), 0o600); err != nil {
		t.Fatal(err)
	}
	runAgent(t, cfg)
	waitFor(t, "the directory's policy sent", func() bool {
		return slices.Equal(ka.Names(), []string{"containerPolicy/from-registry", "containerPolicy/web-block"})
	})
	time.Sleep(kubearmor.DefaultSettleDelay + 500*time.Millisecond) // past the settle pass too
	if got := ka.Names(); !slices.Contains(got, "containerPolicy/from-registry") {
		t.Fatalf("a policy of a source not loaded yet was deleted: KubeArmor holds %v", got)
	}
}
