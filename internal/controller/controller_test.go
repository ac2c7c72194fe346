package controller

import (
	"bytes"
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

func clusterPolicy(name, app string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorClusterPolicy
metadata:
  name: %s
spec:
  selector:
    matchExpressions:
      - key: label
        operator: In
        values: ["app=%s"]
  process:
    matchPaths:
      - path: /bin/sh
  action: Block
`, name, app)
}

func hostPolicy(name string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorHostPolicy
metadata:
  name: %s
spec:
  nodeSelector:
    matchLabels:
      kubernetes.io/hostname: worker-1
  file:
    matchDirectories:
      - dir: /etc/
        recursive: true
        readOnly: true
  action: Audit
`, name)
}

func networkPolicy(name string) string {
	return fmt.Sprintf(`apiVersion: security.kubearmor.com/v1
kind: KubeArmorNetworkPolicy
metadata:
  name: %s
spec:
  selector:
    matchLabels:
      app: web
  egress:
    - limit: 10MB
      duration: 1m
  action: Block
`, name)
}

// TestPolicySourceLifecycle is the flow against the real API server and a real
// registry, the controller running as the non-admin user: v1 applied (every kind, namespaces by
// the rules); v2 updates one, prunes one, adds one and rewrites nothing unchanged; a restart
// writes nothing; an invalid v3 changes nothing and says why; suspend holds everything; the
// PolicySource's deletion prunes its objects.
func TestPolicySourceLifecycle(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "flow")
	other := k.NewNamespace(t, "flow-other")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/flow:prod"
	csp, hsp, knp := "csp-"+ns, "hsp-"+ns, "knp-"+ns

	v1 := push(t, ref, false,
		"web.yaml", testutil.BlockShellPolicy("web", "", "web"),
		"db.yaml", testutil.BlockShellPolicy("db", other, "db"),
		"cluster.yaml", clusterPolicy(csp, "web"),
		"host.yaml", hostPolicy(hsp))
	r := startController(t, k, ns)
	createSource(t, k, ns, "flow", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})

	src := waitCondition(t, k, ns, "flow", CondReady, metav1.ConditionTrue, ReasonApplied)
	if src.status.Digest != v1 || src.status.PolicyCount != 4 || src.status.Ref != ref+"@"+v1 {
		t.Fatalf("status after v1: %+v", src.status)
	}
	waitCondition(t, k, ns, "flow", CondValid, metav1.ConditionTrue, ReasonValid)
	waitCondition(t, k, ns, "flow", CondVerified, metav1.ConditionTrue, ReasonNotConfigured)
	objs := managed(t, k, ns, "flow")
	want := []PolicyRef{
		{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"},
		{Kind: "KubeArmorPolicy", Namespace: other, Name: "db"},
		{Kind: "KubeArmorClusterPolicy", Name: csp},
		{Kind: "KubeArmorHostPolicy", Name: hsp},
	}
	if len(objs) != len(want) {
		t.Fatalf("objects after v1: %v", slices.Collect(maps.Keys(objs)))
	}
	for _, w := range want {
		o := objs[w]
		if o == nil {
			t.Fatalf("%s missing after v1; have %v", w, slices.Collect(maps.Keys(objs)))
		}
		a, l := o.GetAnnotations(), o.GetLabels()
		if l[LabelManagedBy] != ManagedByValue || a[AnnotationSource] != ns+"/flow" || a[AnnotationAppliedFrom] != ref+"@"+v1 ||
			!strings.HasPrefix(a[AnnotationContentHash], "sha256:") {
			t.Errorf("%s: labels %v annotations %v", w, l, a)
		}
	}
	if got := events(t, k, ns, "flow"); !strings.Contains(strings.Join(got, "\n"), "Normal Applied") {
		t.Errorf("no Applied event: %v", got)
	}

	// v2: web and the host policy unchanged, db changed, the cluster policy dropped, a network
	// policy added.
	before := managed(t, k, ns, "flow")
	v2 := push(t, ref, false,
		"web.yaml", testutil.BlockShellPolicy("web", "", "web"),
		"db.yaml", testutil.BlockShellPolicy("db", other, "db2"),
		"host.yaml", hostPolicy(hsp),
		"net.yaml", networkPolicy(knp))
	eventually(t, "v2 in force", func() (bool, string) {
		s := getSource(t, k, ns, "flow")
		return s.status.Digest == v2 && s.status.PolicyCount == 4, fmt.Sprintf("%+v", s.status)
	})
	after := managed(t, k, ns, "flow")
	for _, unchanged := range []PolicyRef{want[0], want[3]} {
		if after[unchanged].GetResourceVersion() != before[unchanged].GetResourceVersion() {
			t.Errorf("%s was rewritten though its content did not change", unchanged)
		}
		if got := after[unchanged].GetAnnotations()[AnnotationAppliedFrom]; got != ref+"@"+v1 {
			t.Errorf("%s applied-from %s, want v1's", unchanged, got)
		}
	}
	db := after[want[1]]
	if db == nil || db.GetAnnotations()[AnnotationAppliedFrom] != ref+"@"+v2 {
		t.Fatalf("db not updated from v2: %v", db)
	}
	if app, _, _ := unstructuredString(db.Object, "spec", "selector", "matchLabels", "app"); app != "db2" {
		t.Errorf("db's selector is app=%s, want db2", app)
	}
	if _, ok := after[want[2]]; ok {
		t.Errorf("%s left the artifact but was not pruned", want[2])
	}
	if _, ok := after[PolicyRef{Kind: "KubeArmorNetworkPolicy", Name: knp}]; !ok {
		t.Errorf("network policy not applied: %v", slices.Collect(maps.Keys(after)))
	}

	// Restart: the new controller checks the registry, finds v2 in the API server and writes
	// nothing: no object, no status, no Event.
	waitCondition(t, k, ns, "flow", CondReady, metav1.ConditionTrue, ReasonApplied)
	r.waitChecks(t, ns, "flow", 1) // the status of v2 is written before the next check
	r.stop()
	rvs, evs := resourceVersions(t, k, ns, "flow"), events(t, k, ns, "flow")
	r = startController(t, k, ns)
	r.waitChecks(t, ns, "flow", 3)
	if got := resourceVersions(t, k, ns, "flow"); !maps.Equal(got, rvs) {
		t.Errorf("the restarted controller wrote:\nbefore %v\nafter  %v", rvs, got)
	}
	if got := events(t, k, ns, "flow"); !slices.Equal(got, evs) {
		t.Errorf("the restarted controller sent Events:\nbefore %v\nafter  %v", evs, got)
	}

	// An invalid v3 (pushed with --skip-validate) changes nothing, and the conditions say why.
	objRVs := resourceVersions(t, k, ns, "flow")
	push(t, ref, true, "web.yaml", testutil.BlockShellPolicy("web", "", "web"), "broken.yaml", testutil.InvalidPolicy())
	src = waitCondition(t, k, ns, "flow", CondValid, metav1.ConditionFalse, ReasonInvalid)
	waitCondition(t, k, ns, "flow", CondReady, metav1.ConditionFalse, ReasonInvalid)
	if src.status.Digest != v2 || !strings.Contains(src.status.LastError, "actionn") {
		t.Errorf("status after invalid v3: %+v", src.status)
	}
	got := resourceVersions(t, k, ns, "flow")
	delete(got, "PolicySource")
	delete(objRVs, "PolicySource")
	if !maps.Equal(got, objRVs) {
		t.Errorf("an invalid version changed objects:\nbefore %v\nafter  %v", objRVs, got)
	}
	waitEvent(t, k, ns, "flow", "Warning Invalid")

	// Suspended, a good v4 is not applied; resumed, it is.
	patchSpec(t, k, ns, "flow", `{"suspend":true}`)
	waitCondition(t, k, ns, "flow", CondReady, metav1.ConditionFalse, ReasonSuspended)
	objRVs = resourceVersions(t, k, ns, "flow")
	delete(objRVs, "PolicySource")
	checks := r.checks(ns, "flow")
	v4 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"), "new.yaml", testutil.BlockShellPolicy("new", "", "new"))
	time.Sleep(3 * testIntervalDur) // nothing must happen; three intervals give it the chance
	got = resourceVersions(t, k, ns, "flow")
	delete(got, "PolicySource")
	if !maps.Equal(got, objRVs) || r.checks(ns, "flow") != checks {
		t.Errorf("a suspended source checked (%d -> %d) or wrote:\nbefore %v\nafter  %v", checks, r.checks(ns, "flow"), objRVs, got)
	}
	patchSpec(t, k, ns, "flow", `{"suspend":false}`)
	eventually(t, "v4 in force after resuming", func() (bool, string) {
		s := getSource(t, k, ns, "flow")
		return s.status.Digest == v4 && s.status.PolicyCount == 2, fmt.Sprintf("%+v", s.status)
	})
	if objs := managed(t, k, ns, "flow"); len(objs) != 2 {
		t.Errorf("after v4: %v", slices.Collect(maps.Keys(objs)))
	}

	// Deleting the PolicySource prunes its objects, then lets it go.
	must(t, adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Delete(context.Background(), "flow", metav1.DeleteOptions{}))
	eventually(t, "the PolicySource gone and its objects pruned", func() (bool, string) {
		_, err := adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Get(context.Background(), "flow", metav1.GetOptions{})
		left := managed(t, k, ns, "flow")
		return apierrors.IsNotFound(err) && len(left) == 0, fmt.Sprintf("get: %v, objects left: %v", err, slices.Collect(maps.Keys(left)))
	})
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// TestVerifiedSourceWithCredentials follows an artifact in a registry that needs a login
// (credentials from a dockerconfigjson Secret) with verification by a key from a Secret: a
// signed version goes in force; an unsigned one changes nothing and Verified says why.
func TestVerifiedSourceWithCredentials(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "verify")
	reg := registrytest.New(t, registrytest.Options{Auth: registrytest.AuthBasic, Users: map[string]string{"ci": "s3cret"}})
	ref := reg.Host + "/policies/signed:prod"
	auth := transport
	auth.Username, auth.Password = "ci", "s3cret"

	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
	must(t, err)
	priv, err := signing.ParsePrivateKey("test.key", privPEM, nil)
	must(t, err)
	dockercfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Host, base64.StdEncoding.EncodeToString([]byte("ci:s3cret")))
	admin := adminKube(k)
	ctx := context.Background()
	_, err = admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "registry"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(dockercfg)}}, metav1.CreateOptions{})
	must(t, err)
	_, err = admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "keys"},
		Data: map[string][]byte{"cosign.pub": pubPEM, "README": []byte("the team's release key")}}, metav1.CreateOptions{})
	must(t, err)

	pushSigned := func(sign bool, files ...string) string {
		r, err := oci.ParseReference(ref)
		must(t, err)
		var fs []oci.File
		for i := 0; i+1 < len(files); i += 2 {
			fs = append(fs, oci.File{Name: files[i], Data: []byte(files[i+1])})
		}
		res, err := oci.Push(ctx, r, fs, oci.PushOptions{Transport: auth})
		must(t, err)
		if sign {
			repo, err := oci.NewRepository(r, auth)
			must(t, err)
			m := res.Manifest
			_, err = signing.Sign(ctx, repo, ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}, priv, signing.SignOptions{})
			must(t, err)
		}
		return res.Manifest.Digest.String()
	}
	v1 := pushSigned(true, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	startController(t, k, ns)
	createSource(t, k, ns, "signed", map[string]any{
		"ref": ref, "interval": testInterval, "insecure": true,
		"secretRef": map[string]any{"name": "registry"},
		"verify":    map[string]any{"keysSecretRef": map[string]any{"name": "keys"}},
	})
	src := waitCondition(t, k, ns, "signed", CondReady, metav1.ConditionTrue, ReasonApplied)
	waitCondition(t, k, ns, "signed", CondVerified, metav1.ConditionTrue, ReasonVerified)
	if src.status.Digest != v1 || src.status.SignedBy == "" {
		t.Fatalf("status after signed v1: %+v", src.status)
	}
	rvs := resourceVersions(t, k, ns, "signed")
	delete(rvs, "PolicySource")

	pushSigned(false, "web.yaml", testutil.BlockShellPolicy("web", "", "other"))
	src = waitCondition(t, k, ns, "signed", CondVerified, metav1.ConditionFalse, ReasonVerificationFailed)
	waitCondition(t, k, ns, "signed", CondReady, metav1.ConditionFalse, ReasonVerificationFailed)
	if src.status.Digest != v1 {
		t.Errorf("an unsigned version moved the digest in force: %+v", src.status)
	}
	got := resourceVersions(t, k, ns, "signed")
	delete(got, "PolicySource")
	if !maps.Equal(got, rvs) {
		t.Errorf("an unsigned version changed objects:\nbefore %v\nafter  %v", rvs, got)
	}
	waitEvent(t, k, ns, "signed", "Warning VerificationFailed")
}

// TestNameClash: an object of the same name that is not the PolicySource's is left untouched
// and reported; the other policies are applied.
// TestNameClash runs with few new objects (each looked up with a GET) and with more than
// bulkLookup (looked up with one list).
func TestNameClash(t *testing.T) {
	for _, fillers := range []int{0, bulkLookup + 4} {
		t.Run(fmt.Sprintf("%d-more-policies", fillers), func(t *testing.T) { testNameClash(t, fillers) })
	}
}

func testNameClash(t *testing.T, fillers int) {
	k := env(t)
	ns := k.NewNamespace(t, "clash")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/clash:prod"
	ctx := context.Background()
	foreign := decodeYAML(t, testutil.BlockShellPolicy("web", ns, "mine"))
	created, err := adminDyn(k).Resource(kubeArmorKinds[0].GVR).Namespace(ns).Create(ctx, foreign, metav1.CreateOptions{})
	must(t, err)

	files := []string{"web.yaml", testutil.BlockShellPolicy("web", "", "web"), "api.yaml", testutil.BlockShellPolicy("api", "", "api")}
	for i := range fillers {
		name := fmt.Sprintf("filler-%d", i)
		files = append(files, name+".yaml", testutil.BlockShellPolicy(name, "", name))
	}
	push(t, ref, false, files...)
	startController(t, k, ns)
	createSource(t, k, ns, "clash", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	src := waitCondition(t, k, ns, "clash", CondReady, metav1.ConditionFalse, ReasonNameClash)
	msg := conditionMessage(src, CondReady)
	if !strings.Contains(msg, "KubeArmorPolicy/"+ns+"/web") {
		t.Errorf("the clash message does not name the object: %s", msg)
	}
	if src.status.PolicyCount != 1+fillers {
		t.Errorf("status: %+v", src.status)
	}
	live, err := adminDyn(k).Resource(kubeArmorKinds[0].GVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
	must(t, err)
	if live.GetResourceVersion() != created.GetResourceVersion() || live.GetLabels()[LabelManagedBy] != "" {
		t.Errorf("the foreign object was touched: %v", live.Object["metadata"])
	}
	if _, ok := managed(t, k, ns, "clash")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "api"}]; !ok {
		t.Error("api was not applied beside the clash")
	}
	waitEvent(t, k, ns, "clash", "Warning NameClash")
}

func conditionMessage(src *source, typ string) string {
	for _, c := range src.status.Conditions {
		if c.Type == typ {
			return c.Message
		}
	}
	return ""
}

// TestCorpusAccepted applies the upstream corpus's valid policies (every file whose documents
// all pass strict validation, one per name) and checks the API server's schemas accept every
// one and store the spec the artifact holds (less null members, which kubectl's writes have
// pruned too: KubeArmor's CRDs have no nullable field).
func TestCorpusAccepted(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "corpus")
	root := testutil.SharedDir(t, "corpus")
	paths, err := policy.FindFiles(filepath.Join(root, "policy-templates"))
	must(t, err)
	type want struct{ spec map[string]any }
	wants := map[PolicyRef]want{}
	var files []string
	bases := map[string]bool{}
	for _, p := range paths {
		if base := filepath.Base(p); bases[base] || oci.ValidateTitle(base) != nil {
			continue // the artifact names files by base name
		}
		data, err := os.ReadFile(p)
		must(t, err)
		docs := policy.ParseBytes(p, data, policy.Options{})
		if len(docs) == 0 || policy.FirstError(docs) != nil {
			continue
		}
		refs := map[PolicyRef]want{}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				break
			}
			if m == nil {
				continue
			}
			md, _ := m["metadata"].(map[string]any)
			kind, _ := m["kind"].(string)
			r := PolicyRef{Kind: kind, Name: fmt.Sprint(md["name"])}
			if kind == "KubeArmorPolicy" {
				r.Namespace = ns
			}
			spec, _ := dropNulls(m["spec"]).(map[string]any)
			refs[r] = want{spec}
		}
		clash := len(refs) != len(docs)
		for r := range refs {
			if _, dup := wants[r]; dup {
				clash = true
			}
		}
		if clash {
			continue
		}
		maps.Copy(wants, refs)
		bases[filepath.Base(p)] = true
		files = append(files, filepath.Base(p), string(data))
	}
	if len(wants) < 100 {
		t.Fatalf("only %d corpus policies usable", len(wants))
	}
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/corpus:all"
	digest := push(t, ref, false, files...)
	startController(t, k, ns)
	createSource(t, k, ns, "corpus", map[string]any{"ref": ref, "interval": "1m", "insecure": true, "targetNamespace": ns})
	src := waitCondition(t, k, ns, "corpus", CondReady, metav1.ConditionTrue, ReasonApplied)
	if src.status.Digest != digest || src.status.PolicyCount != len(wants) {
		t.Fatalf("status: digest %s count %d, want %s %d (%s)", src.status.Digest, src.status.PolicyCount, digest, len(wants), src.status.LastError)
	}
	live := managed(t, k, ns, "corpus")
	for r, w := range wants {
		o := live[r]
		if o == nil {
			t.Errorf("%s not in the API server", r)
			continue
		}
		got, _ := json.Marshal(o.Object["spec"])
		exp, _ := json.Marshal(w.spec)
		if !bytes.Equal(got, exp) {
			t.Errorf("%s: the stored spec differs from the artifact's:\nstored   %s\nartifact %s", r, got, exp)
		}
	}
	t.Logf("%d corpus policies from %d files applied and stored as the artifact holds them", len(wants), len(files)/2)
	// Cluster-scoped objects outlive the namespace: prune them with the source.
	must(t, adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Delete(context.Background(), "corpus", metav1.DeleteOptions{}))
	eventually(t, "corpus pruned", func() (bool, string) {
		n := len(managed(t, k, ns, "corpus"))
		return n == 0, fmt.Sprintf("%d left", n)
	})
}

// TestRegistryRequestsPerInterval: once a version is in force, the controller asks the registry
// for the manifest once per interval and nothing else, however often the PolicySource or its
// objects change in the API server meanwhile.
func TestRegistryRequestsPerInterval(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "requests")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/requests:prod"
	push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	r := startController(t, k, ns)
	createSource(t, k, ns, "req", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	waitCondition(t, k, ns, "req", CondReady, metav1.ConditionTrue, ReasonApplied)
	r.waitChecks(t, ns, "req", 1)

	reg.Reset()
	start := time.Now()
	checks0 := r.checks(ns, "req")
	// Events that queue the source without changing its spec: annotations on it, and one of its
	// objects deleted (re-created from memory, not from the registry).
	for i := range 5 {
		_, err := adminDyn(k).Resource(PolicySourceGVR).Namespace(ns).Patch(context.Background(), "req", types.MergePatchType,
			[]byte(fmt.Sprintf(`{"metadata":{"annotations":{"touch":"%d"}}}`, i)), metav1.PatchOptions{})
		must(t, err)
	}
	must(t, adminDyn(k).Resource(kubeArmorKinds[0].GVR).Namespace(ns).Delete(context.Background(), "web", metav1.DeleteOptions{}))
	eventually(t, "web re-created", func() (bool, string) {
		_, ok := managed(t, k, ns, "req")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"}]
		return ok, "not yet"
	})
	r.waitChecks(t, ns, "req", 4)
	elapsed := time.Since(start)
	checks := r.checks(ns, "req") - checks0
	manifests, blobs := reg.Count("", registrytest.RouteManifest), reg.Count("", registrytest.RouteBlob)
	// At most one check per interval less 10% jitter, plus the one in flight.
	bound := int(elapsed/(testIntervalDur*9/10)) + 1
	t.Logf("%d manifest requests, %d blob requests, %d checks in %s (interval %s)", manifests, blobs, checks, elapsed.Round(time.Millisecond), testInterval)
	if blobs != 0 || manifests > checks+1 || manifests > bound {
		t.Errorf("registry requests while nothing changed: %s (checks %d, bound %d)", reg.Counter, checks, bound)
	}
}

// TestRBACLeastPrivilege: the user the controller runs as (bound to testdata/rbac.yaml) can do
// the job, as the other tests show, and nothing more: no listing Secrets, no touching pods.
func TestRBACLeastPrivilege(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "rbac")
	user := kubernetes.NewForConfigOrDie(k.UserConfig(controllerUser))
	ctx := context.Background()
	if _, err := user.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets: %v, want Forbidden", err)
	}
	if err := user.CoreV1().Pods(ns).Delete(ctx, "any", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("delete pod: %v, want Forbidden", err)
	}
	if _, err := user.CoreV1().Secrets(ns).Get(ctx, "absent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get secret: %v, want NotFound (allowed)", err)
	}
	if _, err := user.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list leases outside the leader-election namespace: %v, want Forbidden", err)
	}
}

func decodeYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	must(t, utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096).Decode(&m))
	return &unstructured.Unstructured{Object: m}
}

// dropNulls removes the null members of mappings, recursively.
func dropNulls(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if e == nil {
				delete(t, k)
			} else {
				t[k] = dropNulls(e)
			}
		}
	case []any:
		for i, e := range t {
			t[i] = dropNulls(e)
		}
	}
	return v
}

// TestRegistryDown: with the registry gone, the objects stay and Ready says why; a controller
// started while it is down changes nothing at all (the objects in the API server are the last
// good set, there is no disk cache to lose).
func TestRegistryDown(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "down")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/down:prod"
	v1 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	r := startController(t, k, ns)
	createSource(t, k, ns, "down", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	waitCondition(t, k, ns, "down", CondReady, metav1.ConditionTrue, ReasonApplied)
	objRVs := resourceVersions(t, k, ns, "down")
	delete(objRVs, "PolicySource")

	reg.Close()
	src := waitCondition(t, k, ns, "down", CondReady, metav1.ConditionFalse, ReasonFetchFailed)
	if src.status.Digest != v1 || src.status.PolicyCount != 1 || !strings.Contains(src.status.LastError, "stay in force") {
		t.Errorf("status with the registry down: %+v", src.status)
	}
	waitEvent(t, k, ns, "down", "Warning FetchFailed")
	r.waitChecks(t, ns, "down", 1)
	r.stop()
	rvs, evs := resourceVersions(t, k, ns, "down"), events(t, k, ns, "down")
	got := maps.Clone(rvs)
	delete(got, "PolicySource")
	if !maps.Equal(got, objRVs) {
		t.Errorf("objects changed while the registry was down:\nbefore %v\nafter  %v", objRVs, got)
	}

	r = startController(t, k, ns)
	r.waitChecks(t, ns, "down", 3)
	if got = resourceVersions(t, k, ns, "down"); !maps.Equal(got, rvs) {
		t.Errorf("a controller started with the registry down wrote:\nbefore %v\nafter  %v", rvs, got)
	}
	if got := events(t, k, ns, "down"); !slices.Equal(got, evs) {
		t.Errorf("a controller started with the registry down sent Events:\nbefore %v\nafter  %v", evs, got)
	}
}

// TestMissingKubeArmorCRDs runs against an API server of its own that serves PolicySources but
// none of KubeArmor's kinds: Ready says to install KubeArmor's CRDs; once they are installed,
// the policies are applied without a restart.
func TestMissingKubeArmorCRDs(t *testing.T) {
	env(t) // the shared API server must be startable here; this test starts a second one
	bare, err := testutil.StartKubeAPI(testutil.KubeAPIOptions{})
	t.Cleanup(bare.Stop)
	bare = testutil.RequireKubeAPI(t, bare, err)
	ctx := context.Background()
	must(t, bare.InstallCRDs(ctx, filepath.Join(testutil.RepoRoot(t), "deploy/helm/karmor/crds/policysources.karmor.io.yaml")))
	ns := bare.NewNamespace(t, "nocrd")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/nocrd:prod"
	push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	startControllerAs(t, bare.AdminConfig(), ns)
	createSource(t, bare, ns, "nocrd", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	src := waitCondition(t, bare, ns, "nocrd", CondReady, metav1.ConditionFalse, ReasonCRDMissing)
	if msg := conditionMessage(src, CondReady); !strings.Contains(msg, "install KubeArmor's CRDs") {
		t.Errorf("Ready message: %s", msg)
	}
	must(t, bare.InstallCRDs(ctx, testutil.KubeArmorCRDFiles(t)...))
	waitCondition(t, bare, ns, "nocrd", CondReady, metav1.ConditionTrue, ReasonApplied)
	if _, ok := managed(t, bare, ns, "nocrd")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"}]; !ok {
		t.Error("web not applied once the CRDs were installed")
	}
}

// An applied policy weakened by hand (its content-hash annotation left as it was) is put back
// as the artifact holds it, spec additions included; a label someone adds is theirs and makes
// the controller write nothing.
func TestDriftRestored(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "drift")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/drift:prod"
	ctx := context.Background()
	push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web")+"  message: shell blocked\n")
	run := startController(t, k, ns)
	createSource(t, k, ns, "drift", map[string]any{"ref": ref, "interval": testInterval, "insecure": true})
	waitCondition(t, k, ns, "drift", CondReady, metav1.ConditionTrue, ReasonApplied)
	res := adminDyn(k).Resource(kubeArmorKinds[0].GVR).Namespace(ns)
	want, err := res.Get(ctx, "web", metav1.GetOptions{})
	must(t, err)
	wantSpec, err := json.Marshal(want.Object["spec"])
	must(t, err)

	// Audit instead of Block, and a rule added: what an attacker with edit rights would do.
	_, err = res.Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"action":"Audit","message":"nothing to see","file":{"matchPaths":[{"path":"/etc/hostname"}]}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
	must(t, err)
	eventually(t, "web restored as the artifact holds it", func() (bool, string) {
		live, err := res.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got, _ := json.Marshal(live.Object["spec"])
		return bytes.Equal(got, wantSpec), string(got)
	})
	waitEvent(t, k, ns, "drift", "Warning DriftCorrected")

	// A label of someone else's is not drift.
	labelled, err := res.Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"payments"}}}`), metav1.PatchOptions{})
	must(t, err)
	run.waitChecks(t, ns, "drift", 2)
	live, err := res.Get(ctx, "web", metav1.GetOptions{})
	must(t, err)
	if live.GetResourceVersion() != labelled.GetResourceVersion() {
		t.Errorf("the controller wrote web after a label was added: resourceVersion %s, was %s; labels %v",
			live.GetResourceVersion(), labelled.GetResourceVersion(), live.GetLabels())
	}

	// The restore was an update, which owns the message it put back; a version that drops the
	// message must still drop it.
	push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	v2Spec, err := json.Marshal(decodeYAML(t, testutil.BlockShellPolicy("web", "", "web")).Object["spec"])
	must(t, err)
	eventually(t, "web as v2 holds it, without the message", func() (bool, string) {
		live, err := res.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		got, _ := json.Marshal(live.Object["spec"])
		return bytes.Equal(got, v2Spec), string(got)
	})
}
