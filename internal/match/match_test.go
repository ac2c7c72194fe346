package match

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/agentapi"
	"github.com/karmor/karmor/pkg/policy"
)

// mustSet parses YAML policy documents with the real strict parser and builds a Set; every
// document must be valid, so a typo in a test fails loudly instead of matching nothing.
func mustSet(t testing.TB, yamls ...string) *Set {
	t.Helper()
	var docs []policy.Document
	for i, y := range yamls {
		d := policy.ParseBytes(fmt.Sprintf("p%d.yaml", i), []byte(y), policy.Options{})
		if err := policy.FirstError(d); err != nil {
			t.Fatalf("test policy %d is invalid: %v\n%s", i, err, y)
		}
		docs = append(docs, d...)
	}
	s := NewSet(docs)
	if s.Len() != len(docs) {
		t.Fatalf("NewSet kept %d of %d documents", s.Len(), len(docs))
	}
	return s
}

// ksp writes a KubeArmorPolicy with a selector block (YAML under spec.selector, indented by
// four spaces, or empty for none).
func ksp(name, namespace, selector string) string {
	ns := ""
	if namespace != "" {
		ns = "\n  namespace: " + namespace
	}
	sel := ""
	if selector != "" {
		sel = "\n  selector:\n" + selector
	}
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s%s
spec:%s
  process:
    matchPaths:
    - path: /bin/sh
  action: Block
`, name, ns, sel)
}

func csp(name, selector string) string {
	sel := ""
	if selector != "" {
		sel = "\n  selector:\n" + selector
	}
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: %s
spec:%s
  file:
    matchDirectories:
    - dir: /etc/
      recursive: true
  action: Audit
`, name, sel)
}

func hsp(name, matchLabels string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: %s
spec:
  nodeSelector:
    matchLabels:%s
  process:
    matchPaths:
    - path: /usr/bin/apt
  action: Block
`, name, matchLabels)
}

func pod(ns string, labels ...string) agentapi.Container {
	c := agentapi.Container{ID: "c-" + ns, Namespace: ns, Pod: "pod", ContainerName: "main", Labels: map[string]string{}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		c.Labels[k] = v
	}
	return c
}

func TestMatchSemantics(t *testing.T) {
	type tc struct {
		name      string
		policy    string
		container agentapi.Container
		applies   bool
		reason    string // a substring of one reason, when the policy does not apply
	}
	podman := func(name string, labels, annotations map[string]string) agentapi.Container {
		return agentapi.Container{ID: "p-" + name, Name: name, Labels: labels, Annotations: annotations}
	}
	named := func(c agentapi.Container, name string) agentapi.Container { c.ContainerName = name; return c }

	cases := []tc{
		// KubeArmorPolicy: namespace and matchLabels.
		{"ksp labels match", ksp("p", "", "    matchLabels:\n      app: web\n"), pod("default", "app=web", "tier=fe"), true, ""},
		{"ksp default namespace only", ksp("p", "", "    matchLabels:\n      app: web\n"), pod("prod", "app=web"), false, `other namespace: the policy is in "default", the container in "prod"`},
		{"ksp own namespace", ksp("p", "prod", "    matchLabels:\n      app: web\n"), pod("prod", "app=web"), true, ""},
		{"ksp label missing", ksp("p", "", "    matchLabels:\n      app: web\n"), pod("default", "tier=fe"), false, "label app missing"},
		{"ksp label differs", ksp("p", "", "    matchLabels:\n      app: web\n"), pod("default", "app=db"), false, `label app: the container has "db", the policy wants "web"`},
		{"ksp all labels needed", ksp("p", "", "    matchLabels:\n      app: web\n      tier: fe\n"), pod("default", "app=web"), false, "label tier missing"},
		{"ksp empty selector selects namespace", ksp("p", "dev", ""), pod("dev"), true, ""},
		{"ksp empty matchLabels selects namespace", ksp("p", "dev", "    matchLabels: {}\n"), pod("dev", "x=y"), true, ""},
		{"ksp empty selector other namespace", ksp("p", "dev", ""), pod("prod"), false, "other namespace"},

		// KubeArmorPolicy: label expressions.
		{"ksp In one of", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: In\n      values: [app=web, app=api]\n"), pod("default", "app=api"), true, ""},
		{"ksp In none", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: In\n      values: [app=web, app=api]\n"), pod("default", "app=db"), false, "none of the labels In [app=web app=api]"},
		{"ksp NotIn absent", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: NotIn\n      values: [env=dev]\n"), pod("default", "env=prod"), true, ""},
		{"ksp NotIn present", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: NotIn\n      values: [env=dev]\n"), pod("default", "env=dev"), false, "label env=dev is NotIn [env=dev]"},
		{"ksp In and NotIn both hold", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: In\n      values: [app=web]\n    - key: label\n      operator: NotIn\n      values: [env=dev]\n"), pod("default", "app=web", "env=dev"), false, "NotIn"},
		{"ksp value without = never present", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: In\n      values: [app]\n"), pod("default", "app=web"), false, "none of the labels In"},
		{"ksp labels and expressions", ksp("p", "", "    matchLabels:\n      app: web\n    matchExpressions:\n    - key: label\n      operator: In\n      values: [env=prod]\n"), pod("default", "app=web", "env=prod"), true, ""},

		// kubearmor.io/container.name.
		{"container name in list", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: \"[nginx, sidecar]\"\n"), named(pod("default"), "sidecar"), true, ""},
		{"container name not in list", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: \"[nginx, sidecar]\"\n"), named(pod("default"), "db"), false, `container name "db" is not in kubearmor.io/container.name [nginx, sidecar]`},
		{"container name without brackets", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: nginx\n"), named(pod("default"), "nginx"), true, ""},
		{"container name with labels", ksp("p", "", "    matchLabels:\n      app: web\n      kubearmor.io/container.name: \"[nginx]\"\n"), named(pod("default", "app=web"), "nginx"), true, ""},
		{"container name is not a label", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: \"[nginx]\"\n"), named(pod("default", "kubearmor.io/container.name=[nginx]"), "db"), false, "container name"},

		// KubeArmorClusterPolicy.
		{"csp empty selector any namespace", csp("c", ""), pod("anything"), true, ""},
		{"csp namespace In", csp("c", "    matchExpressions:\n    - key: namespace\n      operator: In\n      values: [a, b]\n"), pod("b"), true, ""},
		{"csp namespace not In", csp("c", "    matchExpressions:\n    - key: namespace\n      operator: In\n      values: [a, b]\n"), pod("c"), false, `namespace "c" is not In [a b]`},
		{"csp namespace NotIn", csp("c", "    matchExpressions:\n    - key: namespace\n      operator: NotIn\n      values: [kube-system]\n"), pod("kube-system"), false, `namespace "kube-system" is NotIn [kube-system]`},
		{"csp namespace NotIn other", csp("c", "    matchExpressions:\n    - key: namespace\n      operator: NotIn\n      values: [kube-system]\n"), pod("default"), true, ""},
		{"csp namespace and label", csp("c", "    matchExpressions:\n    - key: namespace\n      operator: In\n      values: [a]\n    - key: label\n      operator: In\n      values: [app=web]\n"), pod("a", "app=db"), false, "none of the labels In [app=web]"},
		{"csp outside Kubernetes", csp("c", ""), podman("web1", map[string]string{"app": "web"}, nil), false, "a cluster policy selects Kubernetes namespaces"},

		// KubeArmorHostPolicy never selects containers.
		{"host policy not for containers", hsp("h", "\n      kubernetes.io/hostname: node1"), pod("default"), false, "host policy: applies to the node, not to containers"},

		// Containers outside Kubernetes.
		{"podman labels any policy namespace", ksp("p", "prod", "    matchLabels:\n      app: web\n"), podman("web1", map[string]string{"app": "web"}, nil), true, ""},
		{"runc annotations as labels", ksp("p", "", "    matchLabels:\n      app: web\n"), podman("web1", nil, map[string]string{"app": "web"}), true, ""},
		{"labels win over annotations", ksp("p", "", "    matchLabels:\n      app: web\n"), podman("web1", map[string]string{"app": "db"}, map[string]string{"app": "web"}), false, `the container has "db"`},
		{"podman container name", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: web1\n"), podman("web1", nil, nil), true, ""},
		{"podman other container name", ksp("p", "", "    matchLabels:\n      kubearmor.io/container.name: web1\n"), podman("web2", nil, nil), false, `container name "web2"`},
		{"podman empty selector", ksp("p", "", ""), podman("web1", map[string]string{"app": "web"}, nil), false, "a policy without matchLabels selects only Kubernetes pods"},
		{"podman expressions only", ksp("p", "", "    matchExpressions:\n    - key: label\n      operator: In\n      values: [app=web]\n"), podman("web1", map[string]string{"app": "web"}, nil), false, "without matchLabels"},
		{"annotations do not count in Kubernetes", ksp("p", "", "    matchLabels:\n      app: web\n"), func() agentapi.Container {
			c := pod("default")
			c.Annotations = map[string]string{"app": "web"}
			return c
		}(), false, "label app missing"},

		// KubeArmorNetworkPolicy with a selector: any namespace, by labels.
		{"network policy selector any namespace", netPolicy("net", "  selector:\n    matchLabels:\n      app: web\n"), pod("x", "app=web"), true, ""},
		{"network policy selector outside Kubernetes", netPolicy("net", "  selector:\n    matchLabels:\n      app: web\n"), podman("w", map[string]string{"app": "web"}, nil), true, ""},
		{"network policy nodeSelector", netPolicy("net", "  nodeSelector:\n    matchLabels:\n      role: edge\n"), pod("x", "role=edge"), false, "host policy"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustSet(t, c.policy)
			got := s.Match(&c.container)
			if applies := len(got) == 1; applies != c.applies {
				t.Fatalf("Match: applies=%v, want %v (explain: %+v)", applies, c.applies, s.Explain(&c.container).Verdicts)
			}
			e := s.Explain(&c.container)
			v := e.Verdicts[0]
			if v.Applies != c.applies {
				t.Fatalf("Explain disagrees with Match: %+v", v)
			}
			if c.applies {
				if len(v.Reasons) != 0 {
					t.Errorf("applying policy has reasons: %q", v.Reasons)
				}
				if len(e.Rules) == 0 {
					t.Errorf("applying policy contributes no rules")
				}
				return
			}
			if len(e.Rules) != 0 {
				t.Errorf("rules of a policy that does not apply: %+v", e.Rules)
			}
			if !slices.ContainsFunc(v.Reasons, func(r string) bool { return strings.Contains(r, c.reason) }) {
				t.Errorf("reasons %q do not mention %q", v.Reasons, c.reason)
			}
		})
	}
}

func netPolicy(name, selector string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorNetworkPolicy
metadata:
  name: %s
spec:
%s  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/8
    ports:
    - port: "443"
      protocol: TCP
    limit: 10MB
    duration: 1m
  action: Block
`, name, selector)
}

func TestExplainListsEveryFailedCondition(t *testing.T) {
	s := mustSet(t, ksp("p", "prod", "    matchLabels:\n      app: web\n      tier: fe\n    matchExpressions:\n    - key: label\n      operator: NotIn\n      values: [env=dev]\n"))
	c := pod("default", "app=db", "env=dev")
	v := s.Explain(&c).Verdicts[0]
	want := []string{"other namespace", `label app: the container has "db"`, "label tier missing", "label env=dev is NotIn"}
	if len(v.Reasons) != len(want) {
		t.Fatalf("reasons = %q, want %d of them", v.Reasons, len(want))
	}
	for i, w := range want {
		if !strings.Contains(v.Reasons[i], w) {
			t.Errorf("reason %d = %q, want it to mention %q", i, v.Reasons[i], w)
		}
	}
	if v.Policy != "KubeArmorPolicy/prod/p" || v.Namespace != "prod" || v.Selects != `namespace "prod", app=web, tier=fe, labels NotIn [env=dev]` {
		t.Errorf("verdict = %+v", v)
	}
}

func TestMatchNode(t *testing.T) {
	cases := []struct {
		name    string
		labels  string
		node    Node
		applies bool
		reason  string
	}{
		{"plain label", "\n      role: edge", Node{Name: "n1", Labels: map[string]string{"role": "edge"}}, true, ""},
		{"plain label differs", "\n      role: edge", Node{Name: "n1", Labels: map[string]string{"role": "core"}}, false, `node label role: the node has "core", the policy wants "edge"`},
		{"label missing", "\n      role: edge", Node{Name: "n1"}, false, "node label role missing"},
		{"k8s hostname list", "\n      kubernetes.io/hostname: \"n0,n1\"", Node{Labels: map[string]string{"kubernetes.io/hostname": "n1"}}, true, ""},
		{"k8s hostname list other", "\n      kubernetes.io/hostname: \"n0,n1\"", Node{Labels: map[string]string{"kubernetes.io/hostname": "n2"}}, false, `the policy wants one of "n0,n1"`},
		{"hostname star", "\n      kubearmor.io/hostname: \"*\"", Node{Name: "anything"}, true, ""},
		{"hostname from node name", "\n      kubearmor.io/hostname: n7", Node{Name: "n7"}, true, ""},
		{"hostname glob", "\n      kubearmor.io/hostnamereg: node-*", Node{Name: "node-12"}, true, ""},
		{"hostname glob no match", "\n      kubearmor.io/hostnamereg: node-*", Node{Name: "edge-1"}, false, `does not match "node-*"`},
		{"k8s hostname glob", "\n      kubernetes.io/hostnamereg: \"*-worker-*\"", Node{Labels: map[string]string{"kubernetes.io/hostname": "eu-worker-3"}}, true, ""},
		{"empty nodeSelector", " {}", Node{Name: "n1", Labels: map[string]string{"a": "b"}}, false, "policy to no node"},
		{"all labels needed", "\n      role: edge\n      zone: a", Node{Labels: map[string]string{"role": "edge", "zone": "b"}}, false, "node label zone"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := mustSet(t, hsp("h", c.labels))
			if got := len(s.MatchNode(c.node)) == 1; got != c.applies {
				t.Fatalf("MatchNode applies=%v, want %v: %+v", got, c.applies, s.ExplainNode(c.node).Verdicts)
			}
			v := s.ExplainNode(c.node).Verdicts[0]
			if v.Applies != c.applies {
				t.Fatalf("ExplainNode disagrees: %+v", v)
			}
			if !c.applies && !slices.ContainsFunc(v.Reasons, func(r string) bool { return strings.Contains(r, c.reason) }) {
				t.Errorf("reasons %q do not mention %q", v.Reasons, c.reason)
			}
		})
	}

	// Container policies never apply to the node.
	s := mustSet(t, ksp("p", "", ""), csp("c", ""))
	if got := s.MatchNode(Node{Name: "n1"}); len(got) != 0 {
		t.Errorf("container policies matched the node: %v", got)
	}
	if r := s.ExplainNode(Node{Name: "n1"}).Verdicts[1].Reasons; len(r) != 1 || !strings.Contains(r[0], "applies to containers") {
		t.Errorf("reason = %q", r)
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"node-*", "node-1", true},
		{"node-*", "node-", true},
		{"node-*", "xnode-1", false},
		{"*-1", "node-1", true},
		{"*-1", "node-12", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"a*a", "a", false},
		{"*", "", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	} {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestMatchKeepsSetOrderAndIgnoresInvalidDocuments(t *testing.T) {
	docs := policy.ParseBytes("a.yaml", []byte(ksp("z-first", "", "    matchLabels:\n      app: web\n")+"---\n"+
		"apiVersion: security.kubearmor.com/v1\nkind: KubeArmorPolicy\nmetadata:\n  name: broken\nspec:\n  bogus: 1\n"+"---\n"+
		csp("a-second", "")+"---\n"+ksp("m-third", "", "")), policy.Options{})
	s := NewSet(docs)
	if s.Len() != 3 || s.Skipped() != 1 {
		t.Fatalf("Len=%d Skipped=%d, want 3 and 1", s.Len(), s.Skipped())
	}
	c := pod("default", "app=web")
	var names []string
	for _, p := range s.Match(&c) {
		names = append(names, p.Name)
	}
	if want := []string{"z-first", "a-second", "m-third"}; !slices.Equal(names, want) {
		t.Errorf("Match order = %v, want %v", names, want)
	}
	e := s.Explain(&c)
	if got := e.Applying(); len(got) != 3 || got[0] != "KubeArmorPolicy/default/z-first" || got[1] != "KubeArmorClusterPolicy/a-second" {
		t.Errorf("Applying = %v", got)
	}
	if e.Verdicts[0].Namespace != "default" || e.Verdicts[1].Namespace != "" {
		t.Errorf("namespaces = %q, %q", e.Verdicts[0].Namespace, e.Verdicts[1].Namespace)
	}
}
