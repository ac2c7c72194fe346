package kubearmor

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/karmor/karmor/internal/kubearmor/kapb"
	"github.com/karmor/karmor/internal/match"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

// The policy feed against the real KubeArmor (non-Kubernetes mode, built by
// scripts/kubearmor-vm/prepare.sh), on this host: KubeArmor cannot enforce here (no BPF-LSM), but
// its PolicyService, its saved policies and their restoration at start are the real ones.
// test/e2e/kubearmor proves the enforcement in a QEMU guest.

// kubeArmorSavedPolicies is where KubeArmor saves the policies it takes, and restores them from.
const kubeArmorSavedPolicies = "/opt/kubearmor/policies"

// realKubeArmorArgs enable host policies, which the test KubeArmor leaves off by default.
var realKubeArmorArgs = []string{"-enableKubeArmorHostPolicy=true"}

// savedPolicies lists the names of the policies KubeArmor saved.
func savedPolicies(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(kubeArmorSavedPolicies)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}

func savedObject(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(kubeArmorSavedPolicies, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func savedAre(t testing.TB, want ...string) func() bool {
	return func() bool {
		w := slices.Clone(want)
		slices.Sort(w)
		return slices.Equal(savedPolicies(t), w)
	}
}

// TestPolicyFeedRealKubeArmor: the real KubeArmor takes the set in force (container and host
// policies), a changed selector, a deletion; and after it is killed and restarted, restoring
// what it saved, the feed brings it to the set in force meanwhile, deleting the dropped policy
// from what it would restore next time too.
func TestPolicyFeedRealKubeArmor(t *testing.T) {
	ka := testutil.StartKubeArmor(t, testutil.KubeArmorOptions{Args: realKubeArmorArgs})
	f, _, _ := startPolicyFeed(t, testutil.KubeArmorGRPCAddr, filepath.Join(t.TempDir(), "ledger.json"))
	named := containerPolicy("ka-n", "kubearmor.io/container.name: web", "/etc/passwd")

	f.Update(1, policies(t, containerPolicy("ka-a", "app: web", "/etc/shadow"), containerPolicy("ka-b", "app: db", "/etc/passwd"),
		named, hostPolicy("ka-h", "/etc/hosts")), true)
	eventually(t, "KubeArmor saved the four", savedAre(t, "ka-a", "ka-b", "ka-n", "ka-h"))
	eventually(t, "all Applied", func() bool {
		for _, id := range []string{"KubeArmorPolicy/default/ka-a", "KubeArmorPolicy/default/ka-b", "KubeArmorPolicy/default/ka-n", "KubeArmorHostPolicy/ka-h"} {
			if f.State(id).Status != "Applied" {
				return false
			}
		}
		return true
	})

	// ka-a selects other labels; ka-h is dropped.
	f.Update(2, policies(t, containerPolicy("ka-a", "app: api", "/etc/shadow"), containerPolicy("ka-b", "app: db", "/etc/passwd"), named), true)
	eventually(t, "ka-h deleted", savedAre(t, "ka-a", "ka-b", "ka-n"))
	eventually(t, "ka-a changed", func() bool { return strings.Contains(savedObject(t, "ka-a"), "app=api") })

	// KubeArmor dies; meanwhile ka-b is dropped and ka-c comes. The restarted KubeArmor restores
	// ka-a, ka-b and ka-n; the feed deletes ka-b and adds ka-c.
	ka.Kill(t)
	eventually(t, "Away", func() bool { return f.State("KubeArmorPolicy/default/ka-a").Status == PolicyAway })
	f.Update(3, policies(t, containerPolicy("ka-a", "app: api", "/etc/shadow"), containerPolicy("ka-c", "app: db", "/etc/group"), named), true)
	ka.Start(t)
	eventually(t, "saved: ka-a, ka-c, ka-n", savedAre(t, "ka-a", "ka-c", "ka-n"))
	eventually(t, "Applied again", func() bool { return f.State("KubeArmorPolicy/default/ka-c").Status == "Applied" })
	if log := ka.Log(); !strings.Contains(log, "Detected a Container Security Policy (deleted/container_namespace/ka-b)") {
		t.Errorf("KubeArmor's log does not show ka-b deleted after its restart:\n%s", testutil.TailFile(ka.LogPath, 40))
	}

	// What KubeArmor refuses outside Kubernetes is reported, and its older copy removed.
	f.Update(4, policies(t, containerPolicy("ka-a", "kubearmor.io/container.name: web, app: api", "/etc/shadow"),
		containerPolicy("ka-c", "app: db", "/etc/group"), named), true)
	eventually(t, "ka-a Invalid", func() bool { return f.State("KubeArmorPolicy/default/ka-a").Status == "Invalid" })
	eventually(t, "ka-a no longer saved", savedAre(t, "ka-c", "ka-n"))
}

// corpusPolicies parses the upstream policy corpus (../shared/corpus) and returns its valid
// documents and how many rows expected.tsv marks valid under kubectl's strict checks.
func corpusPolicies(t testing.TB) (docs []policy.Document, expectedValid int) {
	t.Helper()
	root := testutil.SharedDir(t, "corpus")
	raw, err := os.ReadFile(filepath.Join(root, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n")[1:] {
		if f := strings.Split(l, "\t"); len(f) == 6 && f[4] == "VALID" {
			expectedValid++
		}
	}
	paths, err := policy.FindFiles(filepath.Join(root, "policy-templates"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := policy.ParseFiles(paths, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range all {
		if d.Valid() && d.Policy != nil {
			docs = append(docs, d)
		}
	}
	return docs, expectedValid
}

// TestPolicyFeedCorpusRealKubeArmor sends every valid policy of the upstream corpus to the real
// KubeArmor and requires its Applied for each one karmord sends; each one it does not send must
// be a kind KubeArmor outside Kubernetes does not take.
func TestPolicyFeedCorpusRealKubeArmor(t *testing.T) {
	docs, expectedValid := corpusPolicies(t)
	if len(docs) != expectedValid {
		t.Errorf("%d corpus documents valid, expected.tsv says %d", len(docs), expectedValid)
	}
	ps := match.NewSet(docs).Policies()
	testutil.StartKubeArmor(t, testutil.KubeArmorOptions{Args: realKubeArmorArgs})
	f, _, _ := startPolicyFeed(t, testutil.KubeArmorGRPCAddr, "")
	began := time.Now()
	f.Update(1, ps, true)
	counts := map[string]int{}
	services := map[string]int{}
	eventually(t, "KubeArmor answered every policy", func() bool {
		clear(counts)
		for _, p := range ps {
			counts[f.State(p.ID()).Status]++
		}
		return counts[PolicyPending] == 0 && counts[PolicyAway] == 0
	})
	took := time.Since(began)
	for _, p := range ps {
		st := f.State(p.ID())
		switch st.Status {
		case "Applied":
			conv, _ := ConvertPolicy(p.Spec)
			services[conv.Service]++
		case PolicyNotSent:
			if p.Kind != policy.KindClusterPolicy && p.Kind != policy.KindNetworkPolicy {
				t.Errorf("%s not sent: %s", p.ID(), st.Detail)
			}
		default:
			t.Errorf("%s: KubeArmor answered %s", p.ID(), st.Status)
		}
	}
	t.Logf("corpus: %d valid (expected.tsv: %d), %d policies; KubeArmor: %v; sent as %v; first sync took %v",
		len(docs), expectedValid, len(ps), counts, services, took.Round(time.Millisecond))
}

// BenchmarkPolicyResync sends the whole valid corpus to the real KubeArmor as a resync does
// (every policy as ADDED, answered before the next), once per iteration.
func BenchmarkPolicyResync(b *testing.B) {
	docs, _ := corpusPolicies(b)
	ps := match.NewSet(docs).Policies()
	testutil.StartKubeArmor(b, testutil.KubeArmorOptions{Args: realKubeArmorArgs})
	conn, err := grpc.NewClient(testutil.KubeArmorGRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	f := NewPolicyFeed(PolicyFeedOptions{Addr: testutil.KubeArmorGRPCAddr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	f.Update(1, ps, true)
	s := &policySession{f: f, client: kapb.NewPolicyServiceClient(conn), ledger: map[string]ledgerEntry{}}
	ctx := context.Background()
	sent := 0
	for _, w := range f.wanted {
		if w.notSent == "" {
			sent++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		s.resend = true
		if _, err := s.pass(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(sent), "policies/resync")
}

// The ledger entry written for a KubeArmor policy is what a later karmord needs to delete it.
func TestLedgerEntryDeletesFromRealKubeArmor(t *testing.T) {
	testutil.StartKubeArmor(t, testutil.KubeArmorOptions{})
	ledger := filepath.Join(t.TempDir(), "ledger.json")
	f, _, stop := startPolicyFeed(t, testutil.KubeArmorGRPCAddr, ledger)
	f.Update(1, policies(t, containerPolicy("ka-left", "app: web", "/etc/shadow")), true)
	eventually(t, "saved", savedAre(t, "ka-left"))
	stop()
	l, err := readLedger(ledger)
	if err != nil || len(l) != 1 || !json.Valid(l["ka-left"].Object) {
		t.Fatalf("ledger %v, %v", l, err)
	}
	f2, _, _ := startPolicyFeed(t, testutil.KubeArmorGRPCAddr, ledger)
	f2.Update(1, nil, true)
	eventually(t, "deleted by the next karmord", savedAre(t))
}
