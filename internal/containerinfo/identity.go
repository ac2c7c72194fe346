package containerinfo

import (
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Runtime names the runtime that created a container, as told by keys only that runtime writes.
// A container's annotations are partly its creator's: containerd passes a pod's annotations
// through (pod_annotations), CRI-O copies them into the spec, and `podman --annotation` sets any
// key. Which keys are believed therefore depends on the runtime, and the runtime itself is told
// by what a workload cannot choose: docs/identity.md has the table and the reasons.
type Runtime string

const (
	// RuntimeContainerd is containerd's CRI plugin: a bundle in containerd's task directory for
	// the k8s.io namespace, named by the container's id, with the CRI plugin's container type.
	RuntimeContainerd Runtime = "containerd"
	// RuntimeCRIO is CRI-O: io.container.manager=cri-o and CRI-O's own record of the container's
	// id, which no pod can know when its annotations are written.
	RuntimeCRIO Runtime = "cri-o"
	// RuntimePodman is Podman (io.container.manager=libpod): never a Kubernetes pod.
	RuntimePodman Runtime = "podman"
	// RuntimeOther is anything else (plain runc, crun, Docker through karmor-runc): no
	// Kubernetes identity, because nothing vouches for one.
	RuntimeOther Runtime = "other"
)

// containerdTaskDir and containerdCRINamespace make up the path of a CRI container's bundle:
// <containerd state>/io.containerd.runtime.v2.task/k8s.io/<id>.
const (
	containerdTaskDir      = "io.containerd.runtime.v2.task"
	containerdCRINamespace = "k8s.io"
)

// DetectRuntime tells which runtime created container id from its bundle path and its merged
// annotations. containerd is tried first: its evidence is the bundle's path, which no
// annotation can change, so a pod passing CRI-O's or Podman's keys through containerd is still
// containerd's.
func DetectRuntime(id, bundle string, ann map[string]string) Runtime {
	switch {
	case id != "" && isContainerdCRIBundle(id, bundle) && ann[AnnotationCRIContainerType] != "":
		return RuntimeContainerd
	case id != "" && ann[AnnotationManager] == ManagerCRIO && ann[AnnotationCRIOContainerID] == id:
		return RuntimeCRIO
	case ann[AnnotationManager] == ManagerLibpod:
		return RuntimePodman
	}
	return RuntimeOther
}

// RuntimeOf is DetectRuntime for a container already built by FromOCI.
func RuntimeOf(c *agentapi.Container) Runtime {
	return DetectRuntime(c.ID, c.Bundle, c.Annotations)
}

func isContainerdCRIBundle(id, bundle string) bool {
	if !filepath.IsAbs(bundle) || filepath.Clean(bundle) != bundle || filepath.Base(bundle) != id {
		return false
	}
	ns := filepath.Dir(bundle)
	return filepath.Base(ns) == containerdCRINamespace && filepath.Base(filepath.Dir(ns)) == containerdTaskDir
}

// identify fills c's identity (pod, namespace, pod uid, container name, name, image, creation
// time, labels) from ann, believing only the keys of the runtime that created c. c.ID and
// c.Bundle must be set.
func identify(c *agentapi.Container, ann map[string]string) {
	get := func(key string) string {
		if v := ann[key]; len(v) <= MaxValueBytes {
			return v
		}
		return ""
	}
	runtime := DetectRuntime(c.ID, c.Bundle, ann)
	// karmor-nri's keys, when it ran for this container, are the pod as the runtime told NRI;
	// they win over the runtime's own under both runtimes that run NRI plugins.
	fromNRI := (runtime == RuntimeContainerd || runtime == RuntimeCRIO) && ann[AnnotationContainerID] == c.ID
	switch runtime {
	case RuntimeContainerd:
		c.Pod, c.Namespace, c.PodUID = get(AnnotationCRIPodName), get(AnnotationCRIPodNamespace), get(AnnotationCRIPodUID)
		c.ContainerName, c.Image = get(AnnotationCRIContainerName), get(AnnotationCRIImageName)
		c.Name = c.ContainerName
	case RuntimeCRIO:
		c.Pod, c.Namespace, c.PodUID = get(AnnotationCRIOPodName), get(AnnotationCRIOPodNamespace), get(AnnotationCRIOPodUID)
		c.ContainerName, c.Image = get(AnnotationCRIOContainerName), get(AnnotationCRIOImageName)
		c.Name = c.ContainerName
		c.Created = parseTime(ann[AnnotationCRIOCreated])
		if !fromNRI {
			c.Labels = labelsJSON(ann[AnnotationCRIOLabels])
		}
	case RuntimePodman:
		// Podman keeps the name and image outside the spec (ReadLibpodIdentity) and its labels
		// in its database (internal/podmanlabels); a name given for KubeArmor comes first.
		c.Name = get(AnnotationKubeArmorName)
		c.Created = parseTime(ann[AnnotationCRIOCreated])
	default:
		c.Name = get(AnnotationKubeArmorName)
	}
	if fromNRI {
		c.Pod, c.Namespace, c.PodUID = get(AnnotationPodName), get(AnnotationPodNamespace), get(AnnotationPodUID)
		c.Labels = labelsJSON(ann[AnnotationPodLabels])
	}
}

// labelsJSON decodes a labels annotation (a JSON object of strings), bounded like annotations.
// Malformed JSON yields no labels: labels are an optional refinement, not a reason to lose the
// event.
func labelsJSON(raw string) map[string]string {
	var m map[string]string
	if raw == "" || len(raw) > MaxValueBytes || json.Unmarshal([]byte(raw), &m) != nil || len(m) == 0 {
		return nil
	}
	return boundMap(m, MaxLabels, MaxLabelValueBytes, 0)
}

// parseTime parses an RFC 3339 time in UTC; the zero time when it does not parse.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
