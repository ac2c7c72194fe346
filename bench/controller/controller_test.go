// Package controllerbench measures karmor-controller at cluster scale, with real parts only: a
// real kube-apiserver and etcd (testutil.StartKubeAPI) holding KubeArmor's CRDs and ours, a real
// registry (distribution/v3, registrytest) counting the requests it serves, the real
// karmor-controller binary, and `karmor oci push` (the real CLI) to publish each version.
//
//   - BenchmarkPropagation: 200 client-go informers on KubeArmorPolicy, each with its own
//     connection to the API server (standing in for the nodes' KubeArmor); per round, the time
//     from the start of `karmor oci push` of a new version until every informer holds it.
//   - BenchmarkApplyPrune: a PolicySource naming an artifact of 1,000 policies, created: the
//     time until all 1,000 objects exist; then its ref moved to an artifact without them: the
//     time until they are deleted.
//   - BenchmarkRegistryLoad: PolicySources polling unchanged artifacts for a number of
//     intervals; the requests the registry served, per PolicySource per interval.
//
// Run it with bench/controller/run.sh; README.md holds the figures. TestMain starts the API
// server only when benchmarks run, so `go test ./...` costs nothing here.
package controllerbench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

var (
	kube    *testutil.KubeAPI
	kubeErr error

	informers  = flag.Int("informers", 200, "informers on KubeArmorPolicy standing in for nodes (BenchmarkPropagation)")
	interval   = flag.Duration("interval", time.Second, "the PolicySources' spec.interval (BenchmarkPropagation, BenchmarkRegistryLoad)")
	policies   = flag.Int("policies", 1000, "policies in the artifact (BenchmarkApplyPrune)")
	sources    = flag.Int("sources", 10, "PolicySources polling (BenchmarkRegistryLoad)")
	intervals  = flag.Int("intervals", 10, "intervals counted (BenchmarkRegistryLoad)")
	kubeQPS    = flag.Int("kube-api-qps", 50, "karmor-controller's --kube-api-qps")
	kubeBurst  = flag.Int("kube-api-burst", 100, "karmor-controller's --kube-api-burst")
	waitLimit  = flag.Duration("wait", 5*time.Minute, "give up on a round after this long")
	crdsOnce   sync.Once
	crdsErr    error
	policyGVR  = schema.GroupVersionResource{Group: "security.kubearmor.com", Version: "v1", Resource: "kubearmorpolicies"}
	sourceGVR  = schema.GroupVersionResource{Group: "karmor.io", Version: "v1alpha1", Resource: "policysources"}
	sourceKind = "PolicySource"
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		kube, kubeErr = testutil.StartKubeAPI(testutil.KubeAPIOptions{})
	}
	code := m.Run()
	kube.Stop()
	os.Exit(code)
}

// env is one benchmark's world: the API server with the CRDs, a registry, the controller
// following PolicySources of one namespace, and the CLI.
type env struct {
	ns       string
	reg      *registrytest.Registry
	dyn      dynamic.Interface
	karmor   string
	metrics  string
	ctx      context.Context
	pushDir  string
	pushSeq  int
	pushTime time.Duration
}

func setup(b *testing.B) *env {
	b.Helper()
	k := testutil.RequireKubeAPI(b, kube, kubeErr)
	crdsOnce.Do(func() {
		files := append(testutil.KubeArmorCRDFiles(b), filepath.Join(testutil.RepoRoot(b), "deploy", "helm", "karmor", "crds", "policysources.karmor.io.yaml"))
		crdsErr = k.InstallCRDs(context.Background(), files...)
	})
	if crdsErr != nil {
		b.Fatalf("CRDs: %v", crdsErr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	e := &env{ns: k.NewNamespace(b, "bench"), reg: registrytest.New(b, registrytest.Options{}), ctx: ctx, karmor: testutil.Binary(b, "karmor"), pushDir: b.TempDir()}
	var err error
	if e.dyn, err = dynamic.NewForConfig(k.AdminConfig()); err != nil {
		b.Fatal(err)
	}
	e.metrics = startController(b, k, e.ns)
	return e
}

// startController runs the karmor-controller binary on the admin kubeconfig, following the
// PolicySources of ns, and waits until it is ready; it returns its metrics URL.
func startController(b *testing.B, k *testutil.KubeAPI, ns string) string {
	b.Helper()
	health, metrics := freePort(b), freePort(b)
	logFile, err := os.Create(filepath.Join(b.TempDir(), "controller.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(testutil.Binary(b, "karmor-controller"),
		"--kubeconfig", k.WriteKubeconfig(b, "admin"), "--watch-namespace", ns, "--leader-elect=false",
		"--health-addr", health, "--metrics-addr", metrics,
		"--kube-api-qps", strconv.Itoa(*kubeQPS), "--kube-api-burst", strconv.Itoa(*kubeBurst), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if b.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			b.Logf("karmor-controller's log:\n%s", log)
		}
	})
	waitFor(b, "karmor-controller ready", func() bool {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return "http://" + metrics + "/metrics"
}

func freePort(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitFor polls cond every 10 ms until it holds, failing the benchmark after *waitLimit.
func waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(*waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %s", what, *waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// policyYAML is a KubeArmorPolicy whose one process path carries a version mark.
func policyYAML(name, mark string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s
spec:
  selector:
    matchLabels:
      app: %s
  process:
    matchPaths:
    - path: /usr/bin/%s
  action: Block
`, name, name, mark)
}

// push writes files (name -> content) into a fresh directory and pushes them with the real CLI
// as ref; it returns when the CLI has exited.
func (e *env) push(b *testing.B, ref string, files map[string]string) {
	b.Helper()
	e.pushSeq++
	dir := filepath.Join(e.pushDir, strconv.Itoa(e.pushSeq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	out, err := exec.Command(e.karmor, "oci", "push", "--plain-http", "-i", ref, "-f", dir).CombinedOutput()
	e.pushTime += time.Since(start)
	if err != nil {
		b.Fatalf("karmor oci push %s: %v\n%s", ref, err, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		b.Fatal(err)
	}
}

// createSource creates a PolicySource in e.ns following ref from the plain-HTTP registry, its
// policies going to target.
func (e *env) createSource(b *testing.B, name, ref string, every time.Duration, target string) {
	b.Helper()
	ps := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": sourceGVR.GroupVersion().String(), "kind": sourceKind,
		"metadata": map[string]any{"name": name, "namespace": e.ns},
		"spec":     map[string]any{"ref": ref, "interval": every.String(), "insecure": true, "targetNamespace": target},
	}}
	if _, err := e.dyn.Resource(sourceGVR).Namespace(e.ns).Create(e.ctx, ps, metav1.CreateOptions{}); err != nil {
		b.Fatalf("create PolicySource %s: %v", name, err)
	}
}

// mark is the version mark of a KubeArmorPolicy object: its first process path's last element.
func mark(obj any) string {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return ""
	}
	paths, _, _ := unstructured.NestedSlice(u.Object, "spec", "process", "matchPaths")
	if len(paths) == 0 {
		return ""
	}
	p, _ := paths[0].(map[string]any)["path"].(string)
	return filepath.Base(p)
}

// BenchmarkPropagation: per round (-benchtime Nx: N rounds), `karmor oci push` of a new version
// of a one-policy artifact, and the time until each of the informers holds it. Reports the p50
// and p99 over rounds of the time until the last informer has it (the figure for "every node"),
// and of the per-informer times pooled over rounds. The controller checks the tag every
// -interval, so each figure includes up to one interval of waiting for the next check.
func BenchmarkPropagation(b *testing.B) {
	e := setup(b)
	ref := e.reg.Host + "/bench/propagation:latest"
	e.push(b, ref, map[string]string{"policy.yaml": policyYAML("propagation", "v0")})
	e.createSource(b, "propagation", ref, *interval, e.ns)

	// Each informer gets its own rest.Config with its own dialer: client-go shares a transport
	// (and so a connection) between configs that could share one, which a node's KubeArmor does
	// not. seen[i] is the last mark informer i holds.
	n := *informers
	seen := make([]atomic.Value, n)
	var arrivals sync.Map // mark -> *arrival
	type arrival struct {
		count atomic.Int64
		times []time.Time
		mu    sync.Mutex
	}
	record := func(i int, obj any) {
		m := mark(obj)
		if m == "" || seen[i].Load() == m {
			return
		}
		seen[i].Store(m)
		a, _ := arrivals.LoadOrStore(m, &arrival{})
		ar := a.(*arrival)
		ar.mu.Lock()
		ar.times = append(ar.times, time.Now())
		ar.mu.Unlock()
		ar.count.Add(1)
	}
	var syncs []cache.InformerSynced
	for i := range n {
		cfg := rest.CopyConfig(kube.AdminConfig())
		dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		cfg.Dial = dialer.DialContext
		cfg.QPS, cfg.Burst = -1, 0 // no client-side limit: each stands for a separate node
		dyn, err := dynamic.NewForConfig(cfg)
		if err != nil {
			b.Fatal(err)
		}
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, e.ns, nil)
		inf := f.ForResource(policyGVR).Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { record(i, obj) },
			UpdateFunc: func(_, obj any) { record(i, obj) },
		}); err != nil {
			b.Fatal(err)
		}
		f.Start(e.ctx.Done())
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(e.ctx.Done(), syncs...) {
		b.Fatal("informers never synced")
	}
	countOf := func(m string) int64 {
		if a, ok := arrivals.Load(m); ok {
			return a.(*arrival).count.Load()
		}
		return 0
	}
	waitFor(b, "every informer holds v0", func() bool { return countOf("v0") == int64(n) })

	var lastTimes, allTimes []float64
	e.pushTime = 0
	b.ResetTimer()
	for round := 1; round <= b.N; round++ {
		m := "v" + strconv.Itoa(round)
		start := time.Now()
		e.push(b, ref, map[string]string{"policy.yaml": policyYAML("propagation", m)})
		waitFor(b, "every informer holds "+m, func() bool { return countOf(m) == int64(n) })
		a, _ := arrivals.Load(m)
		ar := a.(*arrival)
		ar.mu.Lock()
		last := start
		for _, t := range ar.times {
			allTimes = append(allTimes, ms(t.Sub(start)))
			if t.After(last) {
				last = t
			}
		}
		ar.mu.Unlock()
		lastTimes = append(lastTimes, ms(last.Sub(start)))
	}
	b.StopTimer()
	b.ReportMetric(percentile(lastTimes, 50), "ms-all-p50")
	b.ReportMetric(percentile(lastTimes, 99), "ms-all-p99")
	b.ReportMetric(percentile(allTimes, 50), "ms-each-p50")
	b.ReportMetric(percentile(allTimes, 99), "ms-each-p99")
	b.ReportMetric(ms(e.pushTime)/float64(b.N), "ms-push")
	b.ReportMetric(interval.Seconds(), "s-interval")
	b.ReportMetric(float64(n), "informers")
	b.Logf("%d informers, interval %s, %d rounds: until every informer holds the new version (push included) p50 %.0f ms p99 %.0f ms (max %.0f); per informer p50 %.0f ms p99 %.0f ms; the push itself %.0f ms on average",
		n, *interval, b.N, percentile(lastTimes, 50), percentile(lastTimes, 99), slices.Max(lastTimes), percentile(allTimes, 50), percentile(allTimes, 99), ms(e.pushTime)/float64(b.N))
}

// BenchmarkApplyPrune: per round, in a fresh namespace, a PolicySource created naming an
// artifact of -policies policies: the time until all of them exist; then its spec.ref moved to
// an artifact holding one other policy: the time until the -policies objects are deleted. The
// PolicySource's interval is an hour, so both figures are the controller's own work (a spec
// change is acted on at once), not a wait for a poll.
func BenchmarkApplyPrune(b *testing.B) {
	e := setup(b)
	many := map[string]string{}
	for i := range *policies {
		name := fmt.Sprintf("p-%04d", i)
		many[name+".yaml"] = policyYAML(name, "v1")
	}
	manyRef, oneRef := e.reg.Host+"/bench/many:v1", e.reg.Host+"/bench/many:v2"
	e.push(b, manyRef, many)
	e.push(b, oneRef, map[string]string{"other.yaml": policyYAML("other", "v2")})

	var applyTimes, pruneTimes []float64
	b.ResetTimer()
	for round := range b.N {
		b.StopTimer()
		// Each round its own PolicySource and target namespace, so that no round meets the
		// objects of another.
		target := kube.NewNamespace(b, "target")
		name := fmt.Sprintf("many-%d", round)
		var count atomic.Int64
		f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(e.dyn, 0, target, nil)
		inf := f.ForResource(policyGVR).Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) {
				if mark(obj) == "v1" {
					count.Add(1)
				}
			},
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if mark(obj) == "v1" {
					count.Add(-1)
				}
			},
		}); err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		f.Start(stop)
		cache.WaitForCacheSync(stop, inf.HasSynced)
		b.StartTimer()

		start := time.Now()
		e.createSource(b, name, manyRef, time.Hour, target)
		waitFor(b, fmt.Sprintf("%d policies applied", *policies), func() bool { return count.Load() == int64(*policies) })
		applyTimes = append(applyTimes, ms(time.Since(start)))

		start = time.Now()
		patch := fmt.Sprintf(`{"spec":{"ref":%q}}`, oneRef)
		if _, err := e.dyn.Resource(sourceGVR).Namespace(e.ns).Patch(e.ctx, name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, fmt.Sprintf("%d policies pruned", *policies), func() bool { return count.Load() == 0 })
		pruneTimes = append(pruneTimes, ms(time.Since(start)))
		close(stop)
	}
	b.StopTimer()
	b.ReportMetric(percentile(applyTimes, 50), "ms-apply-p50")
	b.ReportMetric(percentile(pruneTimes, 50), "ms-prune-p50")
	b.ReportMetric(float64(*policies), "policies")
	b.Logf("%d policies, %d rounds, controller --kube-api-qps %d --kube-api-burst %d: apply %v ms, prune %v ms",
		*policies, b.N, *kubeQPS, *kubeBurst, round0(applyTimes), round0(pruneTimes))
}

// BenchmarkRegistryLoad: -sources PolicySources, each on its own repository, polling unchanged
// artifacts every -interval; once each has its version in force, the registry's counts are
// reset and read again -intervals intervals later. No informer or node talks to the registry,
// so the count is the same for any number of nodes.
func BenchmarkRegistryLoad(b *testing.B) {
	e := setup(b)
	for i := range *sources {
		ref := fmt.Sprintf("%s/bench/load-%d:latest", e.reg.Host, i)
		e.push(b, ref, map[string]string{"policy.yaml": policyYAML(fmt.Sprintf("load-%d", i), "v1")})
		e.createSource(b, fmt.Sprintf("load-%d", i), ref, *interval, e.ns)
	}
	waitFor(b, "every PolicySource applied", func() bool {
		l, err := e.dyn.Resource(policyGVR).Namespace(e.ns).List(e.ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == *sources
	})
	// A full interval for checks that were already under way to finish.
	time.Sleep(*interval)
	b.ResetTimer()
	var perSourceInterval []float64
	for range b.N {
		e.reg.Reset()
		time.Sleep(time.Duration(*intervals) * *interval)
		manifests := e.reg.Count("", registrytest.RouteManifest)
		perSourceInterval = append(perSourceInterval, float64(manifests)/float64(*sources**intervals))
		b.Logf("%d PolicySources, interval %s, %d intervals: %s; %.2f manifest requests per PolicySource per interval",
			*sources, *interval, *intervals, e.reg.Counter, perSourceInterval[len(perSourceInterval)-1])
	}
	b.StopTimer()
	b.ReportMetric(percentile(perSourceInterval, 50), "manifest-req/source/interval")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank p-th percentile of xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(rank, 0)]
}

func round0(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strings.Join(parts, ", ")
}
