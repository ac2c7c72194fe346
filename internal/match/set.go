package match

import (
	"slices"

	"github.com/karmor/karmor/pkg/agentapi"
	"github.com/karmor/karmor/pkg/policy"
)

// Policy is one policy of a Set, compiled. Everything in it is read-only.
type Policy struct {
	Kind string
	Name string
	// Namespace is a KubeArmorPolicy's namespace ("default" when its metadata names none);
	// empty for the cluster-scoped kinds.
	Namespace string
	// File and Index locate the document the policy came from (a path, or REF@digest/file).
	File  string
	Index int
	// Spec is the typed policy.
	Spec *policy.Policy
	// Rules are the policy's effective rules, with action and severity resolved.
	Rules []Rule

	sel   selector
	order int // position in the Set, so that results keep the input order
}

// ID names the policy uniquely within its kind: KIND/NAMESPACE/NAME for a KubeArmorPolicy
// (namespace "default" when unset), KIND/NAME for the cluster-scoped kinds.
func (p *Policy) ID() string {
	if p.Namespace != "" {
		return p.Kind + "/" + p.Namespace + "/" + p.Name
	}
	return p.Kind + "/" + p.Name
}

// Scope says what the policy selects: containers of a namespace, of the cluster, by labels,
// or the node.
func (p *Policy) Scope() Scope { return p.sel.scope }

// labelKey indexes policies by one label they require. ns is empty for policies that select
// in every namespace.
type labelKey struct{ ns, key, value string }

// nameKey indexes policies by a container name they require.
type nameKey struct{ ns, name string }

// Set is an immutable, indexed collection of policies. Build it with NewSet; use it from any
// number of goroutines.
type Set struct {
	policies []*Policy
	skipped  int

	// Kubernetes containers: each container policy is in exactly one bucket, chosen by the first
	// condition it has: a label (byLabel), a container name (byName), or neither (byNamespace
	// for namespaced policies, anyNamespace for the others).
	byLabel      map[labelKey][]*Policy
	byName       map[nameKey][]*Policy
	byNamespace  map[string][]*Policy
	anyNamespace []*Policy

	// Containers outside Kubernetes: the namespaced and label-scoped policies that have a
	// label or a name, indexed without their namespace (see the package comment).
	outsideByLabel map[labelKey][]*Policy
	outsideByName  map[string][]*Policy
	// outsideUnindexed holds label-scoped policies with label expressions only: no key to
	// index them by, and rare, so every container outside Kubernetes is checked against them.
	outsideUnindexed []*Policy

	node []*Policy
}

// NewSet compiles the valid policy documents of docs into a Set, in their order. Documents
// that are not valid, or that hold no policy, are left out and counted in Skipped: matching
// acts only on what passed validation.
func NewSet(docs []policy.Document) *Set {
	s := &Set{
		byLabel:        map[labelKey][]*Policy{},
		byName:         map[nameKey][]*Policy{},
		byNamespace:    map[string][]*Policy{},
		outsideByLabel: map[labelKey][]*Policy{},
		outsideByName:  map[string][]*Policy{},
	}
	for i := range docs {
		d := &docs[i]
		if !d.Valid() || d.Policy == nil || !policy.IsKind(d.Policy.Kind) {
			s.skipped++
			continue
		}
		p := &Policy{
			Kind:  d.Policy.Kind,
			Name:  d.Policy.Metadata.Name,
			File:  d.File,
			Index: d.Index,
			Spec:  d.Policy,
			sel:   compileSelector(d.Policy),
			order: len(s.policies),
		}
		if p.sel.scope == ScopeNamespace {
			p.Namespace = p.sel.namespace
		}
		p.Rules = effectiveRules(p.ID(), d.Policy)
		s.policies = append(s.policies, p)
		s.index(p)
	}
	return s
}

func (s *Set) index(p *Policy) {
	sel := &p.sel
	if sel.scope == ScopeNode {
		s.node = append(s.node, p)
		return
	}
	ns := ""
	if sel.scope == ScopeNamespace {
		ns = sel.namespace
	}
	switch {
	case len(sel.labels) > 0:
		l := sel.labels[0]
		s.byLabel[labelKey{ns, l.key, l.value}] = append(s.byLabel[labelKey{ns, l.key, l.value}], p)
	case len(sel.containerNames) > 0:
		for _, name := range sel.containerNames {
			s.byName[nameKey{ns, name}] = append(s.byName[nameKey{ns, name}], p)
		}
	case sel.containerNames != nil:
		// "[]": a name list that names nothing selects no container; keep it only for Explain.
	case sel.scope == ScopeNamespace:
		s.byNamespace[ns] = append(s.byNamespace[ns], p)
	default:
		s.anyNamespace = append(s.anyNamespace, p)
	}

	if sel.scope == ScopeCluster {
		return // never selects containers outside Kubernetes
	}
	switch {
	case len(sel.labels) > 0:
		l := sel.labels[0]
		s.outsideByLabel[labelKey{"", l.key, l.value}] = append(s.outsideByLabel[labelKey{"", l.key, l.value}], p)
	case len(sel.containerNames) > 0:
		for _, name := range sel.containerNames {
			s.outsideByName[name] = append(s.outsideByName[name], p)
		}
	case sel.scope == ScopeLabels:
		s.outsideUnindexed = append(s.outsideUnindexed, p)
	}
}

// Len returns the number of policies in the set.
func (s *Set) Len() int { return len(s.policies) }

// Skipped returns the number of documents NewSet left out because they were not valid policies.
func (s *Set) Skipped() int { return s.skipped }

// Policies returns every policy of the set, in input order. The slice must not be modified.
func (s *Set) Policies() []*Policy { return s.policies }

// Match returns the policies that apply to the container, in the set's order. It never
// returns host policies: see MatchNode.
func (s *Set) Match(c *agentapi.Container) []*Policy {
	t := newTarget(c)
	var out []*Policy
	consider := func(candidates []*Policy) {
		for _, p := range candidates {
			if p.sel.matchContainer(&t, nil) {
				out = append(out, p)
			}
		}
	}
	if t.kubernetes {
		consider(s.byNamespace[t.namespace])
		consider(s.anyNamespace)
		for k, v := range c.Labels {
			consider(s.byLabel[labelKey{t.namespace, k, v}])
			consider(s.byLabel[labelKey{"", k, v}])
		}
		if t.name != "" {
			consider(s.byName[nameKey{t.namespace, t.name}])
			consider(s.byName[nameKey{"", t.name}])
		}
	} else {
		consider(s.outsideUnindexed)
		if t.name != "" {
			consider(s.outsideByName[t.name])
		}
		for k, v := range c.Labels {
			consider(s.outsideByLabel[labelKey{"", k, v}])
		}
		for k, v := range c.Annotations {
			if _, shadowed := c.Labels[k]; !shadowed {
				consider(s.outsideByLabel[labelKey{"", k, v}])
			}
		}
	}
	// A policy sits in one bucket per container name it lists, and a container has one name,
	// so nothing is found twice; only the order needs restoring.
	slices.SortFunc(out, func(a, b *Policy) int { return a.order - b.order })
	return out
}

// MatchNode returns the policies that apply to the node (host policies, and network policies
// with a nodeSelector), in the set's order.
func (s *Set) MatchNode(n Node) []*Policy {
	var out []*Policy
	for _, p := range s.node {
		if p.sel.matchNode(&n, nil) {
			out = append(out, p)
		}
	}
	return out
}
