package kubearmor

import (
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/agentapi"
)

func TestContainerVerdictIsKubeArmorsNonKubernetesMatching(t *testing.T) {
	withExpr := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: expr, namespace: shop}
spec:
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: label, operator: NotIn, values: [tier=front]}]
  file: {matchPaths: [{path: /etc/shadow}]}`
	noLabels := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata: {name: none}
spec:
  selector: {matchExpressions: [{key: label, operator: In, values: [app=web]}]}
  file: {matchPaths: [{path: /etc/shadow}]}`
	ps := policies(t,
		containerPolicy("by-name", "kubearmor.io/container.name: web", "/etc/shadow"),
		containerPolicy("name-and-label", "kubearmor.io/container.name: web, app: web", "/etc/shadow"),
		containerPolicy("by-label", "app: web", "/etc/shadow"),
		withExpr, noLabels,
		containerPolicy("bad-regex", `kubearmor.io/container.name: "web("`, "/etc/shadow"),
	)
	web1 := &agentapi.Container{ID: "c1", Name: "web1", Labels: map[string]string{"app": "web", "tier": "front"}}
	comma := &agentapi.Container{ID: "c2", Name: "a,b"}
	annotated := &agentapi.Container{ID: "c3", Name: "db", Annotations: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		policy  int
		c       *agentapi.Container
		applies bool
		refused bool
		why     string
	}{
		{0, web1, true, false, "unanchored"},
		{0, comma, true, false, "no name label"},
		{0, annotated, false, false, "does not match"},
		{1, web1, false, true, "beside other labels"},
		{2, web1, true, false, "every matchLabels entry"},
		{2, annotated, false, false, "app=web is not among the labels"},
		{3, web1, true, false, "ignores matchExpressions"},
		{4, web1, false, true, "without matchLabels"},
		{5, web1, false, true, "POSIX"},
	} {
		v := ContainerVerdict(ps[tc.policy].Spec, tc.c)
		if v.Applies != tc.applies || v.Refused != tc.refused || !strings.Contains(v.Why, tc.why) {
			t.Errorf("%s on %s: %+v, want applies=%v refused=%v why ~ %q", ps[tc.policy].Name, tc.c.Name, v, tc.applies, tc.refused, tc.why)
		}
	}
}

func TestNodeVerdictKnowsOnlyTheHostName(t *testing.T) {
	host := func(name, labels string) string {
		return `apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata: {name: ` + name + `}
spec:
  nodeSelector: {matchLabels: {` + labels + `}}
  file: {matchPaths: [{path: /etc/hosts}]}`
	}
	ps := policies(t, host("any", `kubearmor.io/hostname: "*"`), host("named", "kubearmor.io/hostname: node-a"),
		host("glob", `kubearmor.io/hostnamereg: "node-*"`), host("zone", "zone: z1"), host("k8s", "kubernetes.io/hostname: node-a"),
		host("other", "kubearmor.io/hostname: node-b"))
	want := map[string]bool{"any": true, "named": true, "glob": true, "zone": false, "k8s": false, "other": false}
	for _, p := range ps {
		if v := NodeVerdict(p.Spec, "node-a"); v.Applies != want[p.Name] {
			t.Errorf("%s on node-a: %+v", p.Name, v)
		}
	}
}
