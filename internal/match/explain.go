package match

import (
	"fmt"
	"strings"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Verdict says whether one policy applies, and why not.
type Verdict struct {
	// Policy is the ID of the policy (see Policy.ID).
	Policy    string `json:"policy"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	File      string `json:"file,omitempty"`
	// Selects describes what the policy selects, e.g. `namespace "default", app=web`.
	Selects string `json:"selects"`
	Applies bool   `json:"applies"`
	// Reasons are every condition of the policy that failed, when it does not apply.
	Reasons []string `json:"reasons,omitempty"`
}

// Explanation is the verdict of every policy of a Set on one container (or on the node), and
// the effective rules of those that apply.
type Explanation struct {
	Verdicts []Verdict `json:"policies"`
	// Rules are the effective rules of the applying policies, in the set's order.
	Rules []Rule `json:"rules"`
}

// Applying returns the IDs of the policies that apply.
func (e Explanation) Applying() []string {
	var ids []string
	for _, v := range e.Verdicts {
		if v.Applies {
			ids = append(ids, v.Policy)
		}
	}
	return ids
}

// Explain gives the verdict of every policy in the set on the container, in the set's order.
// It agrees with Match, which is what karmord acts on.
func (s *Set) Explain(c *agentapi.Container) Explanation {
	t := newTarget(c)
	return s.explain(func(p *Policy, why *reasons) bool { return p.sel.matchContainer(&t, why) })
}

// ExplainNode gives the verdict of every policy in the set on the node. It agrees with MatchNode.
func (s *Set) ExplainNode(n Node) Explanation {
	return s.explain(func(p *Policy, why *reasons) bool { return p.sel.matchNode(&n, why) })
}

func (s *Set) explain(applies func(*Policy, *reasons) bool) Explanation {
	e := Explanation{Verdicts: make([]Verdict, 0, len(s.policies)), Rules: []Rule{}}
	for _, p := range s.policies {
		var why reasons
		v := Verdict{
			Policy:    p.ID(),
			Kind:      p.Kind,
			Name:      p.Name,
			Namespace: p.Namespace,
			File:      p.File,
			Selects:   p.sel.String(),
			Applies:   applies(p, &why),
			Reasons:   why.list,
		}
		if v.Applies {
			e.Rules = append(e.Rules, p.Rules...)
		}
		e.Verdicts = append(e.Verdicts, v)
	}
	return e
}

// String describes what the selector selects, for people.
func (s *selector) String() string {
	var parts []string
	switch s.scope {
	case ScopeNode:
		if len(s.nodeLabels) == 0 {
			return "no node (empty nodeSelector)"
		}
		for _, l := range s.nodeLabels {
			parts = append(parts, "node "+l.String())
		}
		return strings.Join(parts, ", ")
	case ScopeNamespace:
		parts = append(parts, fmt.Sprintf("namespace %q", s.namespace))
	case ScopeCluster:
		switch {
		case s.nsInSet:
			parts = append(parts, fmt.Sprintf("namespaces In %v", s.nsIn))
		default:
			parts = append(parts, "all namespaces")
		}
		if len(s.nsNotIn) > 0 {
			parts = append(parts, fmt.Sprintf("namespaces NotIn %v", s.nsNotIn))
		}
	case ScopeLabels:
		parts = append(parts, "all namespaces")
	}
	for _, l := range s.labels {
		parts = append(parts, l.String())
	}
	if s.containerNames != nil {
		parts = append(parts, fmt.Sprintf("container name in [%s]", strings.Join(s.containerNames, ", ")))
	}
	if s.labelInSet {
		parts = append(parts, fmt.Sprintf("labels In %v", s.labelIn))
	}
	if len(s.labelNotIn) > 0 {
		parts = append(parts, fmt.Sprintf("labels NotIn %v", s.labelNotIn))
	}
	return strings.Join(parts, ", ")
}
