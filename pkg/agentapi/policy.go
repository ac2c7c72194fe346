package agentapi

import "time"

// PolicyState is karmord's answer to TypePolicyList: the policy set in force, where each policy
// came from, and the state of every source.
type PolicyState struct {
	// Generation counts the policy sets karmord has put in force since it started (1 is the set
	// loaded at start from directories and caches).
	Generation uint64    `json:"generation"`
	BuiltAt    time.Time `json:"built_at,omitzero"`
	// Node is the node as host policies see it.
	Node     Node           `json:"node"`
	Sources  []PolicySource `json:"sources"`
	Policies []PolicyInfo   `json:"policies"`
	// Duplicates are the IDs of policies defined more than once (every copy applies).
	Duplicates []string `json:"duplicates,omitempty"`
}

// Node is the node karmord runs on: its name and labels, which host policies select.
type Node struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// Policy source kinds.
const (
	PolicySourceDir = "dir"
	PolicySourceOCI = "oci"
)

// PolicySource is one place karmord takes policies from, and how its last checks went.
type PolicySource struct {
	// Name identifies the source: "dir:PATH" or "oci:REF".
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Location is the directory, or REF@DIGEST of the content in force (REF before any).
	Location string `json:"location"`
	Digest   string `json:"digest,omitempty"`
	// Policies is the number of the source's policy documents in force.
	Policies int `json:"policies"`
	// LoadedAt is when the source's content in force was put in force.
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// FromCache is true while an OCI source's policies come from karmord's on-disk cache and the
	// registry has not confirmed them yet.
	FromCache bool `json:"from_cache,omitempty"`
	// SignedBy is who signed the policies in force, when karmord verifies the source's signatures.
	SignedBy string `json:"signed_by,omitempty"`
	// LastSuccess is when a check of the source last succeeded.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Failing is true when the latest check failed; LastError says why. The source's last good
	// policies stay in force meanwhile.
	Failing     bool      `json:"failing"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// PolicyInfo is one policy in force.
type PolicyInfo struct {
	// ID is KIND/NAMESPACE/NAME for a KubeArmorPolicy, KIND/NAME for the cluster-scoped kinds.
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Scope is what the policy selects: namespace, cluster, labels or node.
	Scope string `json:"scope"`
	// Selects describes the selector for people, e.g. `namespace "default", app=web`.
	Selects string `json:"selects"`
	// Source is the name of the source the policy came from; File is the file within it (a path,
	// or REF@DIGEST/FILE).
	Source   string    `json:"source"`
	File     string    `json:"file"`
	Rules    int       `json:"rules"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// KubeArmor is what KubeArmor made of the policy, when karmord sends it policies: its answer
	// (Applied, Invalid, NotEnabled, Failure, ...), or Pending, Away (KubeArmor not reachable),
	// NotSent (karmord does not send it: KubeArmorDetail says why). Empty when karmord sends
	// KubeArmor no policies.
	KubeArmor       string `json:"kubearmor,omitempty"`
	KubeArmorDetail string `json:"kubearmor_detail,omitempty"`
}

// Explanation is karmord's answer to TypeExplain: every policy's verdict on one container (or
// on the node) with the reasons it does not apply, and the effective rules of those that do.
type Explanation struct {
	// Generation is the generation of the policy set the verdicts come from.
	Generation uint64 `json:"generation"`
	// Container is the container explained, as karmord knows it; nil for the node.
	Container *Container `json:"container,omitempty"`
	// Node is the node explained; nil for a container.
	Node     *Node           `json:"node,omitempty"`
	Verdicts []PolicyVerdict `json:"policies"`
	// Rules are the effective rules of the applying policies, action and severity resolved.
	Rules []PolicyRule `json:"rules"`
}

// PolicyVerdict says whether one policy applies, and why not.
type PolicyVerdict struct {
	Policy    string `json:"policy"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Source    string `json:"source,omitempty"`
	File      string `json:"file,omitempty"`
	Selects   string `json:"selects"`
	Applies   bool   `json:"applies"`
	// Reasons are every condition of the policy that failed, when it does not apply.
	Reasons []string `json:"reasons,omitempty"`
	// KubeArmor is KubeArmor's state of the policy, as in PolicyInfo, when karmord sends it
	// policies. KubeArmorDiffers is set when KubeArmor, matching as it does outside
	// Kubernetes, decides otherwise than Applies: "KubeArmor applies it: ..." or "KubeArmor does
	// not apply it: ...".
	KubeArmor        string `json:"kubearmor,omitempty"`
	KubeArmorDiffers string `json:"kubearmor_differs,omitempty"`
}

// PolicyRule is one effective rule: a single match with the action, severity, tags and message
// it has once KubeArmor's inheritance (rule, block, policy) is resolved.
type PolicyRule struct {
	Policy string `json:"policy"`
	// Type is the policy block: process, file, network, capabilities, syscalls, device, preset,
	// ingress or egress.
	Type string `json:"type"`
	// Match says what Value is: path, execname, dir, pattern, protocol, capability, ...
	Match       string       `json:"match"`
	Value       string       `json:"value"`
	Syscalls    []string     `json:"syscalls,omitempty"`
	AllowedArgs []string     `json:"allowed_args,omitempty"`
	FromSource  []RuleSource `json:"from_source,omitempty"`
	OwnerOnly   bool         `json:"owner_only,omitempty"`
	ReadOnly    bool         `json:"read_only,omitempty"`
	Recursive   bool         `json:"recursive,omitempty"`
	Action      string       `json:"action"`
	Severity    int          `json:"severity,omitempty"`
	Tags        []string     `json:"tags,omitempty"`
	Message     string       `json:"message,omitempty"`
}

// RuleSource restricts a rule to processes started from a path or directory.
type RuleSource struct {
	Path      string `json:"path,omitempty"`
	Dir       string `json:"dir,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

// PolicyChange is a stream entry (TypePolicyChange): a source's new content was put in force, or
// a check of it failed and its last good content stays in force.
type PolicyChange struct {
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	Kind     string    `json:"kind"`
	Location string    `json:"location"`
	// Digest is the source's content in force after the change.
	Digest string `json:"digest,omitempty"`
	// Generation is the policy set in force after the change.
	Generation uint64 `json:"generation"`
	// Policies is the number of the source's policy documents in force; Total the number of
	// policies of the whole set.
	Policies  int  `json:"policies"`
	Total     int  `json:"total"`
	FromCache bool `json:"from_cache,omitempty"`
	// Error is set when a check failed. A failure is reported once, not again while it repeats.
	Error string `json:"error,omitempty"`
}
