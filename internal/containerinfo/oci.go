package containerinfo

import (
	"maps"
	"sort"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Annotations that carry a container's identity. Runtimes and orchestrators each use their own;
// which of them are believed depends on the runtime that created the container (see identity.go
// and docs/identity.md).
const (
	// AnnotationKubeArmorName names a container outside Kubernetes, as KubeArmor's
	// non-Kubernetes mode does.
	AnnotationKubeArmorName = "kubearmor.io/container.name"

	// Added by karmor-nri (internal/nri) under containerd and CRI-O. They are believed only when
	// AnnotationContainerID equals the container's id: a pod's annotations are fixed before the
	// runtime draws the id, so only a plugin that ran for this very container can write it.
	AnnotationContainerID  = "karmor.io/container-id"
	AnnotationPodLabels    = "karmor.io/pod-labels" // the pod's labels as a JSON object
	AnnotationPodName      = "karmor.io/pod-name"
	AnnotationPodNamespace = "karmor.io/pod-namespace"
	AnnotationPodUID       = "karmor.io/pod-uid"

	// CRI-O: the pod's keys are kubelet's container labels, which CRI-O writes after the pod's
	// own annotations; the rest are CRI-O's own.
	AnnotationCRIOPodName       = "io.kubernetes.pod.name"
	AnnotationCRIOPodNamespace  = "io.kubernetes.pod.namespace"
	AnnotationCRIOPodUID        = "io.kubernetes.pod.uid"
	AnnotationCRIOContainerName = "io.kubernetes.container.name"
	AnnotationCRIOContainerID   = "io.kubernetes.cri-o.ContainerID"
	AnnotationCRIOLabels        = "io.kubernetes.cri-o.Labels"
	AnnotationCRIOImageName     = "io.kubernetes.cri-o.ImageName"
	// AnnotationCRIOCreated is an RFC 3339 time; Podman sets it too.
	AnnotationCRIOCreated = "io.kubernetes.cri-o.Created"
	// AnnotationCRIOPrefix starts every key CRI-O writes for itself.
	AnnotationCRIOPrefix = "io.kubernetes.cri-o."

	// containerd's CRI plugin, written after the pod's passed-through annotations.
	AnnotationCRIContainerType = "io.kubernetes.cri.container-type"
	AnnotationCRIPodName       = "io.kubernetes.cri.sandbox-name"
	AnnotationCRIPodNamespace  = "io.kubernetes.cri.sandbox-namespace"
	AnnotationCRIPodUID        = "io.kubernetes.cri.sandbox-uid"
	AnnotationCRIContainerName = "io.kubernetes.cri.container-name"
	AnnotationCRIImageName     = "io.kubernetes.cri.image-name"
	// AnnotationCRIPrefix starts every key containerd's CRI plugin writes.
	AnnotationCRIPrefix = "io.kubernetes.cri."

	// AnnotationManager is "cri-o" for CRI-O's containers and "libpod" for Podman's.
	AnnotationManager = "io.container.manager"
	ManagerCRIO       = "cri-o"
	ManagerLibpod     = "libpod"
)

// Bounds on the maps copied from a container's annotations. Kubernetes itself caps a pod's
// annotations at 256 KiB in total and label values at 63 bytes; these bounds are looser than
// Kubernetes' so real pods fit, and tight enough that one event stays far below agentapi.MaxFrame.
const (
	MaxAnnotations     = 256
	MaxLabels          = 256
	MaxKeyBytes        = 317 // a 253-byte DNS prefix, "/", and a 63-byte name
	MaxValueBytes      = 16 << 10
	MaxLabelValueBytes = 1 << 10
	// MaxAnnotationBytes bounds the sum of annotation keys and values kept.
	MaxAnnotationBytes = 256 << 10
)

// FromOCI builds a container from its OCI state and config. spec may be nil when the config
// could not be read; the state's annotations are then the only source of identity. Nothing here
// touches the file system; see ReadProc and ReadLibpodIdentity for what the host adds.
//
// Annotations are the config's, overlaid by the state's (runtimes copy the config's into the
// state, but a runtime may add its own). Entries beyond the bounds above are dropped whole, in
// key order, rather than truncated into values that were never set.
func FromOCI(state *rspec.State, spec *rspec.Spec) agentapi.Container {
	var c agentapi.Container
	merged := map[string]string{}
	if spec != nil {
		maps.Copy(merged, spec.Annotations)
	}
	if state != nil {
		c.ID = state.ID
		c.PID = state.Pid
		c.Bundle = state.Bundle
		maps.Copy(merged, state.Annotations)
	}
	c.Annotations = BoundAnnotations(merged)

	// Identity comes from the full merged set, so that a huge unrelated annotation cannot push
	// the pod's name out of the bounded copy.
	identify(&c, merged)

	if spec != nil {
		if spec.Process != nil {
			c.AppArmor = spec.Process.ApparmorProfile
			c.Privileged = FullCapabilities(spec.Process.Capabilities, HostCapLastCap())
		}
		if spec.Linux != nil {
			c.CgroupPath = spec.Linux.CgroupsPath
		}
	}
	return c
}

// BoundAnnotations returns a copy of m within the annotation bounds (nil when empty).
func BoundAnnotations(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return boundMap(m, MaxAnnotations, MaxValueBytes, MaxAnnotationBytes)
}

// BoundLabels keeps of m what karmor keeps of labels from annotations: in key order, the labels
// whose key and value fit the label bounds, up to MaxLabels. For labels read from runtimes' own
// files (Docker's, Podman's).
func BoundLabels(m map[string]string) map[string]string {
	return boundMap(m, MaxLabels, MaxLabelValueBytes, 0)
}

// boundMap keeps, in key order, the entries whose key and value fit, up to maxEntries and (when
// maxTotal > 0) maxTotal bytes of keys and values.
func boundMap(m map[string]string, maxEntries, maxValue, maxTotal int) map[string]string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if k != "" && len(k) <= MaxKeyBytes && len(v) <= maxValue {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make(map[string]string, min(len(keys), maxEntries))
	total := 0
	for _, k := range keys {
		if len(out) == maxEntries {
			break
		}
		size := len(k) + len(m[k])
		if maxTotal > 0 && total+size > maxTotal {
			continue // a smaller entry further on may still fit
		}
		total += size
		out[k] = m[k]
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// FullCapabilities reports whether caps grants every capability the kernel knows (0..lastCap)
// in both the bounding and the effective set: what `--privileged` gives. A container with every
// capability can undo any confinement, which is why karmor flags it.
func FullCapabilities(caps *rspec.LinuxCapabilities, lastCap int) bool {
	if caps == nil || lastCap < 0 {
		return false
	}
	return coversAll(caps.Bounding, lastCap) && coversAll(caps.Effective, lastCap)
}

// coversAll reports whether names holds every capability 0..lastCap. Capabilities newer than
// this program's table are counted by their distinct unknown CAP_ names.
func coversAll(names []string, lastCap int) bool {
	var have [64]bool
	unknown := map[string]bool{}
	for _, n := range names {
		n = strings.ToUpper(strings.TrimSpace(n))
		if !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		if i, ok := capNumbers[n]; ok {
			have[i] = true
		} else {
			unknown[n] = true
		}
	}
	known := min(lastCap, len(capNames)-1)
	for i := 0; i <= known; i++ {
		if !have[i] {
			return false
		}
	}
	return len(unknown) >= lastCap-known
}

// capNames are the Linux capabilities by number (include/uapi/linux/capability.h).
var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

var capNumbers = func() map[string]int {
	m := make(map[string]int, len(capNames))
	for i, n := range capNames {
		m[n] = i
	}
	return m
}()
