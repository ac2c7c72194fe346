package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/karmor/karmor/internal/testutil"
)

// TestServerDryRun: a real kube-apiserver (with KubeArmor's CRDs and the chart's own) accepts every
// object of deploy/manifests and of each profile's render in a server-side dry run — the API's own
// schemas, defaults, strict field validation and admission, not an offline copy of the schemas —
// and refuses a wrong value (so the check can fail).
func TestServerDryRun(t *testing.T) {
	kubectl := testutil.RequireCommand(t, "kubectl", "apt-get install kubectl (or a kubectl release binary on PATH)")
	k, err := testutil.StartKubeAPI(testutil.KubeAPIOptions{})
	k = testutil.RequireKubeAPI(t, k, err)
	t.Cleanup(k.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	crds := testutil.KubeArmorCRDFiles(t)
	ours, _ := filepath.Glob(filepath.Join(chartDir(t), "crds", "*.yaml"))
	if err := k.InstallCRDs(ctx, append(crds, ours...)...); err != nil {
		t.Fatal(err)
	}
	// A dry-run create of the Namespace creates nothing, so the namespaced objects after it would
	// find no namespace: it is created for real first (the dry run of the Namespace still runs).
	admin, err := kubernetes.NewForConfig(k.AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "karmor"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := k.WriteKubeconfig(t, "admin")
	dryRun := func(file string) (string, error) {
		out, err := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "--dry-run=server", "--validate=strict", "-f", file).CombinedOutput()
		return string(out), err
	}

	manifests, _ := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "deploy", "manifests", "*.yaml"))
	if len(manifests) == 0 {
		t.Fatal("no deploy/manifests/*.yaml")
	}
	for _, m := range manifests {
		if out, err := dryRun(m); err != nil {
			t.Errorf("the API server refuses %s: %v\n%s", m, err, out)
		} else if !strings.Contains(out, "(server dry run)") {
			t.Errorf("kubectl did not dry-run %s on the server:\n%s", m, out)
		}
	}

	dir := t.TempDir()
	t.Run("profiles", func(t *testing.T) {
		for _, profile := range profiles {
			f := filepath.Join(dir, profile+".yaml")
			if err := os.WriteFile(f, render(t, profile), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := dryRun(f); err != nil {
				t.Errorf("the API server refuses the %s profile: %v\n%s", profile, err, out)
			}
		}
	})

	t.Run("refuses a wrong value", func(t *testing.T) {
		good, err := os.ReadFile(manifests[0])
		if err != nil {
			t.Fatal(err)
		}
		broken := bytes.Replace(good, []byte("imagePullPolicy: IfNotPresent"), []byte("imagePullPolicy: Sometimes"), 1)
		if bytes.Equal(broken, good) {
			t.Fatalf("precondition: %s sets no imagePullPolicy: IfNotPresent to break", manifests[0])
		}
		f := filepath.Join(dir, "broken.yaml")
		if err := os.WriteFile(f, broken, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := dryRun(f)
		if err == nil || !strings.Contains(out, "Sometimes") {
			t.Errorf("the API server accepted imagePullPolicy: Sometimes (err %v):\n%s", err, out)
		}
	})
}
