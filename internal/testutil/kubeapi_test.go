package testutil

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// TestKubeAPI starts a real etcd + kube-apiserver and checks what the other packages' tests rely
// on: the admin may do anything, an extra user without bindings is refused (403), KubeArmor's
// CRDs install and the server's schema accepts a valid policy and rejects an invalid one (422).
func TestKubeAPI(t *testing.T) {
	k, err := StartKubeAPI(KubeAPIOptions{Users: []KubeUser{{Name: "alice", Groups: []string{"team-a"}}}})
	k = RequireKubeAPI(t, k, err)
	t.Cleanup(k.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	admin, err := kubernetes.NewForConfig(k.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := k.NewNamespace(t, "kubeapi")
	if !strings.HasPrefix(ns, "kubeapi-") {
		t.Fatalf("namespace %q lacks the prefix", ns)
	}
	if _, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("admin cannot read the namespace it created: %v", err)
	}
	if other := k.NewNamespace(t, "kubeapi"); other == ns {
		t.Fatalf("NewNamespace returned %q twice", ns)
	}

	alice, err := kubernetes.NewForConfig(k.UserConfig("alice"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("alice (no bindings) listing pods: want 403 Forbidden, got %v", err)
	}
	if !strings.Contains(err.Error(), `User "alice"`) {
		t.Errorf("the server did not authenticate the token as alice: %v", err)
	}

	files := KubeArmorCRDFiles(t)
	if err := k.InstallCRDs(ctx, files...); err != nil {
		t.Fatal(err)
	}
	// A second install updates what is there (every test package installs them anew).
	if err := k.InstallCRDs(ctx, files...); err != nil {
		t.Fatalf("installing the CRDs again: %v", err)
	}

	dc, err := dynamic.NewForConfig(k.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	ksp := dc.Resource(schema.GroupVersionResource{Group: "security.kubearmor.com", Version: "v1", Resource: "kubearmorpolicies"}).Namespace(ns)
	policy := func(name, path string, severity int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "security.kubearmor.com/v1",
			"kind":       "KubeArmorPolicy",
			"metadata":   map[string]any{"name": name},
			"spec": map[string]any{
				"selector": map[string]any{"matchLabels": map[string]any{"app": "web"}},
				"severity": severity,
				"process":  map[string]any{"matchPaths": []any{map[string]any{"path": path}}},
				"action":   "Block",
			},
		}}
	}
	if _, err := ksp.Create(ctx, policy("block-sleep", "/bin/sleep", 5), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a valid KubeArmorPolicy: %v", err)
	}
	got, err := ksp.List(ctx, metav1.ListOptions{})
	if err != nil || len(got.Items) != 1 || got.Items[0].GetName() != "block-sleep" {
		t.Fatalf("listing KubeArmorPolicies: %v, %d items", err, len(got.Items))
	}
	_, err = ksp.Create(ctx, policy("bad", "relative/path", 11), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("a policy the schema rejects (severity 11, relative path): want 422 Invalid, got %v", err)
	}
	for _, field := range []string{"spec.severity", "spec.process.matchPaths[0].path"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("the rejection does not name %s: %v", field, err)
		}
	}

	t.Run("kubeconfig", func(t *testing.T) {
		kubectl := RequireCommand(t, "kubectl", "apt-get install kubectl (or a kubectl release binary)")
		out, err := exec.Command(kubectl, "--kubeconfig", k.WriteKubeconfig(t, "admin"), "get", "namespace", ns, "-o", "name").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "namespace/"+ns) {
			t.Fatalf("kubectl as admin: %v\n%s", err, out)
		}
		out, _ = exec.Command(kubectl, "--kubeconfig", k.WriteKubeconfig(t, "alice"), "auth", "can-i", "list", "pods", "-n", ns).CombinedOutput()
		if strings.TrimSpace(lastLine(string(out))) != "no" {
			t.Fatalf("kubectl as alice: can-i list pods answered %q, want no", out)
		}
	})

	t.Run("stop", func(t *testing.T) {
		k.Stop()
		if _, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
			t.Fatal("the API server still answers after Stop")
		}
		k.Stop() // twice is harmless, like nil
		var none *KubeAPI
		none.Stop()
	})
}

// TestStartKubeAPIMissingBinaries checks that the error names the install step.
func TestStartKubeAPIMissingBinaries(t *testing.T) {
	t.Setenv(EnvKubeBinDir, t.TempDir())
	k, err := StartKubeAPI(KubeAPIOptions{})
	if err == nil {
		k.Stop()
		t.Fatal("started without binaries")
	}
	if !strings.Contains(err.Error(), ".ci/install.d/60-kube-apiserver.sh") {
		t.Fatalf("the error does not name the install step: %v", err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
