package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/karmor/karmor/internal/testutil"
)

// TestControllerManifestOnAPIServer: deploy/manifests/karmor-controller.yaml (the CRD, the
// namespace, the controller and its RBAC) is accepted whole by a real kube-apiserver (kubectl
// apply --server-side); the API server's own authorizer then allows karmor-controller's
// ServiceAccount every request of the contract and refuses its neighbours (listing Secrets,
// creating PolicySources, pods, Leases elsewhere); every PolicySource example of
// docs/kubernetes.md passes the CRD's schema (server-side dry run), and one without its ref does
// not; kubectl shows the columns the documentation shows.
func TestControllerManifestOnAPIServer(t *testing.T) {
	kubectl := testutil.RequireCommand(t, "kubectl", "apt-get install kubectl, or any kubectl within a minor or two of 1.34")
	k, err := testutil.StartKubeAPI(testutil.KubeAPIOptions{})
	k = testutil.RequireKubeAPI(t, k, err)
	t.Cleanup(k.Stop)
	kubeconfig := k.WriteKubeconfig(t, "admin")
	apply := func(args ...string) (string, error) {
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		return string(out), err
	}
	manifest := filepath.Join(testutil.RepoRoot(t), "deploy", "manifests", "karmor-controller.yaml")
	if out, err := apply("apply", "--server-side", "-f", manifest); err != nil {
		t.Fatalf("kubectl apply --server-side -f %s: %v\n%s", manifest, err, out)
	}
	if out, err := apply("wait", "--for", "condition=Established", "crd/policysources.karmor.io", "--timeout", "60s"); err != nil {
		t.Fatalf("the CRD never became established: %v\n%s", err, out)
	}

	cs, err := kubernetes.NewForConfig(k.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	sa := "system:serviceaccount:karmor:karmor-controller"
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:karmor", "system:authenticated"}
	allowed := func(ns, group, resource, verb string) bool {
		t.Helper()
		sub := ""
		if r, s, ok := strings.Cut(resource, "/"); ok {
			resource, sub = r, s
		}
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: sa, Groups: groups, ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Group: group, Resource: resource, Subresource: sub, Verb: verb}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		return r.Status.Allowed
	}
	for _, g := range contractRules {
		res, verb, _ := strings.Cut(g, " ")
		group, resource, _ := strings.Cut(res, "/")
		if !allowed("shop", group, resource, verb) {
			t.Errorf("karmor-controller may not %s %s in a namespace; the contract says it may", verb, res)
		}
	}
	for _, g := range contractLeaseRules {
		res, verb, _ := strings.Cut(g, " ")
		group, resource, _ := strings.Cut(res, "/")
		if !allowed("karmor", group, resource, verb) {
			t.Errorf("karmor-controller may not %s %s in karmor", verb, res)
		}
		if allowed("shop", group, resource, verb) {
			t.Errorf("karmor-controller may %s %s outside its namespace", verb, res)
		}
	}
	for _, deny := range []struct{ group, resource, verb string }{
		{"", "secrets", "list"}, {"", "secrets", "watch"}, {"", "secrets", "update"}, {"", "configmaps", "list"},
		{"", "pods", "get"}, {"", "namespaces", "delete"},
		{"karmor.io", "policysources", "create"}, {"karmor.io", "policysources", "delete"},
		{"security.kubearmor.com", "kubearmorpolicies", "deletecollection"},
		{"rbac.authorization.k8s.io", "clusterroles", "escalate"},
	} {
		if allowed("shop", deny.group, deny.resource, deny.verb) {
			t.Errorf("karmor-controller may %s %s/%s: beyond the contract", deny.verb, deny.group, deny.resource)
		}
	}

	// The documentation's PolicySources, against the CRD as the API server holds it.
	examples := docExamples(t)
	if len(examples) < 5 {
		t.Fatalf("%d PolicySource examples in docs/kubernetes.md, want the 5 or more it shows", len(examples))
	}
	if out, err := apply("create", "namespace", "security"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	dir := t.TempDir()
	for i, ex := range append(examples, "apiVersion: karmor.io/v1alpha1\nkind: PolicySource\nmetadata:\n  name: no-ref\n  namespace: security\nspec:\n  interval: 1m\n") {
		f := filepath.Join(dir, "example.yaml")
		if err := os.WriteFile(f, []byte(ex), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := apply("create", "--dry-run=server", "-f", f)
		if i < len(examples) && err != nil {
			t.Errorf("docs/kubernetes.md example refused by the CRD: %v\n%s\n%s", err, out, ex)
		}
		if i == len(examples) && err == nil {
			t.Errorf("a PolicySource without spec.ref was accepted:\n%s", out)
		}
	}

	// kubectl's columns, as docs/kubernetes.md shows them.
	f := filepath.Join(dir, "first.yaml")
	if err := os.WriteFile(f, []byte(examples[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := apply("create", "-f", f); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for args, want := range map[string][]string{
		"get kps -A":    {"NAMESPACE", "NAME", "REF", "DIGEST", "POLICIES", "READY", "VERIFIED", "AGE"},
		"get karmor -A": {"NAMESPACE", "NAME", "REF", "DIGEST", "POLICIES", "READY", "VERIFIED", "AGE"},
	} {
		out, err := apply(strings.Fields(args)...)
		header, _, _ := strings.Cut(out, "\n")
		if err != nil || !slices.Equal(strings.Fields(header), want) {
			t.Errorf("kubectl %s: %v, columns %q, want %q\n%s", args, err, strings.Fields(header), want, out)
		}
	}
}

// docExamples are the YAML blocks of docs/kubernetes.md that are whole PolicySources.
func docExamples(t *testing.T) []string {
	doc, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllSubmatch(doc, -1) {
		if bytes.Contains(m[1], []byte("kind: PolicySource\n")) {
			out = append(out, string(m[1]))
		}
	}
	return out
}
