package policy_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/policy"
)

// doc builds a policy document of kind with the given spec lines (indented under spec:).
func doc(kind, spec string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: security.kubearmor.com/v1\nkind: %s\nmetadata:\n  name: t\n  namespace: default\nspec:\n", kind)
	for _, l := range strings.Split(strings.Trim(spec, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

const (
	ksp = policy.KindPolicy
	hsp = policy.KindHostPolicy
	csp = policy.KindClusterPolicy
	knp = policy.KindNetworkPolicy
)

// Selectors that make each kind valid, to prepend to rule snippets.
const (
	sel     = "selector: {matchLabels: {app: x}}\n"
	nodeSel = "nodeSelector: {matchLabels: {role: x}}\n"
)

// ruleCase is one rule of the CRD: a spec, and the single error it must produce (none when
// path is empty).
type ruleCase struct {
	name    string
	kind    string
	spec    string
	path    string // the error's path; "" means the document is valid
	message string // a piece of the error's message
}

var ruleCases = []ruleCase{
	// actions, at every level
	{"action Allow", ksp, sel + "action: Allow", "", ""},
	{"action Audit", ksp, sel + "action: Audit", "", ""},
	{"action Block", ksp, sel + "action: Block", "", ""},
	{"action lower case", ksp, sel + "action: block", "spec.action", "must be one of Allow, Audit, Block"},
	{"action Deny", ksp, sel + "file: {matchPaths: [{path: /a, action: Deny}]}", "spec.file.matchPaths[0].action", "must be one of"},
	{"block action", ksp, sel + "process: {action: Permit}", "spec.process.action", "must be one of"},
	{"preset action", ksp, sel + "presets: [{name: x, action: Warn}]", "spec.presets[0].action", "must be one of"},
	{"action not a string", ksp, sel + "action: [Block]", "spec.action", "must be a string, got a list"},

	// severity bounds
	{"severity 1", ksp, sel + "severity: 1", "", ""},
	{"severity 10", ksp, sel + "severity: 10", "", ""},
	{"severity 5.0 is 5 in JSON", ksp, sel + "severity: 5.0", "", ""},
	{"severity 0", ksp, sel + "severity: 0", "spec.severity", "between 1 and 10, got 0"},
	{"severity 11", ksp, sel + "severity: 11", "spec.severity", "between 1 and 10, got 11"},
	{"severity -1", ksp, sel + "severity: -1", "spec.severity", "between 1 and 10"},
	{"severity 5.5", ksp, sel + "severity: 5.5", "spec.severity", "whole number"},
	{"severity quoted", ksp, sel + "severity: \"5\"", "spec.severity", "must be an integer, got string"},
	{"severity word", ksp, sel + "severity: high", "spec.severity", "must be an integer"},
	{"severity huge", ksp, sel + "severity: 99999999999999999999", "spec.severity", "whole number within 64 bits"},
	{"rule severity", ksp, sel + "network: {matchProtocols: [{protocol: tcp, severity: 12}]}", "spec.network.matchProtocols[0].severity", "between 1 and 10"},
	{"syscalls severity", ksp, sel + "syscalls: {severity: 0}", "spec.syscalls.severity", "between 1 and 10"},
	{"hex severity", ksp, sel + "severity: 0x0A", "", ""},

	// file paths: ^\/+.*[^\/]$, at most 200 characters
	{"path absolute", ksp, sel + "file: {matchPaths: [{path: /etc/passwd}]}", "", ""},
	{"path double slash", ksp, sel + "file: {matchPaths: [{path: //etc/passwd}]}", "", ""},
	{"path relative", ksp, sel + "file: {matchPaths: [{path: etc/passwd}]}", "spec.file.matchPaths[0].path", "is not an absolute file path"},
	{"path ends with slash", ksp, sel + "file: {matchPaths: [{path: /etc/}]}", "spec.file.matchPaths[0].path", "is not an absolute file path"},
	{"path root", ksp, sel + "file: {matchPaths: [{path: /}]}", "spec.file.matchPaths[0].path", "is not an absolute file path"},
	{"path empty", ksp, sel + "file: {matchPaths: [{path: \"\"}]}", "spec.file.matchPaths[0].path", "is not an absolute file path"},
	{"path 200 characters", ksp, sel + "file: {matchPaths: [{path: /" + strings.Repeat("a", 199) + "}]}", "", ""},
	{"path 201 characters", ksp, sel + "file: {matchPaths: [{path: /" + strings.Repeat("a", 200) + "}]}", "spec.file.matchPaths[0].path", "201 characters long; at most 200"},
	{"path 200 runes", ksp, sel + "file: {matchPaths: [{path: /" + strings.Repeat("é", 199) + "}]}", "", ""},
	{"process path", ksp, sel + "process: {matchPaths: [{path: bin/sh}]}", "spec.process.matchPaths[0].path", "absolute file path"},
	{"fromSource path", ksp, sel + "process: {matchPaths: [{path: /bin/sh, fromSource: [{path: /usr/}]}]}", "spec.process.matchPaths[0].fromSource[0].path", "absolute file path"},
	{"fromSource dir in file rules", ksp, sel + "file: {matchPaths: [{path: /a, fromSource: [{dir: /usr/}]}]}", "spec.file.matchPaths[0].fromSource[0].dir", "unknown field"},

	// directories: ^\/$|^\/.*\/$
	{"dir root", ksp, sel + "file: {matchDirectories: [{dir: /}]}", "", ""},
	{"dir", ksp, sel + "file: {matchDirectories: [{dir: /etc/, recursive: true}]}", "", ""},
	{"dir without slash", ksp, sel + "file: {matchDirectories: [{dir: /etc}]}", "spec.file.matchDirectories[0].dir", "absolute directory path"},
	{"dir relative", ksp, sel + "process: {matchDirectories: [{dir: etc/}]}", "spec.process.matchDirectories[0].dir", "absolute directory path"},

	// process rules
	{"execname", ksp, sel + "process: {matchPaths: [{execname: sh}]}", "", ""},
	{"execname with slash", ksp, sel + "process: {matchPaths: [{execname: /bin/sh}]}", "spec.process.matchPaths[0].execname", "program name without any /"},
	{"allowedArgs 20", ksp, sel + "process: {matchPaths: [{path: /bin/ls, allowedArgs: [" + strings.Repeat("a, ", 19) + "a]}]}", "", ""},
	{"allowedArgs 21", ksp, sel + "process: {matchPaths: [{path: /bin/ls, allowedArgs: [" + strings.Repeat("a, ", 20) + "a]}]}", "spec.process.matchPaths[0].allowedArgs", "21 items; at most 20"},
	{"process readOnly", ksp, sel + "process: {matchDirectories: [{dir: /bin/, readOnly: true}]}", "spec.process.matchDirectories[0].readOnly", "unknown field"},
	{"process pattern readOnly", ksp, sel + "process: {matchPatterns: [{pattern: /x*, readOnly: true}]}", "spec.process.matchPatterns[0].readOnly", "unknown field"},
	{"file path execname", ksp, sel + "file: {matchPaths: [{path: /a, execname: a}]}", "spec.file.matchPaths[0].execname", "unknown field"},

	// booleans, YAML 1.1 as kubectl reads them
	{"bool yes", ksp, sel + "file: {matchPaths: [{path: /a, readOnly: yes, ownerOnly: off}]}", "", ""},
	{"bool quoted", ksp, sel + "file: {matchPaths: [{path: /a, readOnly: \"true\"}]}", "spec.file.matchPaths[0].readOnly", "must be a boolean"},
	{"bool number", ksp, sel + "file: {matchDirectories: [{dir: /a/, recursive: 1}]}", "spec.file.matchDirectories[0].recursive", "must be a boolean"},
	{"pts", ksp, sel + "network: {matchProtocols: [{protocol: tcp, pts: true}]}", "", ""},

	// capabilities: (name|...)$, unanchored at the start as in the CRD
	{"capability", ksp, sel + "capabilities: {matchCapabilities: [{capability: net_raw}]}", "", ""},
	{"capability with cap_ prefix matches the unanchored pattern", ksp, sel + "capabilities: {matchCapabilities: [{capability: cap_net_raw}]}", "", ""},
	{"capability upper case", ksp, sel + "capabilities: {matchCapabilities: [{capability: NET_RAW}]}", "spec.capabilities.matchCapabilities[0].capability", "not a capability name"},
	{"capability unknown", ksp, sel + "capabilities: {matchCapabilities: [{capability: net_rawx}]}", "spec.capabilities.matchCapabilities[0].capability", "not a capability name"},
	{"capability missing", ksp, sel + "capabilities: {matchCapabilities: [{action: Block}]}", "spec.capabilities.matchCapabilities[0].capability", "required field \"capability\" is missing"},

	// protocols
	{"protocol tcp", ksp, sel + "network: {matchProtocols: [{protocol: tcp}, {protocol: UDP}, {protocol: icmpv6}, {protocol: ALL}]}", "", ""},
	{"protocol mixed case", ksp, sel + "network: {matchProtocols: [{protocol: Tcp}]}", "spec.network.matchProtocols[0].protocol", "not a protocol"},
	{"protocol http", ksp, sel + "network: {matchProtocols: [{protocol: http}]}", "spec.network.matchProtocols[0].protocol", "not a protocol"},
	{"protocol missing", ksp, sel + "network: {matchProtocols: [{pts: true}]}", "spec.network.matchProtocols[0].protocol", "required field \"protocol\""},
	{"dns", ksp, sel + "network: {matchDNSQueries: [{domain: example.com}]}", "", ""},
	{"dns missing domain", ksp, sel + "network: {matchDNSQueries: [{action: Block}]}", "spec.network.matchDNSQueries[0].domain", "required field \"domain\""},

	// syscalls
	{"syscalls", ksp, sel + "syscalls: {matchSyscalls: [{syscall: [read, rseq, _sysctl]}]}", "", ""},
	{"syscall unknown", ksp, sel + "syscalls: {matchSyscalls: [{syscall: [openat2]}]}", "spec.syscalls.matchSyscalls[0].syscall[0]", "must be one of the 335 names"},
	{"syscall upper case", ksp, sel + "syscalls: {matchSyscalls: [{syscall: [OPEN]}]}", "spec.syscalls.matchSyscalls[0].syscall[0]", "did you mean open?"},
	{"syscall path file or dir", ksp, sel + "syscalls: {matchPaths: [{path: /etc/, syscall: [open]}, {path: /etc/passwd, syscall: [open]}]}", "", ""},
	{"syscall path relative", ksp, sel + "syscalls: {matchPaths: [{path: etc, syscall: [open]}]}", "spec.syscalls.matchPaths[0].path", "absolute file or directory path"},
	{"syscall fromSource dir", ksp, sel + "syscalls: {matchSyscalls: [{syscall: [open], fromSource: [{dir: anything, recursive: true}]}]}", "", ""},
	{"syscalls have no action", ksp, sel + "syscalls: {action: Block}", "spec.syscalls.action", "unknown field"},

	// patterns and presets
	{"pattern", ksp, sel + "file: {matchPatterns: [{pattern: /**/*.key}]}", "", ""},
	{"pattern missing", ksp, sel + "file: {matchPatterns: [{readOnly: true}]}", "spec.file.matchPatterns[0].pattern", "required field \"pattern\""},
	{"path missing", ksp, sel + "file: {matchPaths: [{readOnly: true}]}", "spec.file.matchPaths[0].path", "required field \"path\""},
	{"dir missing", ksp, sel + "process: {matchDirectories: [{recursive: true}]}", "spec.process.matchDirectories[0].dir", "required field \"dir\""},
	{"process path not required", ksp, sel + "process: {matchPaths: [{ownerOnly: true}]}", "", ""},
	{"presets", ksp, sel + "presets: [{name: filelessExec}]", "", ""},
	{"apparmor", ksp, sel + "apparmor: |\n  deny /etc/** w,", "", ""},

	// selectors
	{"matchLabels", ksp, "selector: {matchLabels: {app.kubernetes.io/name: web, tier: \"1\"}}", "", ""},
	{"label value a number", ksp, "selector: {matchLabels: {tier: 1}}", "spec.selector.matchLabels.tier", "must be a string, got integer 1"},
	{"label value yes", ksp, "selector: {matchLabels: {enabled: yes}}", "spec.selector.matchLabels.enabled", "must be a string, got boolean yes"},
	{"label key with dots", ksp, "selector: {matchLabels: {app.kubernetes.io/name: 1}}", "spec.selector.matchLabels[\"app.kubernetes.io/name\"]", "must be a string"},
	{"label outside matchLabels", ksp, "selector: {app: x}", "spec.selector.app", "labels go under spec.selector.matchLabels"},
	{"matchExpressions", ksp, "selector: {matchExpressions: [{key: label, operator: In, values: [app=x]}, {key: label, operator: NotIn, values: [env=dev]}]}", "", ""},
	{"matchExpressions key namespace in a namespaced policy", ksp, "selector: {matchExpressions: [{key: namespace, operator: In, values: [a]}]}", "spec.selector.matchExpressions[0].key", "must be one of label"},
	{"matchExpressions operator", ksp, "selector: {matchExpressions: [{key: label, operator: Exists}]}", "spec.selector.matchExpressions[0].operator", "must be one of In, NotIn"},
	{"no selector at all is schema-valid", ksp, "action: Block", "", ""},
	{"cluster namespace key", csp, "selector: {matchExpressions: [{key: namespace, operator: In, values: [a]}]}", "", ""},
	{"cluster matchLabels", csp, "selector: {matchLabels: {app: x}}", "spec.selector.matchLabels", "unknown field"},

	// host policies
	{"host", hsp, nodeSel + "process: {matchPaths: [{path: /bin/sh}]}", "", ""},
	{"host without nodeSelector", hsp, "process: {matchPaths: [{path: /bin/sh}]}", "spec.nodeSelector", "required field \"nodeSelector\" is missing"},
	{"host nodeSelector null is missing", hsp, "nodeSelector: ~", "spec.nodeSelector", "required field \"nodeSelector\""},
	{"host empty nodeSelector", hsp, "nodeSelector: {}", "", ""},
	{"host selector", hsp, nodeSel + "selector: {matchLabels: {a: b}}", "spec.selector", "selects nodes with nodeSelector"},
	{"host presets", hsp, nodeSel + "presets: [{name: x}]", "spec.presets", "unknown field"},
	{"host capability needs fromSource", hsp, nodeSel + "capabilities: {matchCapabilities: [{capability: net_raw}]}", "spec.capabilities.matchCapabilities[0].fromSource", "required field \"fromSource\""},
	{"host protocol needs fromSource", hsp, nodeSel + "network: {matchProtocols: [{protocol: tcp}]}", "spec.network.matchProtocols[0].fromSource", "required field \"fromSource\""},
	{"host protocol pts", hsp, nodeSel + "network: {matchProtocols: [{protocol: tcp, pts: true, fromSource: [{path: /a}]}]}", "spec.network.matchProtocols[0].pts", "unknown field"},
	{"host device", hsp, nodeSel + "device: {matchDevice: [{class: USB, level: 2, subClass: -1, protocol: 2147483647}]}", "", ""},
	{"host device level 0", hsp, nodeSel + "device: {matchDevice: [{class: USB, level: 0}]}", "spec.device.matchDevice[0].level", "at least 1"},
	{"host device int32", hsp, nodeSel + "device: {matchDevice: [{class: USB, subClass: 2147483648}]}", "spec.device.matchDevice[0].subClass", "does not fit in 32 bits"},
	{"host device class", hsp, nodeSel + "device: {matchDevice: [{level: 1}]}", "spec.device.matchDevice[0].class", "required field \"class\""},
	{"device in a container policy", ksp, sel + "device: {matchDevice: [{class: USB}]}", "spec.device", "unknown field"},

	// network policies and their cross-field rules
	{"network policy on nodes", knp, nodeSel + "ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}], ports: [{port: \"22\", protocol: tcp}]}]", "", ""},
	{"network policy quota", knp, sel + "egress: [{limit: 1G, duration: 1h}]", "", ""},
	{"network policy both targets", knp, sel + nodeSel, "spec", "cannot target both containers and host nodes"},
	{"network policy empty selector targets nothing", knp, "selector: {}\n" + nodeSel, "", ""},
	{"network policy container ingress without limit", knp, sel + "ingress: [{duration: 1m}]", "spec", "all ingress rules must declare both 'limit' and 'duration'"},
	{"network policy container egress without duration", knp, sel + "egress: [{limit: 5M}]", "spec", "all egress rules must declare both 'limit' and 'duration'"},
	{"network policy limit", knp, nodeSel + "egress: [{limit: 5 MB}]", "spec.egress[0].limit", "not a bandwidth"},
	{"network policy endPort", knp, nodeSel + "ingress: [{ports: [{port: \"1\", endPort: 65536}]}]", "spec.ingress[0].ports[0].endPort", "between 1 and 65535"},
	{"network policy port protocol", knp, nodeSel + "ingress: [{ports: [{port: \"1\", protocol: icmp}]}]", "spec.ingress[0].ports[0].protocol", "must be one of TCP, UDP, SCTP"},
	{"network policy port is a string", knp, nodeSel + "ingress: [{ports: [{port: 22}]}]", "spec.ingress[0].ports[0].port", "must be a string, got integer 22"},
	{"network policy ipBlock", knp, nodeSel + "egress: [{to: [{}]}]", "spec.egress[0].to[0].ipBlock", "required field \"ipBlock\""},
	{"network policy severity unbounded", knp, nodeSel + "egress: [{severity: 100}]", "", ""},
	{"network policy level", knp, nodeSel + "level: node", "spec.level", "must be one of pod, policy"},
	{"network policy has no file rules", knp, nodeSel + "file: {}", "spec.file", "unknown field"},

	// structure, unknown fields, nulls
	{"unknown field", ksp, sel + "file: {matchDirectories: [{dir: /a/, recurive: true}]}", "spec.file.matchDirectories[0].recurive", "did you mean \"recursive\""},
	{"unknown field with null value", ksp, sel + "foo: ~", "spec.foo", "unknown field"},
	{"unknown field in a rule block", ksp, sel + "process: {process: []}", "spec.process.process", "unknown field"},
	{"null fields are absent", ksp, sel + "file: ~\nprocess: {matchPaths: ~, severity: null}\nmessage:\ntags: ~", "", ""},
	{"null label values are pruned", ksp, "selector: {matchLabels: {app: ~}}", "", ""},
	{"null list items are not pruned", ksp, sel + "tags: [a, ~]", "spec.tags[1]", "must be a string, got null"},
	{"tags a string", ksp, sel + "tags: a", "spec.tags", "must be a list"},
	{"tags yaml 1.1 word", ksp, sel + "tags: [no]", "spec.tags[0]", "quote it"},
	{"file a list", ksp, sel + "file: []", "spec.file", "must be an object"},
	{"empty rule block", ksp, sel + "file: {}", "", ""},
	{"explicit string tag", ksp, sel + "tags: [!!str on, !!str 5]", "", ""},
	{"explicit int tag on text", ksp, sel + "severity: !!int five", "spec.severity", "cannot read \"five\" as !!int"},
	{"custom tag keeps a string", ksp, sel + "message: !custom 5", "", ""},
	{"timestamp is a string", ksp, sel + "message: 2024-01-02", "", ""},
	{"key not a string", ksp, sel + "? [a]\n: b", "spec", "mapping key must be a string"},
	{"merge keys", ksp, sel + "file: {matchPaths: [&r {path: /a, severity: 3}, {<<: *r, path: /b}, {<<: [*r, {tags: [x]}], path: /c}]}", "", ""},
	{"merged keys are checked", ksp, sel + "file: {matchPaths: [{<<: {bad: 1}, path: /a}]}", "spec.file.matchPaths[0].bad", "unknown field"},
	{"explicit keys win over merged ones", ksp, sel + "file: {matchPaths: [{<<: {path: a}, path: /a}]}", "", ""},
	{"merge of a scalar", ksp, sel + "file: {<<: 5}", "spec.file", "merge key (<<) takes a mapping"},
}

func TestRules(t *testing.T) {
	for _, c := range ruleCases {
		t.Run(c.name, func(t *testing.T) {
			src := doc(c.kind, c.spec)
			docs := policy.ParseBytes("rule.yaml", []byte(src), policy.Options{})
			if len(docs) != 1 {
				t.Fatalf("%d documents, want 1\n%s", len(docs), src)
			}
			d := docs[0]
			if c.path == "" {
				if !d.Valid() || d.Policy == nil {
					t.Fatalf("want valid, got %v\n%s", d.Errors, src)
				}
				return
			}
			if len(d.Errors) != 1 || d.Errors[0].Path != c.path || !strings.Contains(d.Errors[0].Message, c.message) {
				t.Fatalf("want one error at %s containing %q, got %v\n%s", c.path, c.message, d.Errors, src)
			}
			if d.Errors[0].Line < 6 || d.Errors[0].Column < 1 {
				t.Errorf("error position %d:%d is not inside the spec", d.Errors[0].Line, d.Errors[0].Column)
			}
		})
	}
}
