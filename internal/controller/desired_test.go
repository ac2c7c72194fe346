package controller

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/karmor/karmor/internal/policysource"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

func contentOf(t *testing.T, location string, files ...string) *policysource.Content {
	t.Helper()
	c := &policysource.Content{Location: location, Files: map[string][]byte{}}
	for i := 0; i+1 < len(files); i += 2 {
		c.Files[files[i]] = []byte(files[i+1])
		docs := policy.ParseBytes(location+"/"+files[i], []byte(files[i+1]), policy.Options{})
		if err := policy.FirstError(docs); err != nil {
			t.Fatal(err)
		}
		c.Documents = append(c.Documents, docs...)
	}
	return c
}

func testSource(ns, name, target string) *source {
	u := &unstructured.Unstructured{}
	u.SetNamespace(ns)
	u.SetName(name)
	return &source{obj: u, spec: Spec{TargetNamespace: target}}
}

// TestDesiredObjects: namespaces by the rules, our labels and annotations over the document's,
// server-managed metadata dropped, fields the typed model does not know kept, and a hash that
// ignores the digest.
func TestDesiredObjects(t *testing.T) {
	exported := `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: exported
  namespace: prod
  uid: 0c1f
  resourceVersion: "42"
  labels: {team: a}
  annotations: {note: kept, karmor.io/content-hash: forged}
spec:
  selector:
    matchLabels: {app: web}
  process:
    matchPaths:
    - path: /bin/sh
  action: Block
`
	files := []string{"a.yaml", "# leading comment\n---\n" + testutil.BlockShellPolicy("web", "", "web") + "---\n" + exported,
		"c.yaml", clusterPolicy("csp", "web")}
	src := testSource("team", "src", "")
	got, err := desiredObjects(contentOf(t, "r/p@sha256:1", files...), src)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, d := range got {
		names = append(names, d.ref.String())
	}
	if strings.Join(names, " ") != "KubeArmorClusterPolicy/csp KubeArmorPolicy/prod/exported KubeArmorPolicy/team/web" {
		t.Fatalf("objects: %v", names)
	}
	exp := got[1].obj
	if exp.GetUID() != "" || exp.GetResourceVersion() != "" {
		t.Errorf("server-managed metadata kept: %v", exp.Object["metadata"])
	}
	if exp.GetLabels()["team"] != "a" || exp.GetLabels()[LabelSourceName] != "src" || exp.GetAnnotations()["note"] != "kept" ||
		exp.GetAnnotations()[AnnotationContentHash] != got[1].hash || exp.GetAnnotations()[AnnotationAppliedFrom] != "r/p@sha256:1" {
		t.Errorf("metadata: %v", exp.Object["metadata"])
	}
	if _, ok := got[0].obj.Object["metadata"].(map[string]any)["namespace"]; ok {
		t.Error("a cluster-scoped object got a namespace")
	}

	// Another digest, same documents: same hashes. Another target namespace: all namespaced
	// objects move there.
	again, err := desiredObjects(contentOf(t, "r/p@sha256:2", files...), src)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].hash != again[i].hash {
			t.Errorf("%s: hash changed with the digest", got[i].ref)
		}
	}
	moved, err := desiredObjects(contentOf(t, "r/p@sha256:1", files...), testSource("team", "src", "sec"))
	if err != nil {
		t.Fatal(err)
	}
	if moved[1].ref.Namespace != "sec" || moved[2].ref.Namespace != "sec" {
		t.Errorf("targetNamespace not applied: %v %v", moved[1].ref, moved[2].ref)
	}

	// The same object twice is refused, naming both places.
	_, err = desiredObjects(contentOf(t, "r/p@sha256:3", "a.yaml", testutil.BlockShellPolicy("web", "", "web"),
		"b.yaml", testutil.BlockShellPolicy("web", "", "api")), src)
	if err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("duplicate: %v", err)
	}
}

// TestToJSONValueBounded: an alias bomb stops at the node budget instead of eating memory.
func TestToJSONValueBounded(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n" +
		"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n" +
		"g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
	nodes, err := splitYAML([]byte(bomb))
	if err != nil {
		t.Fatal(err)
	}
	budget := maxNodes
	if _, err := toJSONValue(nodes[0], &budget, 0); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("alias bomb: %v", err)
	}
}
