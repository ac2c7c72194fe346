package policy

// APIVersion is the only apiVersion of KubeArmor policies.
const APIVersion = "security.kubearmor.com/v1"

// The kinds of KubeArmor policies.
const (
	KindPolicy        = "KubeArmorPolicy"        // containers selected by labels in one namespace
	KindHostPolicy    = "KubeArmorHostPolicy"    // nodes selected by nodeSelector
	KindClusterPolicy = "KubeArmorClusterPolicy" // containers selected by namespace and labels, cluster-wide
	KindNetworkPolicy = "KubeArmorNetworkPolicy" // ingress/egress rules for containers or nodes
)

// Kinds lists every policy kind, in a stable order.
var Kinds = []string{KindPolicy, KindHostPolicy, KindClusterPolicy, KindNetworkPolicy}

// IsKind reports whether kind is one of the KubeArmor policy kinds.
func IsKind(kind string) bool {
	for _, k := range Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Namespaced reports whether policies of kind live in a namespace. Only KubeArmorPolicy does; the
// other kinds are cluster-scoped, and the API server ignores their metadata.namespace.
func Namespaced(kind string) bool { return kind == KindPolicy }

// Action is what KubeArmor does when a rule matches: Allow, Audit or Block.
// An empty Action means the rule inherits the action of the enclosing block or policy.
type Action string

// The actions the CRD allows.
const (
	ActionAllow Action = "Allow"
	ActionAudit Action = "Audit"
	ActionBlock Action = "Block"
)

// Policy is one decoded KubeArmor policy document of any kind. Fields that a kind does not
// have (for example Selector in a KubeArmorHostPolicy) stay empty: the validator refuses them.
type Policy struct {
	APIVersion string     `yaml:"apiVersion" json:"apiVersion"`
	Kind       string     `yaml:"kind" json:"kind"`
	Metadata   ObjectMeta `yaml:"metadata" json:"metadata"`
	Spec       Spec       `yaml:"spec" json:"spec"`
}

// ObjectMeta holds the Kubernetes object metadata that matters to karmor.
// Other ObjectMeta fields (uid, ownerReferences, managedFields, ...) are accepted by the
// validator, as the API server accepts them, but not kept.
type ObjectMeta struct {
	Name         string            `yaml:"name,omitempty" json:"name,omitempty"`
	GenerateName string            `yaml:"generateName,omitempty" json:"generateName,omitempty"`
	Namespace    string            `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Labels       map[string]string `yaml:"labels,omitempty" json:"labels,omitempty"`
	Annotations  map[string]string `yaml:"annotations,omitempty" json:"annotations,omitempty"`
}

// Spec is the union of the specs of the four kinds.
type Spec struct {
	// Selector chooses containers (KubeArmorPolicy, KubeArmorClusterPolicy, KubeArmorNetworkPolicy).
	Selector *Selector `yaml:"selector,omitempty" json:"selector,omitempty"`
	// NodeSelector chooses nodes (KubeArmorHostPolicy, where it is required, and KubeArmorNetworkPolicy).
	NodeSelector *NodeSelector `yaml:"nodeSelector,omitempty" json:"nodeSelector,omitempty"`

	Process      *ProcessRules    `yaml:"process,omitempty" json:"process,omitempty"`
	File         *FileRules       `yaml:"file,omitempty" json:"file,omitempty"`
	Network      *NetworkRules    `yaml:"network,omitempty" json:"network,omitempty"`
	Capabilities *CapabilityRules `yaml:"capabilities,omitempty" json:"capabilities,omitempty"`
	Syscalls     *SyscallRules    `yaml:"syscalls,omitempty" json:"syscalls,omitempty"`
	Device       *DeviceRules     `yaml:"device,omitempty" json:"device,omitempty"`   // KubeArmorHostPolicy only
	Presets      []Preset         `yaml:"presets,omitempty" json:"presets,omitempty"` // not in KubeArmorHostPolicy
	AppArmor     string           `yaml:"apparmor,omitempty" json:"apparmor,omitempty"`

	// KubeArmorNetworkPolicy only.
	Level   string        `yaml:"level,omitempty" json:"level,omitempty"`
	Ingress []IngressRule `yaml:"ingress,omitempty" json:"ingress,omitempty"`
	Egress  []EgressRule  `yaml:"egress,omitempty" json:"egress,omitempty"`

	RuleMeta `yaml:",inline"`
}

// RuleMeta is the severity, tags, message and action that a policy, a rule block or a single
// rule may carry; the innermost one that is set applies.
type RuleMeta struct {
	Severity int      `yaml:"severity,omitempty" json:"severity,omitempty"` // 1..10, 0 when unset
	Tags     []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Message  string   `yaml:"message,omitempty" json:"message,omitempty"`
	Action   Action   `yaml:"action,omitempty" json:"action,omitempty"`
}

// Selector chooses containers by labels (and, in a KubeArmorClusterPolicy, namespaces).
type Selector struct {
	MatchLabels      map[string]string `yaml:"matchLabels,omitempty" json:"matchLabels,omitempty"`
	MatchExpressions []MatchExpression `yaml:"matchExpressions,omitempty" json:"matchExpressions,omitempty"`
}

// MatchExpression is one selector expression. Key is "label" (or "namespace" in a
// KubeArmorClusterPolicy), Operator is In or NotIn; Values are "key=value" labels or namespace names.
type MatchExpression struct {
	Key      string   `yaml:"key,omitempty" json:"key,omitempty"`
	Operator string   `yaml:"operator,omitempty" json:"operator,omitempty"`
	Values   []string `yaml:"values,omitempty" json:"values,omitempty"`
}

// NodeSelector chooses nodes by labels.
type NodeSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels,omitempty" json:"matchLabels,omitempty"`
}

// Source restricts a rule to processes started from a path (or, for syscalls, a directory).
type Source struct {
	Path      string `yaml:"path,omitempty" json:"path,omitempty"`
	Dir       string `yaml:"dir,omitempty" json:"dir,omitempty"`             // syscalls only
	Recursive bool   `yaml:"recursive,omitempty" json:"recursive,omitempty"` // syscalls only
}

// ProcessRules are the process execution rules.
type ProcessRules struct {
	MatchPaths       []ProcessPathRule `yaml:"matchPaths,omitempty" json:"matchPaths,omitempty"`
	MatchDirectories []DirectoryRule   `yaml:"matchDirectories,omitempty" json:"matchDirectories,omitempty"`
	MatchPatterns    []PatternRule     `yaml:"matchPatterns,omitempty" json:"matchPatterns,omitempty"`
	RuleMeta         `yaml:",inline"`
}

// ProcessPathRule matches one executable by path or by name.
type ProcessPathRule struct {
	Path        string   `yaml:"path,omitempty" json:"path,omitempty"`
	ExecName    string   `yaml:"execname,omitempty" json:"execname,omitempty"`
	AllowedArgs []string `yaml:"allowedArgs,omitempty" json:"allowedArgs,omitempty"`
	OwnerOnly   bool     `yaml:"ownerOnly,omitempty" json:"ownerOnly,omitempty"`
	PTS         bool     `yaml:"pts,omitempty" json:"pts,omitempty"`
	FromSource  []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta    `yaml:",inline"`
}

// FileRules are the file access rules.
type FileRules struct {
	MatchPaths       []FilePathRule  `yaml:"matchPaths,omitempty" json:"matchPaths,omitempty"`
	MatchDirectories []DirectoryRule `yaml:"matchDirectories,omitempty" json:"matchDirectories,omitempty"`
	MatchPatterns    []PatternRule   `yaml:"matchPatterns,omitempty" json:"matchPatterns,omitempty"`
	RuleMeta         `yaml:",inline"`
}

// FilePathRule matches one file.
type FilePathRule struct {
	Path       string   `yaml:"path,omitempty" json:"path,omitempty"`
	ReadOnly   bool     `yaml:"readOnly,omitempty" json:"readOnly,omitempty"`
	OwnerOnly  bool     `yaml:"ownerOnly,omitempty" json:"ownerOnly,omitempty"`
	PTS        bool     `yaml:"pts,omitempty" json:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta   `yaml:",inline"`
}

// DirectoryRule matches a directory (ending in "/"), optionally with everything below it.
// ReadOnly is meaningful for file rules only; the validator refuses it in process rules.
type DirectoryRule struct {
	Dir        string   `yaml:"dir,omitempty" json:"dir,omitempty"`
	Recursive  bool     `yaml:"recursive,omitempty" json:"recursive,omitempty"`
	ReadOnly   bool     `yaml:"readOnly,omitempty" json:"readOnly,omitempty"`
	OwnerOnly  bool     `yaml:"ownerOnly,omitempty" json:"ownerOnly,omitempty"`
	PTS        bool     `yaml:"pts,omitempty" json:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta   `yaml:",inline"`
}

// PatternRule matches paths by a glob-like pattern.
// ReadOnly is meaningful for file rules only; the validator refuses it in process rules.
type PatternRule struct {
	Pattern   string `yaml:"pattern,omitempty" json:"pattern,omitempty"`
	ReadOnly  bool   `yaml:"readOnly,omitempty" json:"readOnly,omitempty"`
	OwnerOnly bool   `yaml:"ownerOnly,omitempty" json:"ownerOnly,omitempty"`
	RuleMeta  `yaml:",inline"`
}

// NetworkRules are the socket protocol and DNS rules.
type NetworkRules struct {
	MatchProtocols  []ProtocolRule `yaml:"matchProtocols,omitempty" json:"matchProtocols,omitempty"`
	MatchDNSQueries []DNSRule      `yaml:"matchDNSQueries,omitempty" json:"matchDNSQueries,omitempty"`
	RuleMeta        `yaml:",inline"`
}

// ProtocolRule matches sockets of one protocol (tcp, udp, icmp, raw, ...).
type ProtocolRule struct {
	Protocol   string   `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	PTS        bool     `yaml:"pts,omitempty" json:"pts,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta   `yaml:",inline"`
}

// DNSRule matches DNS queries for a domain.
type DNSRule struct {
	Domain     string   `yaml:"domain,omitempty" json:"domain,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta   `yaml:",inline"`
}

// CapabilityRules are the Linux capability rules.
type CapabilityRules struct {
	MatchCapabilities []CapabilityRule `yaml:"matchCapabilities,omitempty" json:"matchCapabilities,omitempty"`
	RuleMeta          `yaml:",inline"`
}

// CapabilityRule matches one capability, named without the CAP_ prefix in lower case (net_raw).
type CapabilityRule struct {
	Capability string   `yaml:"capability,omitempty" json:"capability,omitempty"`
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
	RuleMeta   `yaml:",inline"`
}

// SyscallRules are the system call monitoring rules. They carry no action: syscalls are audited.
type SyscallRules struct {
	MatchSyscalls []SyscallRule `yaml:"matchSyscalls,omitempty" json:"matchSyscalls,omitempty"`
	MatchPaths    []SyscallRule `yaml:"matchPaths,omitempty" json:"matchPaths,omitempty"`
	Severity      int           `yaml:"severity,omitempty" json:"severity,omitempty"`
	Tags          []string      `yaml:"tags,omitempty" json:"tags,omitempty"`
	Message       string        `yaml:"message,omitempty" json:"message,omitempty"`
}

// SyscallRule matches system calls, optionally on a path (matchPaths) and from sources.
type SyscallRule struct {
	Syscalls   []string `yaml:"syscall,omitempty" json:"syscall,omitempty"`
	Path       string   `yaml:"path,omitempty" json:"path,omitempty"`           // matchPaths only
	Recursive  bool     `yaml:"recursive,omitempty" json:"recursive,omitempty"` // matchPaths only
	FromSource []Source `yaml:"fromSource,omitempty" json:"fromSource,omitempty"`
}

// DeviceRules are the device rules of a KubeArmorHostPolicy.
type DeviceRules struct {
	MatchDevice []DeviceRule `yaml:"matchDevice,omitempty" json:"matchDevice,omitempty"`
	RuleMeta    `yaml:",inline"`
}

// DeviceRule matches a device by class (and USB level, subclass, protocol).
type DeviceRule struct {
	Class    string `yaml:"class,omitempty" json:"class,omitempty"`
	Level    *int32 `yaml:"level,omitempty" json:"level,omitempty"`
	SubClass *int32 `yaml:"subClass,omitempty" json:"subClass,omitempty"`
	Protocol *int32 `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	RuleMeta `yaml:",inline"`
}

// Preset enables one of KubeArmor's built-in protections by name.
type Preset struct {
	Name   string `yaml:"name,omitempty" json:"name,omitempty"`
	Action Action `yaml:"action,omitempty" json:"action,omitempty"`
}

// IngressRule is an ingress rule of a KubeArmorNetworkPolicy.
type IngressRule struct {
	From    []Peer `yaml:"from,omitempty" json:"from,omitempty"`
	NetRule `yaml:",inline"`
}

// EgressRule is an egress rule of a KubeArmorNetworkPolicy.
type EgressRule struct {
	To      []Peer `yaml:"to,omitempty" json:"to,omitempty"`
	NetRule `yaml:",inline"`
}

// NetRule holds what ingress and egress rules share.
type NetRule struct {
	Ports    []Port   `yaml:"ports,omitempty" json:"ports,omitempty"`
	Iface    []string `yaml:"iface,omitempty" json:"iface,omitempty"`
	Limit    string   `yaml:"limit,omitempty" json:"limit,omitempty"`       // bandwidth, e.g. 10MB
	Duration string   `yaml:"duration,omitempty" json:"duration,omitempty"` // period the limit applies to
	Severity int      `yaml:"severity,omitempty" json:"severity,omitempty"` // any integer: the CRD sets no bounds here
	Tags     []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	Message  string   `yaml:"message,omitempty" json:"message,omitempty"`
	Action   Action   `yaml:"action,omitempty" json:"action,omitempty"`
}

// Peer is a network peer, an IP block.
type Peer struct {
	IPBlock IPBlock `yaml:"ipBlock" json:"ipBlock"`
}

// IPBlock is a CIDR.
type IPBlock struct {
	CIDR string `yaml:"cidr" json:"cidr"`
}

// Port is a port or port range with an optional protocol.
type Port struct {
	Port     string `yaml:"port,omitempty" json:"port,omitempty"`
	EndPort  int32  `yaml:"endPort,omitempty" json:"endPort,omitempty"`
	Protocol string `yaml:"protocol,omitempty" json:"protocol,omitempty"`
}
