package match

import (
	"fmt"
	"slices"
	"strings"

	"github.com/karmor/karmor/pkg/agentapi"
	"github.com/karmor/karmor/pkg/policy"
)

// ContainerNameKey is the matchLabels key that selects containers by name rather than by a
// label, as in upstream KubeArmor.
const ContainerNameKey = "kubearmor.io/container.name"

// Node-selector keys with special values, as in upstream KubeArmor.
const (
	HostnameKey       = "kubearmor.io/hostname"     // "a,b" or "*"
	HostnameRegKey    = "kubearmor.io/hostnamereg"  // a glob over kubearmor.io/hostname
	K8sHostnameKey    = "kubernetes.io/hostname"    // "a,b" or "*"
	K8sHostnameRegKey = "kubernetes.io/hostnamereg" // a glob over kubernetes.io/hostname
)

// DefaultNamespace is the namespace of a KubeArmorPolicy whose metadata names none.
const DefaultNamespace = "default"

// Scope says what a policy selects.
type Scope string

const (
	// ScopeNamespace: containers of the policy's namespace (KubeArmorPolicy).
	ScopeNamespace Scope = "namespace"
	// ScopeCluster: containers of any namespace, filtered by namespace expressions (KubeArmorClusterPolicy).
	ScopeCluster Scope = "cluster"
	// ScopeLabels: containers of any namespace, by labels (KubeArmorNetworkPolicy with a selector).
	ScopeLabels Scope = "labels"
	// ScopeNode: the node (KubeArmorHostPolicy, KubeArmorNetworkPolicy with a nodeSelector).
	ScopeNode Scope = "node"
)

type label struct{ key, value string }

func (l label) String() string { return l.key + "=" + l.value }

// selector is a policy's selector compiled for matching. Its fields are never modified after
// compile, so a Set can be shared.
type selector struct {
	scope     Scope
	namespace string // ScopeNamespace only

	labels         []label  // matchLabels without ContainerNameKey, sorted by key
	containerNames []string // from ContainerNameKey; nil selects any name

	// Label expressions: the values of every In (at least one must be present) and every
	// NotIn (none may be present). labelInSet is true when some In had values.
	labelIn    []label
	labelInSet bool
	labelNotIn []label

	// Namespace expressions (ScopeCluster only). nsInSet is true when some In expression exists,
	// even one with no values (which then selects no namespace, as upstream).
	nsIn    []string
	nsInSet bool
	nsNotIn []string

	// nodeLabels is the nodeSelector (ScopeNode only).
	nodeLabels []label
}

// compileSelector compiles p's selector for its kind.
func compileSelector(p *policy.Policy) selector {
	spec := &p.Spec
	switch p.Kind {
	case policy.KindHostPolicy:
		return nodeSelector(spec.NodeSelector)
	case policy.KindNetworkPolicy:
		if spec.Selector == nil || (len(spec.Selector.MatchLabels) == 0 && len(spec.Selector.MatchExpressions) == 0) {
			return nodeSelector(spec.NodeSelector)
		}
		s := selector{scope: ScopeLabels}
		s.addSelector(spec.Selector)
		return s
	case policy.KindClusterPolicy:
		s := selector{scope: ScopeCluster}
		s.addSelector(spec.Selector)
		return s
	default:
		ns := p.Metadata.Namespace
		if ns == "" {
			ns = DefaultNamespace
		}
		s := selector{scope: ScopeNamespace, namespace: ns}
		s.addSelector(spec.Selector)
		return s
	}
}

func nodeSelector(ns *policy.NodeSelector) selector {
	s := selector{scope: ScopeNode}
	if ns != nil {
		s.nodeLabels = sortedLabels(ns.MatchLabels)
	}
	return s
}

func sortedLabels(m map[string]string) []label {
	out := make([]label, 0, len(m))
	for k, v := range m {
		out = append(out, label{k, v})
	}
	slices.SortFunc(out, func(a, b label) int { return strings.Compare(a.key, b.key) })
	return out
}

func (s *selector) addSelector(sel *policy.Selector) {
	if sel == nil {
		return
	}
	for _, l := range sortedLabels(sel.MatchLabels) {
		if l.key == ContainerNameKey {
			s.containerNames = parseContainerNames(l.value)
			continue
		}
		s.labels = append(s.labels, l)
	}
	for _, e := range sel.MatchExpressions {
		switch {
		case e.Key == "label" && e.Operator == "In":
			for _, v := range e.Values {
				s.labelInSet = true
				s.labelIn = appendLabelValue(s.labelIn, v)
			}
		case e.Key == "label" && e.Operator == "NotIn":
			for _, v := range e.Values {
				s.labelNotIn = appendLabelValue(s.labelNotIn, v)
			}
		case e.Key == "namespace" && e.Operator == "In" && s.scope == ScopeCluster:
			s.nsInSet = true
			s.nsIn = append(s.nsIn, e.Values...)
		case e.Key == "namespace" && e.Operator == "NotIn" && s.scope == ScopeCluster:
			s.nsNotIn = append(s.nsNotIn, e.Values...)
		}
	}
}

// appendLabelValue adds a "key=value" expression value. Upstream compares whole "key=value"
// strings, so a value without "=" can never be on a container and is left out.
func appendLabelValue(to []label, v string) []label {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return to
	}
	return append(to, label{k, val})
}

// parseContainerNames reads upstream's "[a, b]" list (brackets optional), without repeats.
func parseContainerNames(v string) []string {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(v, "[")
	v = strings.TrimSuffix(v, "]")
	names := []string{}
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// hasMatchLabels reports whether the selector has matchLabels (a container name counts).
func (s *selector) hasMatchLabels() bool {
	return len(s.labels) > 0 || s.containerNames != nil
}

// target is a container prepared for matching: what a selector looks at.
type target struct {
	kubernetes bool
	namespace  string
	name       string
	c          *agentapi.Container
}

func newTarget(c *agentapi.Container) target {
	t := target{c: c, namespace: c.Namespace, kubernetes: c.Namespace != ""}
	if t.kubernetes {
		t.name = c.ContainerName
		if t.name == "" {
			t.name = c.Name
		}
	} else {
		t.name = c.Name
		if t.name == "" {
			t.name = c.ContainerName
		}
	}
	return t
}

// label returns the value of a label of the container. Outside Kubernetes the container's
// annotations count as labels too (runtimes such as plain runc have only annotations); its
// labels win.
func (t *target) label(key string) (string, bool) {
	if v, ok := t.c.Labels[key]; ok {
		return v, true
	}
	if !t.kubernetes {
		v, ok := t.c.Annotations[key]
		return v, ok
	}
	return "", false
}

func (t *target) has(l label) bool {
	v, ok := t.label(l.key)
	return ok && v == l.value
}

func (t *target) hasAny(ls []label) bool {
	for _, l := range ls {
		if t.has(l) {
			return true
		}
	}
	return false
}

// reasons collects why a policy does not apply. Matching passes a nil *reasons when nobody
// asked why; add does nothing then.
type reasons struct{ list []string }

func (r *reasons) add(format string, a ...any) {
	if r != nil {
		r.list = append(r.list, fmt.Sprintf(format, a...))
	}
}

// matchContainer reports whether the selector selects the container; why, when not nil,
// receives every reason it does not. Without why the first failed condition decides, before
// any reason is formatted, so the hot matching path does not allocate.
func (s *selector) matchContainer(t *target, why *reasons) bool {
	switch s.scope {
	case ScopeNode:
		why.add("host policy: applies to the node, not to containers")
		return false
	case ScopeNamespace:
		if !t.kubernetes && !s.hasMatchLabels() {
			why.add("container outside Kubernetes: a policy without matchLabels selects only Kubernetes pods (upstream refuses it in non-Kubernetes mode)")
			return false
		}
	case ScopeCluster:
		if !t.kubernetes {
			why.add("container outside Kubernetes: a cluster policy selects Kubernetes namespaces")
			return false
		}
	}

	failed := false
	// fail records a failed condition and reports whether to stop looking for more.
	fail := func() (stop bool) {
		failed = true
		return why == nil
	}
	switch {
	case s.scope == ScopeNamespace && t.kubernetes && t.namespace != s.namespace:
		if fail() {
			return false
		}
		why.add("other namespace: the policy is in %q, the container in %q", s.namespace, t.namespace)
	case s.scope == ScopeCluster && s.nsInSet && !slices.Contains(s.nsIn, t.namespace):
		if fail() {
			return false
		}
		why.add("namespace %q is not In %v", t.namespace, s.nsIn)
	case s.scope == ScopeCluster && slices.Contains(s.nsNotIn, t.namespace):
		if fail() {
			return false
		}
		why.add("namespace %q is NotIn %v", t.namespace, s.nsNotIn)
	}

	for _, l := range s.labels {
		v, present := t.label(l.key)
		if present && v == l.value {
			continue
		}
		if fail() {
			return false
		}
		if !present {
			why.add("label %s missing (the policy wants %s)", l.key, l)
		} else {
			why.add("label %s: the container has %q, the policy wants %q", l.key, v, l.value)
		}
	}
	if s.containerNames != nil && !slices.Contains(s.containerNames, t.name) {
		if fail() {
			return false
		}
		why.add("container name %q is not in %s [%s]", t.name, ContainerNameKey, strings.Join(s.containerNames, ", "))
	}
	if s.labelInSet && !t.hasAny(s.labelIn) {
		if fail() {
			return false
		}
		why.add("none of the labels In %v is on the container", s.labelIn)
	}
	for _, l := range s.labelNotIn {
		if t.has(l) {
			if fail() {
				return false
			}
			why.add("label %s is NotIn %v", l, s.labelNotIn)
		}
	}
	return !failed
}

// Node is the node karmord runs on, for host policies.
type Node struct {
	// Name is the host name. It stands for kubearmor.io/hostname when Labels lack that label.
	Name   string
	Labels map[string]string
}

func (n *Node) label(key string) (string, bool) {
	if v, ok := n.Labels[key]; ok {
		return v, true
	}
	if key == HostnameKey && n.Name != "" {
		return n.Name, true
	}
	return "", false
}

// matchNode reports whether the selector selects the node; why, when not nil, receives every
// reason it does not.
func (s *selector) matchNode(n *Node, why *reasons) bool {
	if s.scope != ScopeNode {
		why.add("container policy: applies to containers, not to the node")
		return false
	}
	if len(s.nodeLabels) == 0 {
		why.add("nodeSelector.matchLabels is empty: KubeArmor applies such a policy to no node")
		return false
	}
	ok := true
	for _, l := range s.nodeLabels {
		if matched, reason := nodeLabelMatches(n, l); !matched {
			ok = false
			why.add("%s", reason)
		}
	}
	return ok
}

// nodeLabelMatches checks one nodeSelector entry, with upstream's hostname conventions.
func nodeLabelMatches(n *Node, l label) (bool, string) {
	switch l.key {
	case HostnameRegKey, K8sHostnameRegKey:
		key := strings.TrimSuffix(l.key, "reg")
		v, ok := n.label(key)
		if !ok {
			return false, fmt.Sprintf("node label %s missing (the policy wants it to match %q)", key, l.value)
		}
		if !globMatch(l.value, v) {
			return false, fmt.Sprintf("node label %s=%s does not match %q", key, v, l.value)
		}
		return true, ""
	case HostnameKey, K8sHostnameKey:
		v, ok := n.label(l.key)
		if !ok {
			return false, fmt.Sprintf("node label %s missing (the policy wants %s)", l.key, l)
		}
		for _, want := range strings.Split(l.value, ",") {
			if want = strings.TrimSpace(want); want == "*" || want == v {
				return true, ""
			}
		}
		return false, fmt.Sprintf("node label %s: the node has %q, the policy wants one of %q", l.key, v, l.value)
	}
	v, ok := n.label(l.key)
	if !ok {
		return false, fmt.Sprintf("node label %s missing (the policy wants %s)", l.key, l)
	}
	if v != l.value {
		return false, fmt.Sprintf("node label %s: the node has %q, the policy wants %q", l.key, v, l.value)
	}
	return true, ""
}

// globMatch matches s against pattern, where "*" stands for any run of characters and every
// other character for itself; the whole of s must match.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}
