package kubepods

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	thisNode  = "node-a"
	otherNode = "node-b"
	// deadline is how long a test waits for the watch to catch up: generous, because the machine may
	// be busy; a passing test returns as soon as the condition holds.
	deadline = 30 * time.Second
)

func pod(namespace, name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels, UID: types.UID("uid-" + namespace + "-" + name)},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

// selectorLog records the field selectors the watcher sends with its lists and watches.
type selectorLog struct {
	mu             sync.Mutex
	lists, watches []string
}

func (s *selectorLog) snapshot() (lists, watches []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lists...), append([]string(nil), s.watches...)
}

// serverSideFiltering makes the fake clientset filter pods by field selector as the API server
// does (the fake itself ignores field selectors), and records every selector it was sent. Pods are
// matched on the fields the API server indexes for them, so a wrong field name or value selects
// nothing and the tests fail.
func serverSideFiltering(t *testing.T, client *fake.Clientset) *selectorLog {
	t.Helper()
	log := &selectorLog{}
	podFields := func(p *corev1.Pod) fields.Set {
		return fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace, "spec.nodeName": p.Spec.NodeName}
	}
	tracker := client.Tracker()
	client.PrependReactor("list", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		list := action.(k8stesting.ListAction)
		selector := list.GetListRestrictions().Fields
		log.mu.Lock()
		log.lists = append(log.lists, selector.String())
		log.mu.Unlock()
		obj, err := tracker.List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), list.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		all := obj.(*corev1.PodList)
		kept := &corev1.PodList{ListMeta: all.ListMeta}
		for _, p := range all.Items {
			if selector.Matches(podFields(&p)) {
				kept.Items = append(kept.Items, p)
			}
		}
		return true, kept, nil
	})
	client.PrependWatchReactor("pods", func(action k8stesting.Action) (bool, watch.Interface, error) {
		wa := action.(k8stesting.WatchAction)
		selector := wa.GetWatchRestrictions().Fields
		log.mu.Lock()
		log.watches = append(log.watches, selector.String())
		log.mu.Unlock()
		w, err := tracker.Watch(corev1.SchemeGroupVersion.WithResource("pods"), wa.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		return true, watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
			p, ok := e.Object.(*corev1.Pod)
			return e, !ok || selector.Matches(podFields(p))
		}), nil
	})
	return log
}

// start runs a Watcher on client for thisNode until the test ends and waits for its first list.
func start(t *testing.T, client Client) *Watcher {
	t.Helper()
	w, err := New(Options{Client: client, NodeName: thisNode})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	syncCtx, syncCancel := context.WithTimeout(ctx, deadline)
	defer syncCancel()
	if !w.WaitSynced(syncCtx) {
		t.Fatalf("the first list of pods did not arrive within %v", deadline)
	}
	return w
}

// eventually fails the test unless cond holds before the deadline.
func eventually(t *testing.T, what string, cond func() bool) {
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
	client := fake.NewClientset(
		pod("shop", "web-1", thisNode, map[string]string{"app": "web", "tier": "front"}),
		pod("shop", "db-1", otherNode, map[string]string{"app": "db"}),
		pod("kube-system", "unscheduled", "", map[string]string{"app": "pending"}),
	)
	log := serverSideFiltering(t, client)
	w := start(t, client)

	labels, ok := w.Lookup("shop", "web-1")
	if !ok || !maps.Equal(labels, map[string]string{"app": "web", "tier": "front"}) {
		t.Errorf("Lookup(shop, web-1) = %v, %v; want its labels, true", labels, ok)
	}
	for _, p := range [][2]string{{"shop", "db-1"}, {"kube-system", "unscheduled"}, {"shop", "nonexistent"}, {"other", "web-1"}} {
		if labels, ok := w.Lookup(p[0], p[1]); ok || labels != nil {
			t.Errorf("Lookup(%s, %s) = %v, %v; want nil, false", p[0], p[1], labels, ok)
		}
	}
	if keys := w.informer.GetStore().ListKeys(); len(keys) != 1 || keys[0] != "shop/web-1" {
		t.Errorf("the cache holds %v; want only shop/web-1", keys)
	}

	// A pod scheduled to this node after the first list arrives through the watch.
	if _, err := client.CoreV1().Pods("shop").Create(context.Background(), pod("shop", "web-2", thisNode, map[string]string{"app": "web"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "shop/web-2 created on this node is not found", func() bool {
		labels, ok := w.Lookup("shop", "web-2")
		return ok && labels["app"] == "web"
	})

	want := NodeFieldSelector(thisNode)
	if want != "spec.nodeName="+thisNode {
		t.Errorf("NodeFieldSelector(%q) = %q", thisNode, want)
	}
	lists, watches := log.snapshot()
	if len(lists) == 0 || len(watches) == 0 {
		t.Fatalf("saw %d lists and %d watches; want at least one of each", len(lists), len(watches))
	}
	for _, got := range append(lists, watches...) {
		if got != want {
			t.Errorf("a list or watch was sent field selector %q; want %q (lists %q, watches %q)", got, want, lists, watches)
		}
	}
}

func TestPodBoundToThisNodeLater(t *testing.T) {
	client := fake.NewClientset(pod("shop", "web-1", "", map[string]string{"app": "web"}))
	serverSideFiltering(t, client)
	w := start(t, client)
	if _, ok := w.Lookup("shop", "web-1"); ok {
		t.Fatal("an unscheduled pod is known before it is bound to this node")
	}
	// Binding sets spec.nodeName; the API server then shows the pod to this node's watch.
	bound := pod("shop", "web-1", thisNode, map[string]string{"app": "web"})
	if _, err := client.CoreV1().Pods("shop").Update(context.Background(), bound, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "shop/web-1 bound to this node is not found", func() bool {
		labels, ok := w.Lookup("shop", "web-1")
		return ok && labels["app"] == "web"
	})
}

func TestLabelChangesAndDeletesFollowTheAPI(t *testing.T) {
	client := fake.NewClientset(
		pod("shop", "web-1", thisNode, map[string]string{"app": "web", "version": "1"}),
		pod("shop", "web-2", thisNode, map[string]string{"app": "web"}),
	)
	serverSideFiltering(t, client)
	w := start(t, client)
	ctx := context.Background()
	pods := client.CoreV1().Pods("shop")

	relabelled := pod("shop", "web-1", thisNode, map[string]string{"app": "web", "version": "2", "canary": "true"})
	if _, err := pods.Update(ctx, relabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the label change of shop/web-1 did not arrive", func() bool {
		labels, ok := w.Lookup("shop", "web-1")
		return ok && maps.Equal(labels, map[string]string{"app": "web", "version": "2", "canary": "true"})
	})

	unlabelled := pod("shop", "web-1", thisNode, nil)
	if _, err := pods.Update(ctx, unlabelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removing every label of shop/web-1 did not arrive", func() bool {
		labels, ok := w.Lookup("shop", "web-1")
		return ok && len(labels) == 0
	})

	if err := pods.Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "shop/web-1 is still found after its deletion", func() bool {
		_, ok := w.Lookup("shop", "web-1")
		return !ok
	})
	if labels, ok := w.Lookup("shop", "web-2"); !ok || labels["app"] != "web" {
		t.Errorf("deleting web-1 disturbed web-2: Lookup = %v, %v", labels, ok)
	}
}

// Without server-side filtering (as with the plain fake clientset), pods of other nodes reach the
// cache; Lookup still must not answer for them.
func TestLookupIgnoresOtherNodesPodsTheServerSent(t *testing.T) {
	client := fake.NewClientset(
		pod("shop", "web-1", thisNode, map[string]string{"app": "web"}),
		pod("shop", "db-1", otherNode, map[string]string{"app": "db"}),
	)
	w := start(t, client)
	if _, ok := w.Lookup("shop", "web-1"); !ok {
		t.Fatal("shop/web-1 on this node is not found")
	}
	if _, inCache, err := w.informer.GetStore().GetByKey("shop/db-1"); err != nil || !inCache {
		t.Fatalf("precondition: the plain fake ignores field selectors, so shop/db-1 should be cached (cached %v, err %v)", inCache, err)
	}
	if labels, ok := w.Lookup("shop", "db-1"); ok {
		t.Errorf("Lookup(shop, db-1) on %s = %v, true; want nil, false", otherNode, labels)
	}
}

func TestLookupReturnsACopy(t *testing.T) {
	client := fake.NewClientset(pod("shop", "web-1", thisNode, map[string]string{"app": "web"}))
	w := start(t, client)
	labels, ok := w.Lookup("shop", "web-1")
	if !ok {
		t.Fatal("shop/web-1 not found")
	}
	labels["app"] = "changed by the caller"
	if again, _ := w.Lookup("shop", "web-1"); again["app"] != "web" {
		t.Errorf("a caller's change reached the cache: app=%q", again["app"])
	}
}

func TestSlimPodKeepsOnlyWhatLookupReads(t *testing.T) {
	full := pod("shop", "web-1", thisNode, map[string]string{"app": "web"})
	full.ResourceVersion = "42"
	full.Annotations = map[string]string{"big": "annotation"}
	full.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	full.Status.Phase = corev1.PodRunning

	once, err := slimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	slim := once.(*corev1.Pod)
	if slim.Name != "web-1" || slim.Namespace != "shop" || slim.UID != full.UID || slim.ResourceVersion != "42" ||
		slim.Spec.NodeName != thisNode || !maps.Equal(slim.Labels, full.Labels) {
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
	if _, err := New(Options{NodeName: thisNode}); err == nil {
		t.Error("New without a client succeeded")
	}
	if _, err := New(Options{Client: fake.NewClientset()}); err == nil {
		t.Error("New without a node name succeeded")
	}
}

// BenchmarkLookup measures what a label lookup costs karmord: a map read and a copy of the labels,
// with a node's worth of pods (the kubelet's default maximum is 110) in the cache.
func BenchmarkLookup(b *testing.B) {
	const pods = 110
	client := fake.NewClientset()
	for i := range pods {
		p := pod("shop", fmt.Sprintf("web-%d", i), thisNode, map[string]string{
			"app": "web", "tier": "front", "version": "v1", "pod-template-hash": "7d4b9c8f6",
		})
		if err := client.Tracker().Add(p); err != nil {
			b.Fatal(err)
		}
	}
	w, err := New(Options{Client: client, NodeName: thisNode})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	if !w.WaitSynced(ctx) {
		b.Fatal("cache did not sync")
	}
	names := make([]string, pods)
	for i := range names {
		names[i] = fmt.Sprintf("web-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, ok := w.Lookup("shop", names[i%pods]); !ok {
			b.Fatal("pod not found")
		}
	}
}
