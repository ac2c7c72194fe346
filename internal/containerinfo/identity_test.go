package containerinfo

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

const testID = "4f9c2e1d7a6b"

var containerdBundle = "/run/containerd/" + containerdTaskDir + "/" + containerdCRINamespace + "/" + testID

// Keys each runtime writes itself, for a pod web-1 in namespace tenant-a (uid u-1), container
// main, pod labels app=web.
var (
	containerdOwn = map[string]string{
		AnnotationCRIContainerType: "container", AnnotationCRIPodName: "web-1", AnnotationCRIPodNamespace: "tenant-a",
		AnnotationCRIPodUID: "u-1", AnnotationCRIContainerName: "main", AnnotationCRIImageName: "registry.example/web:1",
	}
	nriOwn = map[string]string{
		AnnotationContainerID: testID, AnnotationPodName: "web-1", AnnotationPodNamespace: "tenant-a", AnnotationPodUID: "u-1",
		AnnotationPodLabels: `{"app":"web"}`,
	}
	crioOwn = map[string]string{
		AnnotationManager: ManagerCRIO, AnnotationCRIOContainerID: testID, AnnotationCRIOPodName: "web-1",
		AnnotationCRIOPodNamespace: "tenant-a", AnnotationCRIOPodUID: "u-1", AnnotationCRIOContainerName: "main",
		AnnotationCRIOImageName: "registry.example/web:1", AnnotationCRIOLabels: `{"app":"web"}`,
	}
	podmanOwn = map[string]string{AnnotationManager: ManagerLibpod, AnnotationCRIOCreated: "2026-01-02T03:04:05Z"}
)

// spoofs are what a workload can add: a pod's annotations passed through by containerd or copied
// by CRI-O, or `podman/docker --annotation`. Every runtime's identity keys claim kube-system and
// app=trusted; the ones naming an id use the container's own, the strongest guess there is.
var spoofs = map[string]string{
	AnnotationCRIOPodNamespace: "kube-system", AnnotationCRIOPodName: "spoof", AnnotationCRIOPodUID: "spoof",
	AnnotationCRIOContainerName: "spoof", AnnotationCRIOLabels: `{"app":"trusted"}`,
	AnnotationCRIPodNamespace: "kube-system", AnnotationCRIPodName: "spoof", AnnotationCRIPodUID: "spoof",
	AnnotationCRIContainerName: "spoof", AnnotationCRIContainerType: "container",
	AnnotationPodNamespace: "kube-system", AnnotationPodName: "spoof", AnnotationPodUID: "spoof",
	AnnotationPodLabels: `{"app":"trusted"}`, AnnotationKubeArmorName: "spoof",
}

// layered merges annotation sets in the order they are written: later sets override earlier ones.
func layered(sets ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, s := range sets {
		maps.Copy(out, s)
	}
	return out
}

type identityCase struct {
	name, bundle string
	// workload is what the workload added; own are the runtime's (and karmor-nri's) keys, in the
	// order they are written after it.
	workload map[string]string
	own      []map[string]string
	runtime  Runtime
	// What the container is: its pod's namespace, pod, uid, container name, labels and name.
	namespace, pod, uid, containerName, labels, containerNameForKA string
}

func (c identityCase) annotations() map[string]string {
	return layered(append([]map[string]string{c.workload}, c.own...)...)
}

// identityCases are bundles as each runtime writes them, after a workload added spoofs.
func identityCases() []identityCase {
	k8s := func(c identityCase) identityCase {
		c.namespace, c.pod, c.uid, c.containerName, c.containerNameForKA = "tenant-a", "web-1", "u-1", "main", "main"
		return c
	}
	crioBundle := "/run/containers/storage/overlay-containers/" + testID + "/userdata"
	podmanBundle := "/var/lib/containers/storage/overlay-containers/" + testID + "/userdata"
	return []identityCase{
		// containerd writes its keys after the pod's; karmor-nri adjusts last.
		k8s(identityCase{name: "containerd with karmor-nri", bundle: containerdBundle, runtime: RuntimeContainerd,
			workload: layered(spoofs, map[string]string{AnnotationManager: ManagerCRIO, AnnotationCRIOContainerID: testID}),
			own:      []map[string]string{containerdOwn, nriOwn}, labels: `{"app":"web"}`}),
		// Without NRI (karmor-runc), the pod's karmor.io keys stand unchallenged but unproven.
		k8s(identityCase{name: "containerd without NRI", bundle: containerdBundle, runtime: RuntimeContainerd,
			workload: layered(spoofs, map[string]string{AnnotationContainerID: "guessed"}),
			own:      []map[string]string{containerdOwn}, labels: "null"}),
		// CRI-O copies the pod's annotations first, then writes its own and kubelet's labels.
		k8s(identityCase{name: "CRI-O hooks.d", bundle: crioBundle, runtime: RuntimeCRIO,
			workload: layered(spoofs, map[string]string{AnnotationContainerID: "guessed"}),
			own:      []map[string]string{crioOwn}, labels: `{"app":"web"}`}),
		// Under CRI-O, io.kubernetes.cri-o.Labels are kubelet's container labels; karmor-nri has
		// the pod's.
		k8s(identityCase{name: "CRI-O with karmor-nri", bundle: crioBundle, runtime: RuntimeCRIO, workload: spoofs,
			own: []map[string]string{crioOwn, {AnnotationCRIOLabels: `{"io.kubernetes.pod.name":"web-1"}`}, nriOwn}, labels: `{"app":"web"}`}),
		// Podman lets --annotation set any key, io.container.manager included, before its own.
		{name: "Podman", bundle: podmanBundle, runtime: RuntimePodman,
			workload: layered(spoofs, map[string]string{AnnotationContainerID: testID}), own: []map[string]string{podmanOwn},
			labels: "null", containerNameForKA: "spoof"},
		{name: "Podman claiming CRI-O", bundle: podmanBundle, runtime: RuntimeOther,
			workload: layered(spoofs, map[string]string{AnnotationManager: ManagerCRIO, AnnotationCRIOContainerID: "guessed"}),
			labels:   "null", containerNameForKA: "spoof"},
		{name: "plain runc", bundle: "/tmp/bundle", runtime: RuntimeOther,
			workload: layered(spoofs, map[string]string{AnnotationContainerID: testID}), labels: "null", containerNameForKA: "spoof"},
		// containerd outside CRI (nerdctl, Docker's moby namespace): no pod at all.
		{name: "containerd outside CRI", bundle: "/run/containerd/" + containerdTaskDir + "/default/" + testID, runtime: RuntimeOther,
			workload: spoofs, own: []map[string]string{containerdOwn}, labels: "null", containerNameForKA: "spoof"},
	}
}

// A workload's annotations never choose its runtime, namespace, pod, uid, container name or
// labels, whichever runtime created it (issue 12 item 1).
func TestIdentityPerRuntimeIgnoresSpoofs(t *testing.T) {
	for _, tc := range identityCases() {
		t.Run(tc.name, func(t *testing.T) {
			ann := tc.annotations()
			if got := DetectRuntime(testID, tc.bundle, ann); got != tc.runtime {
				t.Errorf("runtime %q, want %q", got, tc.runtime)
			}
			c := FromOCI(&rspec.State{ID: testID, Bundle: tc.bundle, Pid: 1}, &rspec.Spec{Annotations: ann})
			labels, _ := json.Marshal(c.Labels)
			got := []string{c.Namespace, c.Pod, c.PodUID, c.ContainerName, string(labels), c.Name}
			want := []string{tc.namespace, tc.pod, tc.uid, tc.containerName, tc.labels, tc.containerNameForKA}
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("namespace|pod|uid|container|labels|name\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestDetectRuntimeBundlePaths(t *testing.T) {
	typ := map[string]string{AnnotationCRIContainerType: "container"}
	for bundle, want := range map[string]Runtime{
		containerdBundle: RuntimeContainerd,
		"/var/run/containerd/state/" + containerdTaskDir + "/k8s.io/" + testID: RuntimeContainerd,
		containerdBundle + "/": RuntimeOther, // not clean
		"run/containerd/" + containerdTaskDir + "/k8s.io/" + testID:       RuntimeOther, // relative
		"/run/containerd/" + containerdTaskDir + "/k8s.io/other":          RuntimeOther, // another container's
		"/run/containerd/io.containerd.runtime.v1.linux/k8s.io/" + testID: RuntimeOther,
		"/tmp/k8s.io/" + testID: RuntimeOther,
	} {
		if got := DetectRuntime(testID, bundle, typ); got != want {
			t.Errorf("%s: %q, want %q", bundle, got, want)
		}
	}
	if got := DetectRuntime(testID, containerdBundle, nil); got != RuntimeOther {
		t.Errorf("containerd's path without its container type: %q", got)
	}
	if got := DetectRuntime("", "/x", map[string]string{AnnotationManager: ManagerCRIO, AnnotationCRIOContainerID: ""}); got != RuntimeOther {
		t.Errorf("empty id matched CRI-O's empty id: %q", got)
	}
}

// FuzzIdentityIgnoresWorkloadAnnotations adds arbitrary workload annotations (a JSON object)
// under each runtime's own keys, layered as the runtime writes them, and checks that the
// identity stays the runtime's. A workload cannot know its container's id before the runtime
// draws it, so inputs naming the id are skipped.
func FuzzIdentityIgnoresWorkloadAnnotations(f *testing.F) {
	seed, _ := json.Marshal(spoofs)
	f.Add(seed)
	f.Add([]byte(`{"io.container.manager":"libpod"}`))
	f.Add([]byte(`{"io.kubernetes.cri.container-type":"","karmor.io/pod-labels":"{\"a\":\"b\"}"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var workload map[string]string
		if json.Unmarshal(raw, &workload) != nil || strings.Contains(string(raw), testID) {
			return
		}
		for _, tc := range identityCases()[:4] { // the Kubernetes runtimes
			own := layered(tc.own...)
			tc.workload = workload
			ann := tc.annotations()
			want := FromOCI(&rspec.State{ID: testID, Bundle: tc.bundle}, &rspec.Spec{Annotations: own})
			got := FromOCI(&rspec.State{ID: testID, Bundle: tc.bundle}, &rspec.Spec{Annotations: ann})
			if got.Namespace != want.Namespace || got.Pod != want.Pod || got.PodUID != want.PodUID || got.ContainerName != want.ContainerName ||
				got.Name != want.Name || !maps.Equal(got.Labels, want.Labels) || DetectRuntime(testID, tc.bundle, ann) != tc.runtime {
				t.Fatalf("%s: workload annotations %s changed the identity\n got %+v\nwant %+v", tc.name, raw, got, want)
			}
		}
		for _, bundle := range []string{"/tmp/bundle", "/var/lib/containers/storage/overlay-containers/" + testID + "/userdata"} {
			if c := FromOCI(&rspec.State{ID: testID, Bundle: bundle}, &rspec.Spec{Annotations: workload}); c.Namespace != "" || c.Pod != "" {
				t.Fatalf("annotations %s gave a container outside Kubernetes a pod: %+v", raw, c)
			}
		}
	})
}
