package kubepods

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/karmor/karmor/internal/testutil"
)

// deadline is how long a test waits for the watch to catch up: generous, because the machine may be
// busy; a passing test returns as soon as the condition holds.
const deadline = 30 * time.Second

// The tests of this package share one real etcd + kube-apiserver (testutil.StartKubeAPI). There is
// no kubelet or scheduler: pods are created already bound to a node (spec.nodeName), or bound later
// through pods/binding, which is how the scheduler does it.
var (
	kube    *testutil.KubeAPI
	kubeErr error
)

// nobody is a token user without any binding: every request of theirs is refused (403).
const nobody = "nobody"

func TestMain(m *testing.M) {
	kube, kubeErr = testutil.StartKubeAPI(testutil.KubeAPIOptions{Users: []testutil.KubeUser{{Name: nobody}}})
	code := m.Run()
	kube.Stop()
	os.Exit(code)
}

// cluster is one test's share of the API server: its own namespace and node names, so no test
// sees another's pods.
type cluster struct {
	t                   testing.TB
	client              kubernetes.Interface
	ns                  string
	thisNode, otherNode string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	k := testutil.RequireKubeAPI(t, kube, kubeErr)
	client, err := kubernetes.NewForConfig(k.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := k.NewNamespace(t, "kubepods")
	return &cluster{t: t, client: client, ns: ns, thisNode: ns + "-node-a", otherNode: ns + "-node-b"}
}

func (c *cluster) pods() corev1client.PodInterface { return c.client.CoreV1().Pods(c.ns) }

// createPod creates a pod in the test's namespace, bound to node ("" = not scheduled).
func (c *cluster) createPod(name, node string, labels map[string]string) {
	c.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := c.pods().Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create pod %s/%s: %v", c.ns, name, err)
	}
}

// patchLabels merges labels into the pod's (a JSON merge patch: nil removes them all).
func (c *cluster) patchLabels(name string, labels map[string]any) {
	c.t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.pods().Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatalf("patch the labels of %s/%s: %v", c.ns, name, err)
	}
}

// deleteNow deletes a pod for good, as the kubelet does once its containers are gone (grace 0).
func (c *cluster) deleteNow(name string) {
	c.t.Helper()
	zero := int64(0)
	if err := c.pods().Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		c.t.Fatalf("delete pod %s/%s: %v", c.ns, name, err)
	}
}

// start runs a Watcher for the test's node until the test ends and waits for its first list.
func (c *cluster) start(client Client) *Watcher {
	c.t.Helper()
	w, err := New(Options{Client: client, NodeName: c.thisNode})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	c.t.Cleanup(func() { cancel(); <-done })
	syncCtx, syncCancel := context.WithTimeout(ctx, deadline)
	defer syncCancel()
	if !w.WaitSynced(syncCtx) {
		c.t.Fatalf("the first list of pods did not arrive within %v", deadline)
	}
	return w
}

// cached returns the keys of the Watcher's cache that are in the test's namespace, sorted.
func (c *cluster) cached(w *Watcher) []string {
	var keys []string
	for _, k := range w.informer.GetStore().ListKeys() {
		if ns, _, _ := strings.Cut(k, "/"); ns == c.ns {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// eventually fails the test unless cond holds before the deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	stop := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(stop) {
			t.Fatalf("after %v: %s", deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchesOnlyThisNodesPods(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web", "tier": "front"})
	c.createPod("db-1", c.otherNode, map[string]string{"app": "db"})
	c.createPod("unscheduled", "", map[string]string{"app": "pending"})
	w := c.start(c.client)

	labels, ok := w.Lookup(c.ns, "web-1")
	if !ok || !maps.Equal(labels, map[string]string{"app": "web", "tier": "front"}) {
		t.Errorf("Lookup(web-1) = %v, %v; want its labels, true", labels, ok)
	}
	for _, p := range [][2]string{{c.ns, "db-1"}, {c.ns, "unscheduled"}, {c.ns, "nonexistent"}, {"other", "web-1"}} {
		if labels, ok := w.Lookup(p[0], p[1]); ok || labels != nil {
			t.Errorf("Lookup(%s, %s) = %v, %v; want nil, false", p[0], p[1], labels, ok)
		}
	}

	// Pods created after the first list arrive through the watch, in the order the server wrote
	// them: once web-2 (this node) is seen, db-2 (the other node, created before it) would have
	// been seen too had the server not filtered it out.
	c.createPod("db-2", c.otherNode, map[string]string{"app": "db"})
	c.createPod("web-2", c.thisNode, map[string]string{"app": "web"})
	eventually(t, "web-2 created on this node is not found", func() bool {
		labels, ok := w.Lookup(c.ns, "web-2")
		return ok && labels["app"] == "web"
	})
	want := []string{c.ns + "/web-1", c.ns + "/web-2"}
	if got := c.cached(w); !slices.Equal(got, want) {
		t.Errorf("the cache holds %v; want only this node's pods %v (the server filters by spec.nodeName)", got, want)
	}
	if got := NodeFieldSelector("node-a"); got != "spec.nodeName=node-a" {
		t.Errorf("NodeFieldSelector(node-a) = %q", got)
	}
}

func TestPodBoundToThisNodeLater(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", "", map[string]string{"app": "web"})
	c.createPod("db-1", "", map[string]string{"app": "db"})
	w := c.start(c.client)
	if _, ok := w.Lookup(c.ns, "web-1"); ok {
		t.Fatal("an unscheduled pod is known before it is bound to this node")
	}
	// The scheduler binds through pods/binding, which sets spec.nodeName: the pod then enters this
	// node's watch. db-1 goes to the other node first and must never show up.
	ctx := context.Background()
	for _, b := range [][2]string{{"db-1", c.otherNode}, {"web-1", c.thisNode}} {
		binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: b[0]}, Target: corev1.ObjectReference{Kind: "Node", Name: b[1]}}
		if err := c.pods().Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatalf("bind %s to %s: %v", b[0], b[1], err)
		}
	}
	eventually(t, "web-1 bound to this node is not found", func() bool {
		labels, ok := w.Lookup(c.ns, "web-1")
		return ok && labels["app"] == "web"
	})
	if got := c.cached(w); !slices.Equal(got, []string{c.ns + "/web-1"}) {
		t.Errorf("the cache holds %v; want only web-1", got)
	}
}

func TestLabelChangesAndDeletesFollowTheAPI(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web", "version": "1"})
	c.createPod("web-2", c.thisNode, map[string]string{"app": "web"})
	w := c.start(c.client)

	c.patchLabels("web-1", map[string]any{"version": "2", "canary": "true"})
	eventually(t, "the label change of web-1 did not arrive", func() bool {
		labels, ok := w.Lookup(c.ns, "web-1")
		return ok && maps.Equal(labels, map[string]string{"app": "web", "version": "2", "canary": "true"})
	})
	c.patchLabels("web-1", nil)
	eventually(t, "removing every label of web-1 did not arrive", func() bool {
		labels, ok := w.Lookup(c.ns, "web-1")
		return ok && len(labels) == 0
	})

	// A graceful delete of a pod on a node only marks it: its containers still run until the
	// kubelet confirms, so karmord must go on answering for it. The marker pod created after the
	// delete proves the watch has gone past it.
	c.patchLabels("web-1", map[string]any{"app": "web"})
	if err := c.pods().Delete(context.Background(), "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, err := c.pods().Get(context.Background(), "web-1", metav1.GetOptions{}); err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("precondition: a graceful delete of a bound pod leaves it terminating (err %v)", err)
	}
	c.createPod("marker", c.thisNode, nil)
	eventually(t, "the marker pod is not found", func() bool { _, ok := w.Lookup(c.ns, "marker"); return ok })
	if labels, ok := w.Lookup(c.ns, "web-1"); !ok || labels["app"] != "web" {
		t.Errorf("a terminating pod lost its labels: Lookup = %v, %v", labels, ok)
	}

	c.deleteNow("web-1")
	eventually(t, "web-1 is still found after its deletion", func() bool {
		_, ok := w.Lookup(c.ns, "web-1")
		return !ok
	})
	if labels, ok := w.Lookup(c.ns, "web-2"); !ok || labels["app"] != "web" {
		t.Errorf("deleting web-1 disturbed web-2: Lookup = %v, %v", labels, ok)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web"})
	w := c.start(c.client)
	labels, ok := w.Lookup(c.ns, "web-1")
	if !ok {
		t.Fatal("web-1 not found")
	}
	labels["app"] = "changed by the caller"
	if again, _ := w.Lookup(c.ns, "web-1"); again["app"] != "web" {
		t.Errorf("a caller's change reached the cache: app=%q", again["app"])
	}
}

func TestSlimPodKeepsOnlyWhatLookupReads(t *testing.T) {
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: "shop", Name: "web-1", UID: "uid-1", ResourceVersion: "42",
			Labels:        map[string]string{"app": "web"},
			Annotations:   map[string]string{"big": "annotation"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		},
		Spec:   corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	once, err := slimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	slim := once.(*corev1.Pod)
	if slim.Name != "web-1" || slim.Namespace != "shop" || slim.UID != full.UID || slim.ResourceVersion != "42" ||
		slim.Spec.NodeName != "node-a" || !maps.Equal(slim.Labels, full.Labels) {
		t.Errorf("slimPod lost what the cache needs: %+v", slim)
	}
	if slim.Annotations != nil || slim.ManagedFields != nil || slim.Spec.Containers != nil || slim.Status.Phase != "" {
		t.Errorf("slimPod kept what the cache does not need: %+v", slim)
	}
	twice, err := slimPod(slim)
	if err != nil {
		t.Fatal(err)
	}
	if twice.(*corev1.Pod).Name != slim.Name || !maps.Equal(twice.(*corev1.Pod).Labels, slim.Labels) {
		t.Errorf("slimPod is not idempotent: %+v then %+v", slim, twice)
	}
	tombstone := "not a pod"
	if out, err := slimPod(tombstone); err != nil || out != tombstone {
		t.Errorf("slimPod(%q) = %v, %v; want it unchanged", tombstone, out, err)
	}
}

func TestNewRefusesMissingClientOrNode(t *testing.T) {
	if _, err := New(Options{NodeName: "node-a"}); err == nil {
		t.Error("New without a client succeeded")
	}
	if _, err := New(Options{Client: coreOnly{}}); err == nil {
		t.Error("New without a node name succeeded")
	}
}

// BenchmarkLookup measures what a label lookup costs karmord: a map read and a copy of the labels,
// with a node's worth of pods (the kubelet's default maximum is 110) in the cache.
func BenchmarkLookup(b *testing.B) {
	const pods = 110
	c := newCluster(b)
	for i := range pods {
		c.createPod(fmt.Sprintf("web-%d", i), c.thisNode, map[string]string{
			"app": "web", "tier": "front", "version": "v1", "pod-template-hash": "7d4b9c8f6",
		})
	}
	w := c.start(c.client)
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("web-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := w.Lookup(c.ns, names[i%pods]); !ok {
			b.Fatal("pod not found")
		}
	}
}
