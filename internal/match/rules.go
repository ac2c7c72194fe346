package match

import (
	"fmt"
	"strings"

	"github.com/karmor/karmor/pkg/policy"
)

// Rule types: the policy block a rule comes from.
const (
	TypeProcess      = "process"
	TypeFile         = "file"
	TypeNetwork      = "network"
	TypeCapabilities = "capabilities"
	TypeSyscalls     = "syscalls"
	TypeDevice       = "device"
	TypePreset       = "preset"
	TypeIngress      = "ingress" // KubeArmorNetworkPolicy
	TypeEgress       = "egress"  // KubeArmorNetworkPolicy
)

// Rule is one effective rule of a policy: a single match with the action, severity, tags and
// message it really has once inheritance is resolved. Lists that KubeArmor expands (a protocol
// or capability written "tcp,udp") become one Rule per item, as upstream does.
type Rule struct {
	// Policy is the ID of the policy the rule belongs to (see Policy.ID).
	Policy string `json:"policy"`
	Type   string `json:"type"`
	// Match says what Value is: path, execname, dir, pattern, protocol, domain, capability,
	// syscall (Value empty, see Syscalls), class, preset, or for network policies the peers.
	Match string `json:"match"`
	Value string `json:"value"`
	// Syscalls are the system calls of a syscalls rule.
	Syscalls    []string        `json:"syscalls,omitempty"`
	AllowedArgs []string        `json:"allowedArgs,omitempty"`
	FromSource  []policy.Source `json:"fromSource,omitempty"`
	OwnerOnly   bool            `json:"ownerOnly,omitempty"`
	ReadOnly    bool            `json:"readOnly,omitempty"`
	Recursive   bool            `json:"recursive,omitempty"`
	Action      policy.Action   `json:"action"`
	Severity    int             `json:"severity,omitempty"`
	Tags        []string        `json:"tags,omitempty"`
	Message     string          `json:"message,omitempty"`
}

// inherited is the action, severity, tags and message in force at one level of a policy.
type inherited struct {
	action   policy.Action
	severity int
	tags     []string
	message  string
}

// under returns what a nested level has: its own values where set, else the outer ones.
func (in inherited) under(m policy.RuleMeta) inherited {
	out := in
	if a := normalAction(m.Action); a != "" {
		out.action = a
	}
	if m.Severity != 0 {
		out.severity = m.Severity
	}
	if len(m.Tags) > 0 {
		out.tags = m.Tags
	}
	if m.Message != "" {
		out.message = m.Message
	}
	return out
}

// normalAction spells an action as the CRD does; upstream also accepts lower case.
func normalAction(a policy.Action) policy.Action {
	switch strings.ToLower(string(a)) {
	case "allow":
		return policy.ActionAllow
	case "audit":
		return policy.ActionAudit
	case "block":
		return policy.ActionBlock
	}
	return a
}

// effectiveRules flattens p into its rules, in the order of the policy's blocks.
func effectiveRules(id string, p *policy.Policy) []Rule {
	spec := &p.Spec
	top := inherited{action: policy.ActionBlock}.under(spec.RuleMeta)
	var rules []Rule
	add := func(typ, match, value string, meta inherited, r Rule) {
		r.Policy, r.Type, r.Match, r.Value = id, typ, match, value
		r.Action, r.Severity, r.Tags, r.Message = meta.action, meta.severity, meta.tags, meta.message
		rules = append(rules, r)
	}

	if b := spec.Process; b != nil {
		block := top.under(b.RuleMeta)
		for _, m := range b.MatchPaths {
			match, value := "path", m.Path
			if value == "" {
				match, value = "execname", m.ExecName
			}
			add(TypeProcess, match, value, block.under(m.RuleMeta),
				Rule{AllowedArgs: m.AllowedArgs, FromSource: m.FromSource, OwnerOnly: m.OwnerOnly})
		}
		for _, m := range b.MatchDirectories {
			add(TypeProcess, "dir", m.Dir, block.under(m.RuleMeta),
				Rule{FromSource: m.FromSource, OwnerOnly: m.OwnerOnly, Recursive: m.Recursive})
		}
		for _, m := range b.MatchPatterns {
			add(TypeProcess, "pattern", m.Pattern, block.under(m.RuleMeta), Rule{OwnerOnly: m.OwnerOnly})
		}
	}
	if b := spec.File; b != nil {
		block := top.under(b.RuleMeta)
		for _, m := range b.MatchPaths {
			add(TypeFile, "path", m.Path, block.under(m.RuleMeta),
				Rule{FromSource: m.FromSource, OwnerOnly: m.OwnerOnly, ReadOnly: m.ReadOnly})
		}
		for _, m := range b.MatchDirectories {
			add(TypeFile, "dir", m.Dir, block.under(m.RuleMeta),
				Rule{FromSource: m.FromSource, OwnerOnly: m.OwnerOnly, ReadOnly: m.ReadOnly, Recursive: m.Recursive})
		}
		for _, m := range b.MatchPatterns {
			add(TypeFile, "pattern", m.Pattern, block.under(m.RuleMeta),
				Rule{OwnerOnly: m.OwnerOnly, ReadOnly: m.ReadOnly})
		}
	}
	if b := spec.Network; b != nil {
		block := top.under(b.RuleMeta)
		for _, m := range b.MatchProtocols {
			for _, proto := range commaList(m.Protocol) {
				add(TypeNetwork, "protocol", proto, block.under(m.RuleMeta), Rule{FromSource: m.FromSource})
			}
		}
		for _, m := range b.MatchDNSQueries {
			for _, domain := range commaList(m.Domain) {
				add(TypeNetwork, "domain", domain, block.under(m.RuleMeta), Rule{FromSource: m.FromSource})
			}
		}
	}
	if b := spec.Capabilities; b != nil {
		block := top.under(b.RuleMeta)
		for _, m := range b.MatchCapabilities {
			for _, capability := range commaList(m.Capability) {
				add(TypeCapabilities, "capability", capability, block.under(m.RuleMeta), Rule{FromSource: m.FromSource})
			}
		}
	}
	if b := spec.Syscalls; b != nil {
		// Syscall rules have no action of their own: KubeArmor audits them.
		block := top.under(policy.RuleMeta{Severity: b.Severity, Tags: b.Tags, Message: b.Message})
		block.action = policy.ActionAudit
		for _, m := range b.MatchSyscalls {
			add(TypeSyscalls, "syscall", "", block, Rule{Syscalls: m.Syscalls, FromSource: m.FromSource})
		}
		for _, m := range b.MatchPaths {
			add(TypeSyscalls, "path", m.Path, block,
				Rule{Syscalls: m.Syscalls, FromSource: m.FromSource, Recursive: m.Recursive})
		}
	}
	if b := spec.Device; b != nil {
		block := top.under(b.RuleMeta)
		for _, m := range b.MatchDevice {
			add(TypeDevice, "class", m.Class, block.under(m.RuleMeta), Rule{})
		}
	}
	for _, preset := range spec.Presets {
		add(TypePreset, "preset", preset.Name, top.under(policy.RuleMeta{Action: preset.Action}), Rule{})
	}
	for _, in := range spec.Ingress {
		add(TypeIngress, "from", netRuleValue(peers(in.From), in.NetRule), top.under(netMeta(in.NetRule)), Rule{})
	}
	for _, out := range spec.Egress {
		add(TypeEgress, "to", netRuleValue(peers(out.To), out.NetRule), top.under(netMeta(out.NetRule)), Rule{})
	}
	return rules
}

// commaList splits upstream's comma lists ("tcp,udp"), dropping spaces as upstream does.
func commaList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.ReplaceAll(item, " ", ""); item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return []string{v}
	}
	return out
}

func netMeta(r policy.NetRule) policy.RuleMeta {
	return policy.RuleMeta{Action: r.Action, Severity: r.Severity, Tags: r.Tags, Message: r.Message}
}

func peers(ps []policy.Peer) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.IPBlock.CIDR)
	}
	return out
}

// netRuleValue describes a network policy rule in one line: peers, ports, interfaces, quota.
func netRuleValue(peers []string, r policy.NetRule) string {
	var parts []string
	if len(peers) > 0 {
		parts = append(parts, strings.Join(peers, ","))
	} else {
		parts = append(parts, "any")
	}
	for _, p := range r.Ports {
		port := p.Port
		if p.EndPort != 0 {
			port = fmt.Sprintf("%s-%d", port, p.EndPort)
		}
		if p.Protocol != "" {
			port = strings.ToLower(p.Protocol) + "/" + port
		}
		parts = append(parts, "port "+port)
	}
	if len(r.Iface) > 0 {
		parts = append(parts, "iface "+strings.Join(r.Iface, ","))
	}
	if r.Limit != "" {
		parts = append(parts, "limit "+r.Limit+"/"+r.Duration)
	}
	return strings.Join(parts, " ")
}
