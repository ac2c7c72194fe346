package kubearmor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/karmor/karmor/internal/kubearmor/kapolicytest"
	"github.com/karmor/karmor/internal/match"
	"github.com/karmor/karmor/pkg/policy"
)

// The tests in this file run the feed against kapolicytest, a PolicyService of our own, where
// the real KubeArmor cannot be used (restarted at will with chosen saved policies, and in every
// run without root); policies_kubearmor_test.go runs the feed against the real KubeArmor.

func startPolicyFeed(t *testing.T, addr, ledger string) (*PolicyFeed, *prometheus.Registry, func()) {
	t.Helper()
	return startPolicyFeedSettling(t, addr, ledger, 50*time.Millisecond)
}

func startPolicyFeedSettling(t *testing.T, addr, ledger string, settle time.Duration) (*PolicyFeed, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := NewPolicyFeed(PolicyFeedOptions{
		Addr: addr, LedgerPath: ledger, CallTimeout: 2 * time.Second, SettleDelay: settle,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return f, reg, stop
}

// policies parses YAML documents into the compiled policies of a set.
func policies(t testing.TB, yamls ...string) []*match.Policy {
	t.Helper()
	docs := policy.ParseBytes("test.yaml", []byte(strings.Join(yamls, "\n---\n")), policy.Options{})
	for _, d := range docs {
		if !d.Valid() {
			t.Fatalf("invalid test policy %s: %v", d.File, d.Errors)
		}
	}
	return match.NewSet(docs).Policies()
}

func containerPolicy(name, labels, path string) string {
	return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: ` + name + `}
spec:
  selector: {matchLabels: {` + labels + `}}
  file: {matchPaths: [{path: ` + path + `}]}
  action: Block`
}

func hostPolicy(name, path string) string {
	return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: ` + name + `}
spec:
  nodeSelector: {matchLabels: {kubearmor.io/hostname: "*"}}
  file: {matchPaths: [{path: ` + path + `}]}
  action: Block`
}

func holds(svc *kapolicytest.Service, want ...string) func() bool {
	return func() bool {
		w := slices.Clone(want)
		slices.Sort(w)
		return slices.Equal(svc.Names(), w)
	}
}

func TestPolicyFeedSendsAddsChangesAndDeletes(t *testing.T) {
	svc := kapolicytest.New(nil)
	addr, _ := kapolicytest.Serve(t, "127.0.0.1:0", svc)
	f, reg, _ := startPolicyFeed(t, addr, "")
	f.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/shadow"), containerPolicy("b", "app: db", "/etc/passwd"),
		hostPolicy("h", "/etc/hosts")), true)
	eventually(t, "a, b and h in KubeArmor", holds(svc, "containerPolicy/a", "containerPolicy/b", "hostPolicy/h"))
	eventually(t, "states Applied", func() bool {
		return f.State("KubeArmorPolicy/default/a").Status == "Applied" && f.State("KubeArmorHostPolicy/h").Status == "Applied"
	})

	// a changes, b goes, c comes.
	f.Update(2, policies(t, containerPolicy("a", "app: web", "/etc/group"), containerPolicy("c", "app: api", "/etc/passwd"),
		hostPolicy("h", "/etc/hosts")), true)
	eventually(t, "a, c and h in KubeArmor", holds(svc, "containerPolicy/a", "containerPolicy/c", "hostPolicy/h"))
	eventually(t, "a is the new a", func() bool { return strings.Contains(string(svc.Object(ServiceContainer, "a")), "/etc/group") })
	if n := testutil.ToFloat64(f.metrics.connected); n != 1 {
		t.Fatalf("connected metric %v", n)
	}
	if n := testutil.ToFloat64(f.metrics.sent.WithLabelValues("deleted", "Deleted")); n != 1 {
		t.Fatalf("deleted/Deleted sent %v times", n)
	}
	if n, err := testutil.GatherAndCount(reg, "karmor_kubearmor_policy_wanted"); err != nil || n != 1 {
		t.Fatalf("wanted gauge: %d series, %v", n, err)
	}
	// An unchanged set sends nothing more.
	time.Sleep(100 * time.Millisecond) // the settle resend after the first connection is over by now
	before := svc.Calls()
	f.Update(3, policies(t, containerPolicy("a", "app: web", "/etc/group"), containerPolicy("c", "app: api", "/etc/passwd"),
		hostPolicy("h", "/etc/hosts")), true)
	time.Sleep(100 * time.Millisecond)
	after := svc.Calls()
	if after != before {
		t.Fatalf("an unchanged set made %d calls", after-before)
	}
}

func TestPolicyFeedBringsRestartedKubeArmorToTheSetInForce(t *testing.T) {
	svc := kapolicytest.New(nil)
	addr, stop := kapolicytest.Serve(t, "127.0.0.1:0", svc)
	f, _, _ := startPolicyFeed(t, addr, filepath.Join(t.TempDir(), "ledger.json"))
	f.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/shadow"), containerPolicy("b", "app: db", "/etc/passwd")), true)
	eventually(t, "a and b", holds(svc, "containerPolicy/a", "containerPolicy/b"))

	// KubeArmor goes away; meanwhile b is dropped and c added. It comes back restoring what it
	// saved (a and b).
	saved := svc.SavedCopy()
	stop()
	eventually(t, "state Away", func() bool { return f.State("KubeArmorPolicy/default/a").Status == PolicyAway })
	f.Update(2, policies(t, containerPolicy("a", "app: web", "/etc/shadow"), containerPolicy("c", "app: api", "/etc/group")), true)
	again := kapolicytest.New(saved)
	kapolicytest.Serve(t, addr, again)
	eventually(t, "restarted KubeArmor holds exactly a and c", holds(again, "containerPolicy/a", "containerPolicy/c"))
	eventually(t, "state Applied", func() bool { return f.State("KubeArmorPolicy/default/c").Status == "Applied" })
}

func TestPolicyFeedLedgerDeletesWhatKarmordDroppedWhileDown(t *testing.T) {
	svc := kapolicytest.New(nil)
	addr, _ := kapolicytest.Serve(t, "127.0.0.1:0", svc)
	ledger := filepath.Join(t.TempDir(), "ledger.json")
	f, _, stopFeed := startPolicyFeed(t, addr, ledger)
	f.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/shadow"), hostPolicy("h", "/etc/hosts")), true)
	eventually(t, "a and h", holds(svc, "containerPolicy/a", "hostPolicy/h"))
	stopFeed()

	// A new karmord whose set has neither: while a source has not loaded, nothing is deleted;
	// once the set is complete, both go.
	f2, _, _ := startPolicyFeed(t, addr, ledger)
	f2.Update(1, nil, false)
	time.Sleep(100 * time.Millisecond)
	if got := svc.Names(); len(got) != 2 {
		t.Fatalf("an incomplete set deleted policies: KubeArmor holds %v", got)
	}
	f2.Update(2, nil, true)
	eventually(t, "KubeArmor holds nothing", holds(svc))
}

// TestPolicyFeedSettlePassCatchesALateRestore: KubeArmor restores its saved policies while it
// already serves gRPC. A dropped policy it restores after the feed's first pass asked to delete
// it (NotExist then) is deleted by the settle pass; so is an old copy restored over a new one.
func TestPolicyFeedSettlePassCatchesALateRestore(t *testing.T) {
	first := kapolicytest.New(nil)
	addr, stop := kapolicytest.Serve(t, "127.0.0.1:0", first)
	ledger := filepath.Join(t.TempDir(), "ledger.json")
	f, _, stopFeed := startPolicyFeed(t, addr, ledger)
	f.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/shadow"), containerPolicy("b", "app: db", "/etc/passwd")), true)
	eventually(t, "a and b", holds(first, "containerPolicy/a", "containerPolicy/b"))
	saved := first.SavedCopy()
	stopFeed()
	stop()

	// A new karmord (b dropped, a changed) meets a KubeArmor whose restore comes late.
	late := kapolicytest.New(nil)
	kapolicytest.Serve(t, addr, late)
	f2, _, _ := startPolicyFeedSettling(t, addr, ledger, 300*time.Millisecond)
	f2.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/group")), true)
	eventually(t, "the first pass: a", holds(late, "containerPolicy/a"))
	late.Restore(saved)
	if got := late.Names(); len(got) != 2 {
		t.Fatalf("restore: %v", got)
	}
	eventually(t, "the settle pass: only the new a", func() bool {
		return holds(late, "containerPolicy/a")() && strings.Contains(string(late.Object(ServiceContainer, "a")), "/etc/group")
	})
}

func TestPolicyFeedReportsWhatKubeArmorRefusesAndWhatIsNotSent(t *testing.T) {
	svc := kapolicytest.New(nil)
	addr, _ := kapolicytest.Serve(t, "127.0.0.1:0", svc)
	f, _, _ := startPolicyFeed(t, addr, "")
	f.Update(1, policies(t, containerPolicy("a", "app: web", "/etc/shadow")), true)
	eventually(t, "a", holds(svc, "containerPolicy/a"))

	// a loses its matchLabels: KubeArmor refuses the new a, and the old a must not stay in force.
	noLabels := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: a}
spec:
  selector: {}
  file: {matchPaths: [{path: /etc/shadow}]}
  action: Block`
	cluster := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata: {name: cl}
spec:
  selector: {matchExpressions: [{key: namespace, operator: In, values: [prod]}]}
  file: {matchPaths: [{path: /etc/shadow}]}
  action: Block`
	sameName := strings.Replace(containerPolicy("a", "app: x", "/etc/passwd"), "metadata: {name: a}", "metadata: {name: a, namespace: other}", 1)
	f.Update(2, policies(t, noLabels, cluster, sameName), true)
	eventually(t, "KubeArmor holds nothing", holds(svc))
	eventually(t, "a Invalid", func() bool { return f.State("KubeArmorPolicy/default/a").Status == "Invalid" })
	if st := f.State("KubeArmorClusterPolicy/cl"); st.Status != PolicyNotSent || !strings.Contains(st.Detail, "cluster") {
		t.Fatalf("cluster policy: %+v", st)
	}
	if st := f.State("KubeArmorPolicy/other/a"); st.Status != PolicyNotSent || !strings.Contains(st.Detail, "KubeArmorPolicy/default/a") {
		t.Fatalf("second policy named a: %+v", st)
	}
}

func TestPolicyFeedOlderSetIsIgnored(t *testing.T) {
	f := NewPolicyFeed(PolicyFeedOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Update(5, policies(t, containerPolicy("a", "app: web", "/etc/shadow")), true)
	f.Update(4, nil, true)
	if st := f.State("KubeArmorPolicy/default/a"); st.Status != PolicyAway {
		t.Fatalf("generation 4 replaced generation 5: %+v", st)
	}
}

func TestConvertPolicy(t *testing.T) {
	ps := policies(t, containerPolicy("a", "app: web", "/etc/shadow"), hostPolicy("h", "/etc/hosts"))
	c, err := ConvertPolicy(ps[0].Spec)
	if err != nil || c.Service != ServiceContainer || c.Name != "a" {
		t.Fatalf("%+v %v", c, err)
	}
	var obj struct {
		Metadata map[string]any `json:"metadata"`
		Spec     struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			File struct {
				MatchPaths []struct {
					Path string `json:"path"`
				} `json:"matchPaths"`
			} `json:"file"`
			Action string `json:"action"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(c.Object, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.Metadata["name"] != "a" || len(obj.Metadata) != 1 || obj.Spec.Selector.MatchLabels["app"] != "web" ||
		len(obj.Spec.File.MatchPaths) != 1 || obj.Spec.File.MatchPaths[0].Path != "/etc/shadow" || obj.Spec.Action != "Block" {
		t.Fatalf("object %s", c.Object)
	}
	ev := policyEvent(eventAdded, c.Object)
	var back struct {
		Type   string          `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	if err := json.Unmarshal(ev, &back); err != nil || back.Type != "ADDED" || string(back.Object) != string(c.Object) {
		t.Fatalf("event %s: %v", ev, err)
	}
	if h, err := ConvertPolicy(ps[1].Spec); err != nil || h.Service != ServiceHost {
		t.Fatalf("%+v %v", h, err)
	}
	bad := *ps[0].Spec
	bad.Metadata.Name = "../../etc/x"
	if _, err := ConvertPolicy(&bad); err == nil {
		t.Fatal("a name KubeArmor would use as a path outside its directory was converted")
	}
}

func TestLedgerRoundTripAndRefusals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "ledger.json")
	in := map[string]ledgerEntry{"a": {Service: ServiceContainer, Object: json.RawMessage(`{"metadata":{"name":"a"}}`)}}
	if err := writeLedger(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := readLedger(path)
	if err != nil || len(out) != 1 || string(out["a"].Object) != string(in["a"].Object) {
		t.Fatalf("%v %v", out, err)
	}
	for _, bad := range []string{
		`{"version":2,"policies":{}}`,
		`{"version":1,"policies":{"../x":{"service":"containerPolicy","object":{}}}}`,
		`{"version":1,"policies":{"a":{"service":"networkPolicy","object":{}}}}`,
		`{"version":1,"policies":{"a":{"service":"hostPolicy"}}}`,
		`[`,
	} {
		if _, err := decodeLedger([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func FuzzDecodeLedger(f *testing.F) {
	f.Add([]byte(`{"version":1,"policies":{"a":{"service":"containerPolicy","object":{"metadata":{"name":"a"}}}}}`))
	f.Add([]byte(`{"version":1,"policies":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := decodeLedger(data)
		if err != nil {
			return
		}
		for name, e := range l {
			if checkLedgerEntry(name, e) != nil {
				t.Fatalf("decoded an entry it refuses: %q", name)
			}
			// Every accepted entry makes a well-formed event.
			if !json.Valid(policyEvent(eventDeleted, e.Object)) {
				t.Fatalf("event for %q is not JSON", name)
			}
		}
	})
}
