package controller

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/testutil"
)

// The API server of this package's tests: one etcd + kube-apiserver for all of them, with a
// non-admin user the controller runs as, bound to testdata/rbac.yaml and nothing else.
var (
	kube    *testutil.KubeAPI
	kubeErr error
)

const (
	controllerUser  = "karmor-controller"
	leaseNamespace  = "karmor-system"
	waitTimeout     = 90 * time.Second
	testInterval    = "1s"
	testIntervalDur = time.Second
)

func TestMain(m *testing.M) {
	kube, kubeErr = testutil.StartKubeAPI(testutil.KubeAPIOptions{Users: []testutil.KubeUser{{Name: controllerUser}}})
	code := m.Run()
	kube.Stop()
	os.Exit(code)
}

var (
	setupOnce sync.Once
	setupErr  error
)

// env returns the API server with the CRDs and the controller's RBAC installed, or skips
// loudly when it could not start.
func env(t *testing.T) *testutil.KubeAPI {
	t.Helper()
	k := testutil.RequireKubeAPI(t, kube, kubeErr)
	crds := append(testutil.KubeArmorCRDFiles(t), filepath.Join(testutil.RepoRoot(t), "deploy/helm/karmor/crds/policysources.karmor.io.yaml"))
	setupOnce.Do(func() { setupErr = setup(k, crds) })
	if setupErr != nil {
		t.Fatalf("install CRDs and RBAC: %v", setupErr)
	}
	return k
}

func setup(k *testutil.KubeAPI, crds []string) error {
	ctx := context.Background()
	if err := k.InstallCRDs(ctx, crds...); err != nil {
		return err
	}
	admin := kubernetes.NewForConfigOrDie(k.AdminConfig())
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	cr, role, err := readRBAC()
	if err != nil {
		return err
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: controllerUser}}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, cr, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: cr.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := admin.RbacV1().Roles(leaseNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err = admin.RbacV1().RoleBindings(leaseNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
	}, metav1.CreateOptions{})
	return err
}

// readRBAC reads the ClusterRole and the leader-election Role of testdata/rbac.yaml: the rules
// live in that one file.
func readRBAC() (*rbacv1.ClusterRole, *rbacv1.Role, error) {
	data, err := os.ReadFile("testdata/rbac.yaml")
	if err != nil {
		return nil, nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var cr rbacv1.ClusterRole
	var role rbacv1.Role
	if err := dec.Decode(&cr); err != nil {
		return nil, nil, err
	}
	if err := dec.Decode(&role); err != nil {
		return nil, nil, err
	}
	if cr.Kind != "ClusterRole" || role.Kind != "Role" {
		return nil, nil, fmt.Errorf("testdata/rbac.yaml: want a ClusterRole then a Role, got %s and %s", cr.Kind, role.Kind)
	}
	return &cr, &role, nil
}

// transport reaches the test registries over plain HTTP and gives up quickly.
var transport = oci.TransportOptions{
	PlainHTTP: true,
	Retry:     oci.RetryOptions{MaxRetries: 1, MinWait: 10 * time.Millisecond, MaxWait: 20 * time.Millisecond},
}

// push pushes files (name, content pairs) with `karmor oci push`'s code; the manifest digest.
func push(t *testing.T, ref string, skipValidate bool, files ...string) string {
	t.Helper()
	r, err := oci.ParseReference(ref)
	must(t, err)
	var fs []oci.File
	for i := 0; i+1 < len(files); i += 2 {
		fs = append(fs, oci.File{Name: files[i], Data: []byte(files[i+1])})
	}
	res, err := oci.Push(context.Background(), r, fs, oci.PushOptions{Transport: transport, SkipValidate: skipValidate})
	must(t, err)
	return res.Manifest.Digest.String()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// running is a controller run in the test process as the non-admin user.
type running struct {
	c      *Controller
	cancel context.CancelFunc
	done   chan error
}

func startController(t *testing.T, k *testutil.KubeAPI, ns string) *running {
	t.Helper()
	return startControllerAs(t, k.UserConfig(controllerUser), ns)
}

func startControllerAs(t *testing.T, cfg *rest.Config, ns string) *running {
	t.Helper()
	c, err := New(Config{
		Rest:           cfg,
		WatchNamespace: ns,
		Transport:      oci.TransportOptions{Retry: transport.Retry},
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:        prometheus.NewRegistry(),
	})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	<-r.done
	r.cancel = nil
}

// checks is how many registry checks the controller made for a source.
func (r *running) checks(ns, name string) int {
	n := 0.0
	for _, res := range []string{"ok", "unchanged", "FetchFailed", "VerificationFailed", "Invalid"} {
		n += promtest.ToFloat64(r.c.metrics.checks.WithLabelValues(ns, name, res))
	}
	return int(n)
}

// waitChecks waits until the controller made n more registry checks of the source than before.
func (r *running) waitChecks(t *testing.T, ns, name string, n int) {
	t.Helper()
	target := r.checks(ns, name) + n
	eventually(t, fmt.Sprintf("%d more registry checks of %s/%s", n, ns, name), func() (bool, string) {
		got := r.checks(ns, name)
		return got >= target, fmt.Sprintf("%d checks, want %d", got, target)
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// eventually polls cond until it holds, failing the test with cond's last word after
// waitTimeout. Tests wait for states, they never time them.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s within %s; last: %s", what, waitTimeout, last)
}

func adminDyn(k *testutil.KubeAPI) dynamic.Interface {
	return dynamic.NewForConfigOrDie(k.AdminConfig())
}

func adminKube(k *testutil.KubeAPI) kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(k.AdminConfig())
}

// createSource creates a PolicySource as an admin would.
func createSource(t *testing.T, k *testutil.KubeAPI, ns, name string, spec map[string]any) {
	t.Helper()
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "karmor.io/v1alpha1", "kind": "PolicySource",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
	_, err := adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Create(context.Background(), obj, metav1.CreateOptions{})
	must(t, err)
}

func getSource(t *testing.T, k *testutil.KubeAPI, ns, name string) *source {
	t.Helper()
	u, err := adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	must(t, err)
	src, _ := parseSource(u)
	return src
}

// patchSpec merges fields into a PolicySource's spec.
func patchSpec(t *testing.T, k *testutil.KubeAPI, ns, name, specJSON string) {
	t.Helper()
	_, err := adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Patch(context.Background(), name, "application/merge-patch+json",
		[]byte(`{"spec":`+specJSON+`}`), metav1.PatchOptions{})
	must(t, err)
}

// waitCondition waits until the source's condition has status and reason, for its current
// generation, and returns the source.
func waitCondition(t *testing.T, k *testutil.KubeAPI, ns, name, typ string, status metav1.ConditionStatus, reason string) *source {
	t.Helper()
	var src *source
	eventually(t, fmt.Sprintf("%s=%s (%s) on %s/%s", typ, status, reason, ns, name), func() (bool, string) {
		src = getSource(t, k, ns, name)
		c := meta.FindStatusCondition(src.status.Conditions, typ)
		if c == nil {
			return false, fmt.Sprintf("no %s condition: %+v", typ, src.status)
		}
		ok := c.Status == status && c.Reason == reason && src.status.ObservedGeneration == src.obj.GetGeneration()
		return ok, fmt.Sprintf("%+v", src.status)
	})
	return src
}

// managed lists the objects of a source, of every KubeArmor kind, keyed by PolicyRef.
func managed(t *testing.T, k *testutil.KubeAPI, ns, name string) map[PolicyRef]*unstructured.Unstructured {
	t.Helper()
	sel := labels.SelectorFromSet(labels.Set{LabelSourceNamespace: ns, LabelSourceName: name}).String()
	out := map[PolicyRef]*unstructured.Unstructured{}
	for _, kind := range kubeArmorKinds {
		list, err := adminDyn(k).Resource(kind.GVR).List(context.Background(), metav1.ListOptions{LabelSelector: sel})
		must(t, err)
		for i := range list.Items {
			o := &list.Items[i]
			out[PolicyRef{Kind: kind.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}] = o
		}
	}
	return out
}

// resourceVersions maps every object of the source, and the source itself, to its
// resourceVersion: equal maps mean nothing was written.
func resourceVersions(t *testing.T, k *testutil.KubeAPI, ns, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for ref, o := range managed(t, k, ns, name) {
		out[ref.String()] = o.GetResourceVersion()
	}
	out["PolicySource"] = getSource(t, k, ns, name).obj.GetResourceVersion()
	return out
}

// events returns the reasons and messages of the Events about a source.
func events(t *testing.T, k *testutil.KubeAPI, ns, name string) []string {
	t.Helper()
	list, err := adminKube(k).CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	must(t, err)
	var out []string
	for _, e := range list.Items {
		// The count too: the recorder patches a repeated Event rather than creating one.
		out = append(out, fmt.Sprintf("%s %s: %s (x%d)", e.Type, e.Reason, e.Message, e.Count))
	}
	return out
}

func waitEvent(t *testing.T, k *testutil.KubeAPI, ns, name, prefix string) string {
	t.Helper()
	var found string
	eventually(t, "event "+prefix, func() (bool, string) {
		all := events(t, k, ns, name)
		for _, e := range all {
			if strings.HasPrefix(e, prefix) {
				found = e
				return true, ""
			}
		}
		return false, strings.Join(all, "\n")
	})
	return found
}
