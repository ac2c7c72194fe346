package kubepods

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/karmor/karmor/internal/testutil"
)

// rbacResources are the objects of the rendered chart that decide what karmord's service account may
// do; they are created in the API server as Helm would.
var rbacResources = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
}

// installChartRBAC renders the Helm chart into namespace ns (release name ns, so cluster-wide names
// never clash between tests), creates its service accounts and RBAC objects, and returns a client
// config carrying a token the API server issued for karmord's service account.
func installChartRBAC(t *testing.T, c *cluster, set ...string) *rest.Config {
	t.Helper()
	helm := testutil.RequireCommand(t, "helm", "go install helm.sh/helm/v3/cmd/helm@v3.22.0 (.ci/install.d/40-deploy.sh)")
	chart := filepath.Join(testutil.RepoRoot(t), "deploy", "helm", "karmor")
	args := []string{"template", c.ns, chart, "--namespace", c.ns}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(helm, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}

	dc, err := dynamic.NewForConfig(kube.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	serviceAccount := ""
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		if s := bytes.TrimSpace(js); len(s) == 0 || string(s) == "null" {
			continue
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(js); err != nil {
			t.Fatalf("rendered chart: %v", err)
		}
		if obj.GetKind() == "DaemonSet" {
			serviceAccount, _, _ = unstructured.NestedString(obj.Object, "spec", "template", "spec", "serviceAccountName")
		}
		gvr, ok := rbacResources[obj.GetKind()]
		if !ok {
			continue
		}
		var client dynamic.ResourceInterface = dc.Resource(gvr)
		if obj.GetKind() == "ServiceAccount" || obj.GetKind() == "Role" || obj.GetKind() == "RoleBinding" {
			client = dc.Resource(gvr).Namespace(obj.GetNamespace())
		}
		if _, err := client.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create the chart's %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	if serviceAccount == "" {
		t.Fatal("the rendered chart has no DaemonSet naming karmord's service account")
	}

	admin, err := kubernetes.NewForConfig(kube.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := admin.CoreV1().ServiceAccounts(c.ns).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a token for service account %s/%s (does the chart create it?): %v", c.ns, serviceAccount, err)
	}
	config := rest.AnonymousClientConfig(kube.AdminConfig())
	config.BearerToken = tr.Status.Token
	return config
}

// The chart with kubePodLabels gives karmord what the pod-label watch needs, and nothing more.
func TestChartRBACForPodLabels(t *testing.T) {
	c := newCluster(t)
	c.createPod("web-1", c.thisNode, map[string]string{"app": "web"})
	config := installChartRBAC(t, c, "kubePodLabels=true")
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}

	// The watch itself, with karmord's own rights.
	w := c.start(client)
	if labels, ok := w.Lookup(c.ns, "web-1"); !ok || labels["app"] != "web" {
		t.Errorf("with the chart's RBAC, Lookup(web-1) = %v, %v; want app=web, true", labels, ok)
	}

	ctx := context.Background()
	refused := map[string]error{}
	_, refused["list secrets"] = client.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	_, refused["get a secret"] = client.CoreV1().Secrets(c.ns).Get(ctx, "any", metav1.GetOptions{})
	_, refused["list configmaps"] = client.CoreV1().ConfigMaps(c.ns).List(ctx, metav1.ListOptions{})
	_, refused["create a pod"] = client.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "intruder"},
		Spec:       corev1.PodSpec{NodeName: c.thisNode, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	refused["delete a pod"] = client.CoreV1().Pods(c.ns).Delete(ctx, "web-1", metav1.DeleteOptions{})
	_, refused["patch a pod"] = client.CoreV1().Pods(c.ns).Patch(ctx, "web-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"evil"}}}`), metav1.PatchOptions{})
	_, refused["exec into a pod"] = client.CoreV1().RESTClient().Post().Namespace(c.ns).Resource("pods").Name("web-1").SubResource("exec").DoRaw(ctx)
	_, refused["list nodes"] = client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	for what, err := range refused {
		if !apierrors.IsForbidden(err) {
			t.Errorf("karmord's service account may %s: want 403 Forbidden, got %v", what, err)
		}
	}
}

// Without kubePodLabels the chart grants karmord nothing.
func TestChartRBACWithoutPodLabels(t *testing.T) {
	c := newCluster(t)
	config := installChartRBAC(t, c)
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CoreV1().Pods(metav1.NamespaceAll).List(context.Background(), metav1.ListOptions{FieldSelector: NodeFieldSelector(c.thisNode)})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("karmord's service account without kubePodLabels listing pods: want 403 Forbidden, got %v", err)
	}
}
