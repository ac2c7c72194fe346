package match

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

const inheritancePolicy = `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: inherit
  namespace: shop
spec:
  severity: 3
  tags: [spec-tag]
  message: spec message
  process:
    severity: 5
    action: Allow
    matchPaths:
    - path: /bin/sh
    - path: /bin/bash
      action: Block
      severity: 9
      tags: [rule-tag]
      message: rule message
      ownerOnly: true
      fromSource:
      - path: /usr/bin/env
    - execname: curl
    matchDirectories:
    - dir: /sbin/
      recursive: true
  file:
    tags: [file-tag]
    matchPaths:
    - path: /etc/shadow
      readOnly: true
    matchPatterns:
    - pattern: /tmp/*.sh
      action: Audit
  network:
    matchProtocols:
    - protocol: "tcp, udp"
  capabilities:
    action: Audit
    matchCapabilities:
    - capability: net_raw
  syscalls:
    severity: 7
    matchSyscalls:
    - syscall: [unlink, rmdir]
    matchPaths:
    - path: /var/log/
      recursive: true
      syscall: [unlink]
`

func TestEffectiveRulesInheritance(t *testing.T) {
	s := mustSet(t, inheritancePolicy)
	rules := s.Policies()[0].Rules
	type want struct {
		typ, match, value string
		action            policy.Action
		severity          int
		tags              []string
		message           string
	}
	wants := []want{
		// The process block's action and severity win over the spec's (no spec action: Block).
		{TypeProcess, "path", "/bin/sh", policy.ActionAllow, 5, []string{"spec-tag"}, "spec message"},
		// The rule's own values win over everything.
		{TypeProcess, "path", "/bin/bash", policy.ActionBlock, 9, []string{"rule-tag"}, "rule message"},
		{TypeProcess, "execname", "curl", policy.ActionAllow, 5, []string{"spec-tag"}, "spec message"},
		{TypeProcess, "dir", "/sbin/", policy.ActionAllow, 5, []string{"spec-tag"}, "spec message"},
		// The file block sets only tags: action falls back to the default Block, severity to the spec's.
		{TypeFile, "path", "/etc/shadow", policy.ActionBlock, 3, []string{"file-tag"}, "spec message"},
		{TypeFile, "pattern", "/tmp/*.sh", policy.ActionAudit, 3, []string{"file-tag"}, "spec message"},
		// "tcp, udp" is two rules, as upstream expands it.
		{TypeNetwork, "protocol", "tcp", policy.ActionBlock, 3, []string{"spec-tag"}, "spec message"},
		{TypeNetwork, "protocol", "udp", policy.ActionBlock, 3, []string{"spec-tag"}, "spec message"},
		{TypeCapabilities, "capability", "net_raw", policy.ActionAudit, 3, []string{"spec-tag"}, "spec message"},
		// Syscalls are audited, whatever the policy's action.
		{TypeSyscalls, "syscall", "", policy.ActionAudit, 7, []string{"spec-tag"}, "spec message"},
		{TypeSyscalls, "path", "/var/log/", policy.ActionAudit, 7, []string{"spec-tag"}, "spec message"},
	}
	if len(rules) != len(wants) {
		t.Fatalf("%d rules, want %d: %+v", len(rules), len(wants), rules)
	}
	for i, w := range wants {
		r := rules[i]
		if r.Type != w.typ || r.Match != w.match || r.Value != w.value || r.Action != w.action ||
			r.Severity != w.severity || !slices.Equal(r.Tags, w.tags) || r.Message != w.message {
			t.Errorf("rule %d = %+v\nwant %+v", i, r, w)
		}
		if r.Policy != "KubeArmorPolicy/shop/inherit" {
			t.Errorf("rule %d policy = %q", i, r.Policy)
		}
	}
	bash := rules[1]
	if !bash.OwnerOnly || len(bash.FromSource) != 1 || bash.FromSource[0].Path != "/usr/bin/env" {
		t.Errorf("bash rule lost its flags: %+v", bash)
	}
	if !rules[3].Recursive || !rules[4].ReadOnly || !rules[10].Recursive {
		t.Errorf("recursive/readOnly lost: %+v %+v %+v", rules[3], rules[4], rules[10])
	}
	if !slices.Equal(rules[9].Syscalls, []string{"unlink", "rmdir"}) {
		t.Errorf("syscalls = %v", rules[9].Syscalls)
	}
}

func TestEffectiveRulesPolicyAction(t *testing.T) {
	s := mustSet(t, `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: host
spec:
  nodeSelector:
    matchLabels:
      kubernetes.io/hostname: n1
  action: Audit
  severity: 2
  device:
    matchDevice:
    - class: MASS-STORAGE
  process:
    matchPaths:
    - path: /usr/bin/apt
      severity: 4
`, netPolicy("quota", "  selector:\n    matchLabels:\n      app: web\n"))
	host := s.Policies()[0].Rules
	if len(host) != 2 {
		t.Fatalf("host rules = %+v", host)
	}
	if r := host[0]; r.Type != TypeProcess || r.Action != policy.ActionAudit || r.Severity != 4 {
		t.Errorf("process rule = %+v", r)
	}
	if r := host[1]; r.Type != TypeDevice || r.Value != "MASS-STORAGE" || r.Action != policy.ActionAudit || r.Severity != 2 {
		t.Errorf("device rule = %+v", r)
	}
	net := s.Policies()[1].Rules
	if len(net) != 1 || net[0].Type != TypeEgress || net[0].Value != "10.0.0.0/8 port tcp/443 limit 10MB/1m" || net[0].Action != policy.ActionBlock {
		t.Errorf("network policy rules = %+v", net)
	}
}

// TestCorpusCompiles builds a Set from every valid policy of the shared corpus: nothing is
// skipped and every policy with rule blocks yields effective rules with an action.
func TestCorpusCompiles(t *testing.T) {
	dir := filepath.Join(testutil.SharedDir(t, "corpus"), "policy-templates")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var docs []policy.Document
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range policy.ParseBytes(e.Name(), data, policy.Options{}) {
			if d.Valid() {
				docs = append(docs, d)
			}
		}
	}
	if len(docs) < 400 {
		t.Fatalf("only %d valid corpus documents", len(docs))
	}
	s := NewSet(docs)
	if s.Len() != len(docs) || s.Skipped() != 0 {
		t.Fatalf("Len=%d Skipped=%d of %d", s.Len(), s.Skipped(), len(docs))
	}
	withRules := 0
	for _, p := range s.Policies() {
		for _, r := range p.Rules {
			if r.Action != policy.ActionAllow && r.Action != policy.ActionAudit && r.Action != policy.ActionBlock {
				t.Errorf("%s: rule with action %q", p.ID(), r.Action)
			}
		}
		if len(p.Rules) > 0 {
			withRules++
		}
	}
	if withRules < len(docs)*9/10 {
		t.Errorf("only %d of %d corpus policies have effective rules", withRules, len(docs))
	}
}
