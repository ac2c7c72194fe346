package agentapi

import "time"

// Version is the protocol version this package speaks.
const Version = 1

// DefaultSocket is where karmord listens unless told otherwise.
const DefaultSocket = "/run/karmor/karmor.sock"

// DefaultSpoolDir is where karmor-hook leaves events karmord could not take.
const DefaultSpoolDir = "/var/lib/karmor/spool"

// Bounds on the annotations a container carries in list answers and watched events (see
// Container.AnnotationsOmitted). A pod's annotations may be hundreds of KiB; listing or streaming
// them for every container would make answers and karmord's memory grow with them.
const (
	SlimAnnotationValueBytes = 1 << 10
	SlimAnnotationBytes      = 4 << 10
)

// Message types carried in Envelope.Type.
const (
	TypeEvent      = "event"      // hook -> agent: a lifecycle event; agent -> watcher: a sequenced event
	TypeAck        = "ack"        // agent -> hook: the event was applied, Seq is its number
	TypeError      = "error"      // agent -> any: the request failed, Error says why
	TypeList       = "list"       // client -> agent: all live containers
	TypeGet        = "get"        // client -> agent: one container by ID (or unique ID prefix, or name)
	TypeWatch      = "watch"      // client -> agent: stream events after FromSeq
	TypeContainers = "containers" // agent -> client: the answer to list and get

	TypePolicyList   = "policy_list"   // client -> agent: the policy set in force and its sources
	TypePolicyState  = "policy_state"  // agent -> client: the answer to policy_list (PolicyState)
	TypeExplain      = "explain"       // client -> agent: policies' verdicts on container ID, or on the node (Node)
	TypeExplanation  = "explanation"   // agent -> client: the answer to explain (Explanation)
	TypePolicyChange = "policy_change" // agent -> watcher: a policy source changed or failed (PolicyChange)

	TypeHealth      = "health"       // client -> agent: is karmord healthy and ready
	TypeHealthState = "health_state" // agent -> client: the answer to health (Health)
)

// Event kinds.
const (
	KindStart = "start"
	KindStop  = "stop"
)

// Where the agent learned of a container.
const (
	SourceHook      = "hook"
	SourceSpool     = "spool"
	SourceReconcile = "reconcile"
)

// Envelope is the one JSON object every frame carries.
type Envelope struct {
	V          int         `json:"v"`
	Type       string      `json:"type"`
	Seq        uint64      `json:"seq,omitempty"`
	FromSeq    uint64      `json:"from_seq,omitempty"`
	ID         string      `json:"id,omitempty"`
	Error      string      `json:"error,omitempty"`
	Event      *Event      `json:"event,omitempty"`
	Containers []Container `json:"containers,omitempty"`
	// Chunked, on a list request, says the client reassembles an answer sent in several frames.
	// Without it the answer is one frame, or an error when one frame cannot hold it.
	Chunked bool `json:"chunked,omitempty"`
	// More, on a containers answer, says that more frames of the same answer follow; the last
	// frame has it false. Every frame of an answer carries the same Seq and PolicyGeneration.
	More bool `json:"more,omitempty"`

	// Node asks explain about the node rather than a container.
	Node bool `json:"node,omitempty"`
	// PolicyGeneration is the generation of the policy set that the containers' Policies of a
	// list or get answer come from.
	PolicyGeneration uint64        `json:"policy_generation,omitempty"`
	PolicyState      *PolicyState  `json:"policy_state,omitempty"`
	Explanation      *Explanation  `json:"explanation,omitempty"`
	PolicyChange     *PolicyChange `json:"policy_change,omitempty"`
	Health           *Health       `json:"health,omitempty"`
}

// Event is one container lifecycle change.
type Event struct {
	Kind  string `json:"kind"`  // KindStart or KindStop
	Stage string `json:"stage"` // the OCI hook stage that reported it, e.g. createRuntime, poststop
	// Time is when the event happened, as the hook (or reconciliation) saw it.
	Time time.Time `json:"time"`
	// Source is set by the agent: hook, spool or reconcile.
	Source string `json:"source,omitempty"`
	// HookDuration is how long the hook had been running when it sent the event, for metrics.
	HookDuration time.Duration `json:"hook_duration_ns,omitempty"`
	Container    Container     `json:"container"`
}

// Container is what karmor knows of one container. A stop event fills only ID and, when known, PID.
type Container struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// PIDStart is the pid's start time in clock ticks since boot (field 22 of /proc/<pid>/stat),
	// so that a pid reused by another process is not taken for the container.
	PIDStart   uint64            `json:"pid_start,omitempty"`
	Namespaces map[string]uint64 `json:"namespaces,omitempty"` // pid, mnt, net, uts, ipc, cgroup -> inode
	CgroupPath string            `json:"cgroup_path,omitempty"`
	Created    time.Time         `json:"created,omitzero"`
	Bundle     string            `json:"bundle,omitempty"`
	Image      string            `json:"image,omitempty"`
	AppArmor   string            `json:"apparmor_profile,omitempty"`
	Privileged bool              `json:"privileged,omitempty"`
	// Kubernetes identity, when the runtime passed it in annotations.
	Pod           string            `json:"pod,omitempty"`
	Namespace     string            `json:"namespace,omitempty"`
	PodUID        string            `json:"pod_uid,omitempty"`
	ContainerName string            `json:"container_name,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
	Annotations   map[string]string `json:"annotations,omitempty"`
	// AnnotationsOmitted is how many of the container's annotations this message leaves out.
	// List answers and watched events carry an annotation only when its value is at most
	// SlimAnnotationValueBytes, and at most SlimAnnotationBytes of them per container (keys and
	// values, taken in key order); a get answer carries them all. Set by the agent.
	AnnotationsOmitted int `json:"annotations_omitted,omitempty"`
	// Source is where the agent learned of the container: hook, spool or reconcile.
	Source string `json:"source,omitempty"`
	// Policies are the IDs of the policies that apply to the container, filled by the agent
	// when it answers (never taken from a hook).
	Policies []string `json:"policies,omitempty"`
	// KubeArmor says whether KubeArmor has the container, when karmord feeds KubeArmor: "yes"
	// (the KubeArmor running now acknowledged it), "pending" (on its way) or "away" (KubeArmor is
	// not reachable). Filled by the agent when it answers; empty when karmord feeds no KubeArmor.
	KubeArmor string `json:"kubearmor,omitempty"`
}

// Health is karmord's answer to TypeHealth, and the body of its /healthz and /readyz endpoints.
// Live is false only when restarting karmord would help (its socket is gone); Ready is false
// while any check fails, e.g. before the first reconciliation or while a policy source has never
// loaded.
type Health struct {
	Live   bool          `json:"live"`
	Ready  bool          `json:"ready"`
	Checks []HealthCheck `json:"checks"`
}

// HealthCheck is one thing karmord checks about itself.
type HealthCheck struct {
	// Name is "socket", "reconcile", "policy_source" (one per source, Source names it) or
	// "kubearmor".
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	OK     bool   `json:"ok"`
	// Liveness is true for the checks whose failure makes karmord unhealthy, not only unready.
	Liveness bool `json:"liveness,omitempty"`
	// Detail says why a check fails, or a note on one that passes (a source kept from its cache).
	Detail string `json:"detail,omitempty"`
}
