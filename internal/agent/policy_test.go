package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

const hostPolicyYAML = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: zone-audit
spec:
  nodeSelector:
    matchLabels:
      zone: z1
  file:
    matchPaths:
    - path: /etc/shadow
  action: Audit
`

// replaceFile writes a file atomically, as editors and config managers do.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// policyConfig is a test config following a new policy directory holding files (name, content
// pairs).
func policyConfig(t testing.TB, files ...string) (Config, string) {
	t.Helper()
	cfg, _ := testConfig(t)
	dir := t.TempDir()
	for i := 0; i+1 < len(files); i += 2 {
		replaceFile(t, filepath.Join(dir, files[i]), files[i+1])
	}
	cfg.PolicyDirs = []string{dir}
	cfg.NodeName = "node-a"
	cfg.NodeLabels = map[string]string{"zone": "z1"}
	return cfg, dir
}

func TestListGetAndWatchCarryMatchedPolicies(t *testing.T) {
	cfg, _ := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"), "shop.yaml", testutil.BlockShellPolicy("shop-block", "shop", "web"))
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	w, _ := watch(t, cfg, 0)

	// A runc container outside Kubernetes, selected by its app annotation; a hook claiming
	// policies of its own is not believed.
	outside := &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "out1", PID: 1,
		Annotations: map[string]string{"app": "web"}, Policies: []string{"KubeArmorPolicy/default/forged"}}}
	shop := &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "shop1", PID: 2, Pod: "p", Namespace: "shop",
		Labels: map[string]string{"app": "web"}}}
	other := &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "zzz1", PID: 3, Labels: map[string]string{"app": "db"}}}
	for _, ev := range []*agentapi.Event{outside, shop, other} {
		if _, err := cl.Report(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := cl.ListSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.PolicyGeneration != 1 || snap.Seq == 0 || len(snap.Containers) != 3 {
		t.Fatalf("list: generation %d, seq %d, %d containers", snap.PolicyGeneration, snap.Seq, len(snap.Containers))
	}
	// Policies come in the set's order: the directory's files in lexical order.
	want := map[string][]string{
		"out1":  {"KubeArmorPolicy/shop/shop-block", "KubeArmorPolicy/default/web-block"},
		"shop1": {"KubeArmorPolicy/shop/shop-block"},
		"zzz1":  nil,
	}
	for _, c := range snap.Containers {
		if !slices.Equal(c.Policies, want[c.ID]) {
			t.Errorf("%s: policies %v, want %v", c.ID, c.Policies, want[c.ID])
		}
	}
	if c, err := cl.Get(ctx, "shop1"); err != nil || !slices.Equal(c.Policies, want["shop1"]) {
		t.Errorf("get shop1: %+v, %v", c, err)
	}

	// The stream starts with the directory's load at start, then the three starts, each with its
	// policies.
	waitFor(t, "four stream entries", func() bool { return w.len() >= 4 })
	w.mu.Lock()
	defer w.mu.Unlock()
	first := w.envs[0]
	if first.Type != agentapi.TypePolicyChange || first.PolicyChange.Generation != 1 || first.PolicyChange.Policies != 2 ||
		first.PolicyChange.Total != 2 || first.PolicyChange.Kind != agentapi.PolicySourceDir || first.PolicyChange.Error != "" {
		t.Fatalf("first stream entry: %+v %+v", first, first.PolicyChange)
	}
	for _, env := range w.envs[1:4] {
		if env.Event == nil || !slices.Equal(env.Event.Container.Policies, want[env.Event.Container.ID]) || env.PolicyGeneration != 1 {
			t.Errorf("streamed event %+v", env.Event)
		}
	}
}

func TestPolicyChangesStreamAndMetrics(t *testing.T) {
	cfg, dir := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"))
	a := runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	if _, err := cl.Report(ctx, hookStart("c1", 0, "web")); err != nil { // labels app=web
		t.Fatal(err)
	}
	w, _ := watch(t, cfg, 0)

	replaceFile(t, filepath.Join(dir, "web.yaml"), testutil.BlockShellPolicy("web-block", "", "api"))
	waitFor(t, "the new selector in force", func() bool {
		c, err := cl.Get(ctx, "c1")
		return err == nil && len(c.Policies) == 0
	})
	replaceFile(t, filepath.Join(dir, "web.yaml"), strings.Replace(testutil.BlockShellPolicy("web-block", "", "web"), "action:", "actionn:", 1))
	waitFor(t, "the broken file reported", func() bool { return gauge(t, a, "karmord_policy_source_failing") == 1 })

	// The broken file changed nothing in force: generation 2 (app=api) stays.
	c, err := cl.Get(ctx, "c1")
	if err != nil || len(c.Policies) != 0 {
		t.Fatalf("after the broken write: %+v, %v", c, err)
	}
	var changes []*agentapi.PolicyChange
	waitFor(t, "three policy changes streamed", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		changes = changes[:0]
		for _, env := range w.envs {
			if env.PolicyChange != nil {
				changes = append(changes, env.PolicyChange)
			}
		}
		return len(changes) == 3
	})
	if changes[1].Generation != 2 || changes[1].Error != "" || changes[1].Digest == changes[0].Digest ||
		changes[2].Generation != 2 || !strings.Contains(changes[2].Error, "actionn") || changes[2].Digest != changes[1].Digest {
		t.Fatalf("changes: %+v %+v %+v", changes[0], changes[1], changes[2])
	}

	source := "dir:" + dir
	if got := counter(t, a, "policyLoads", source, "loaded"); got != 2 {
		t.Errorf("loads: %v, want 2", got)
	}
	if got := counter(t, a, "policyLoads", source, "failed"); got != 1 {
		t.Errorf("failures: %v, want 1", got)
	}
	for name, want := range map[string]float64{"karmord_policy_generation": 2, "karmord_policies": 1, "karmord_policy_source_policies": 1} {
		if got := gauge(t, a, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if gauge(t, a, "karmord_policy_source_last_error_timestamp_seconds") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("the last error's time is not recent")
	}

	state, err := cl.Policies(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := state.Sources[0]; !st.Failing || !strings.Contains(st.LastError, "actionn") || st.Policies != 1 {
		t.Errorf("source state: %+v", st)
	}
}

// gauge reads the one sample of a gauge of the agent's registry.
func gauge(t testing.TB, a *Agent, name string) float64 {
	t.Helper()
	families, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			var m *dto.Metric = f.GetMetric()[0]
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestExplainContainerAndNode(t *testing.T) {
	// The set's order is the files': web.yaml's policy first, then zz-host.yaml's.
	cfg, _ := policyConfig(t, "web.yaml", testutil.BlockShellPolicy("web-block", "", "web"), "zz-host.yaml", hostPolicyYAML)
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	for _, ev := range []*agentapi.Event{hookStart("aaa1", 0, "web"), hookStart("aaa2", 0, "db")} {
		if _, err := cl.Report(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}

	e, err := cl.Explain(ctx, "aaa2")
	if err != nil {
		t.Fatal(err)
	}
	if e.Container == nil || e.Container.ID != "aaa2" || len(e.Verdicts) != 2 || e.Verdicts[0].Applies || len(e.Rules) != 0 ||
		!strings.Contains(strings.Join(e.Verdicts[0].Reasons, ";"), `the container has "db", the policy wants "web"`) {
		t.Fatalf("explain aaa2: %+v", e)
	}
	e, err = cl.Explain(ctx, "aaa1")
	if err != nil || !e.Verdicts[0].Applies || len(e.Rules) != 1 || e.Rules[0].Action != "Block" || e.Rules[0].Value != "/bin/sh" ||
		!strings.HasPrefix(e.Verdicts[0].Source, "dir:") {
		t.Fatalf("explain aaa1: %+v, %v", e, err)
	}
	e, err = cl.ExplainNode(ctx)
	if err != nil || e.Node == nil || e.Node.Name != "node-a" || e.Verdicts[0].Applies || !e.Verdicts[1].Applies ||
		len(e.Rules) != 1 || e.Rules[0].Action != "Audit" {
		t.Fatalf("explain the node: %+v, %v", e, err)
	}

	var ae *agentapi.AgentError
	for key, want := range map[string]string{"nope": "no live container", "aaa": "matches several containers", "": "needs a container"} {
		if _, err := cl.Explain(ctx, key); !errors.As(err, &ae) || !strings.Contains(err.Error(), want) {
			t.Errorf("explain %q: %v, want an agent error with %q", key, err, want)
		}
	}
}

// TestPodLabelsFillKubernetesContainers: the PodLabels hook gives labels to Kubernetes
// containers that came without any, and is not asked about the others.
func TestPodLabelsFillKubernetesContainers(t *testing.T) {
	cfg, _ := policyConfig(t, "shop.yaml", testutil.BlockShellPolicy("shop-block", "shop", "web"))
	var calls atomic.Int32
	cfg.PodLabels = func(namespace, pod string) (map[string]string, bool) {
		calls.Add(1)
		if namespace == "shop" && pod == "web-0" {
			return map[string]string{"app": "web"}, true
		}
		return nil, false
	}
	runAgent(t, cfg)
	cl := client(cfg)
	reportStarts(t, cl, []agentapi.Container{
		{ID: "k1", PID: 1, Pod: "web-0", Namespace: "shop"},                                            // filled
		{ID: "k2", PID: 2, Pod: "gone-0", Namespace: "shop"},                                           // unknown pod
		{ID: "k3", PID: 3, Pod: "web-0", Namespace: "shop", Labels: map[string]string{"app": "other"}}, // has labels
		{ID: "r1", PID: 4, Annotations: map[string]string{"io.kubernetes.pod.name": "x"}},              // not Kubernetes
	})
	checkLabelsAndPolicies(t, cl, map[string]string{
		"k1": "map[app:web] [KubeArmorPolicy/shop/shop-block]",
		"k2": "map[] []",
		"k3": "map[app:other] []",
		"r1": "map[] []",
	})
	if n := calls.Load(); n != 2 {
		t.Errorf("PodLabels called %d times for one list, want 2 (k1, k2)", n)
	}
}

// TestMatchingDoesNotHoldTheTable: while a list is in its matching phase (here stuck in the
// PodLabels lookup), hooks are still acknowledged: matching runs outside the table's lock.
func TestMatchingDoesNotHoldTheTable(t *testing.T) {
	cfg, _ := policyConfig(t, "shop.yaml", testutil.BlockShellPolicy("shop-block", "shop", "web"))
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	cfg.PodLabels = func(namespace, pod string) (map[string]string, bool) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return map[string]string{"app": "web"}, true
	}
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	if _, err := cl.Report(ctx, &agentapi.Event{Kind: agentapi.KindStart, Container: agentapi.Container{ID: "k1", PID: 1, Pod: "web-0", Namespace: "shop"}}); err != nil {
		t.Fatal(err)
	}
	listed := make(chan error, 1)
	go func() {
		_, err := cl.List(ctx)
		listed <- err
	}()
	<-entered
	// The list is mid-matching; a hook's report must be acknowledged all the same. Were the table
	// locked, this would wait until ctx's deadline and fail.
	if _, err := cl.Report(ctx, hookStart("k2", 0, "web")); err != nil {
		t.Fatalf("a report while a list was matching: %v", err)
	}
	close(release)
	if err := <-listed; err != nil {
		t.Fatal(err)
	}
}

func TestPolicyConfigErrors(t *testing.T) {
	for name, edit := range map[string]func(*Config){
		"bad reference":     func(c *Config) { c.PolicyRefs = []string{"registry.example/p:bad tag"} },
		"directory twice":   func(c *Config) { c.PolicyDirs = []string{"/x/p", "/x/p/"} },
		"negative interval": func(c *Config) { c.PolicyInterval = -time.Second },
		"bad node label":    func(c *Config) { c.NodeLabels = map[string]string{"a b": "c"} },
	} {
		cfg, _ := testConfig(t)
		edit(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestNoPolicySources: without sources the set is empty, generation 1, and nothing about
// policies is streamed.
func TestNoPolicySources(t *testing.T) {
	cfg, _ := testConfig(t)
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	if _, err := cl.Report(ctx, hookStart("a1", 0, "web")); err != nil {
		t.Fatal(err)
	}
	state, err := cl.Policies(ctx)
	if err != nil || state.Generation != 1 || len(state.Sources) != 0 || len(state.Policies) != 0 {
		t.Fatalf("policy state: %+v, %v", state, err)
	}
	w, _ := watch(t, cfg, 0)
	waitFor(t, "the start streamed", func() bool { return w.len() == 1 })
	if w.envs[0].Event == nil {
		t.Fatalf("first stream entry %+v", w.envs[0])
	}
}
