package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

const (
	blockShell = "KubeArmorPolicy/default/block-shell"
	auditAPI   = "KubeArmorPolicy/default/audit-api"
)

// TestFollowTagWithRunc: karmord follows a tag of a real registry; a real runc container started
// through karmor-hook matches v1; v2 moves the selector and the match follows within a poll or
// two, as `karmor containers -o json` and the watch stream show.
func TestFollowTagWithRunc(t *testing.T) {
	r := testutil.NewRunc(t)
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/team/policies:prod"
	v1 := push(t, ref, false, "block-shell.yaml", testutil.BlockShellPolicy("block-shell", "", "web"))

	k := newKarmord(t, r.Root, "--policy-ref", ref, "--policy-interval", interval, "--plain-http")
	k.Start(t)
	k.waitSource(t, "v1 in force", func(s agentapi.PolicySource) bool { return s.Digest == v1 })
	w := k.watch(t)

	id := fmt.Sprintf("kp%d-web", os.Getpid())
	bundle := testutil.HookedBundle(t, k.Karmord, []string{"sleep", "1000"}, func(s *rspec.Spec) {
		s.Annotations = map[string]string{"app": "web", "kubearmor.io/container.name": "web1"}
	})
	r.Must(t, "run", "-d", "--bundle", bundle, id)
	k.waitPolicies(t, id, blockShell)
	listed := w.wait(t, "the container with its policy", func(l map[string]any) bool {
		c, _ := l["container"].(map[string]any)
		return c != nil && c["id"] == id && fmt.Sprint(c["policies"]) == "["+blockShell+"]"
	})
	t.Logf("watch: %s of %s with policies %v", listed["kind"], id, listed["container"].(map[string]any)["policies"])

	// v2: block-shell selects app=api, and a new policy selects app=web.
	pushed := time.Now()
	v2 := push(t, ref, false, "block-shell.yaml", testutil.BlockShellPolicy("block-shell", "", "api"), "audit-api.yaml", testutil.BlockShellPolicy("audit-api", "", "web"))
	k.waitPolicies(t, id, auditAPI)
	t.Logf("v2's match in force %v after the push (poll interval %s)", time.Since(pushed).Round(time.Millisecond), interval)
	change := policyChange(w.wait(t, "v2's policy change", func(l map[string]any) bool {
		pc := policyChange(l)
		return pc != nil && pc["digest"] == v2
	}))
	// Generation 1 is the empty set at start, 2 is v1.
	if change["generation"].(float64) != 3 || change["policies"].(float64) != 2 || change["total"].(float64) != 2 || change["error"] != nil {
		t.Errorf("v2's policy change: %v", change)
	}

	var e agentapi.Explanation
	k.cliJSON(t, &e, "policy", "explain", "web1", "-o", "json")
	verdicts := map[string]agentapi.PolicyVerdict{}
	for _, v := range e.Verdicts {
		verdicts[v.Policy] = v
	}
	shell, audit := verdicts[blockShell], verdicts[auditAPI]
	if len(e.Verdicts) != 2 || shell.Applies || !audit.Applies ||
		!strings.Contains(strings.Join(shell.Reasons, ";"), `the container has "web", the policy wants "api"`) ||
		audit.File != ref+"@"+v2+"/audit-api.yaml" || len(e.Rules) != 1 || e.Rules[0].Policy != auditAPI {
		t.Errorf("explain web1 after v2: %+v", e)
	}
}

// TestRegistryDownAndInvalidPush: an invalid policy pushed with --skip-validate is refused and
// the registry going away changes nothing in force; both errors are visible in
// `karmor policy list -o json` and on the watch stream.
func TestRegistryDownAndInvalidPush(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/team/policies:prod"
	v1 := push(t, ref, false, "block-shell.yaml", testutil.BlockShellPolicy("block-shell", "", "web"))
	k := newKarmord(t, "", "--policy-ref", ref, "--policy-interval", interval, "--plain-http")
	k.Start(t)
	k.waitSource(t, "v1 in force", func(s agentapi.PolicySource) bool { return s.Digest == v1 })
	k.report(t, "c-web", map[string]string{"app": "web"})
	k.waitPolicies(t, "c-web", blockShell)
	w := k.watch(t)

	bad := push(t, ref, true, "block-shell.yaml", testutil.InvalidPolicy())
	src := k.waitSource(t, "the invalid push refused", func(s agentapi.PolicySource) bool { return s.Failing })
	if src.Digest != v1 || src.Policies != 1 || !strings.Contains(src.LastError, bad) || !strings.Contains(src.LastError, "actionn") {
		t.Fatalf("after the invalid push: %+v", src)
	}
	k.waitPolicies(t, "c-web", blockShell)
	w.wait(t, "the refusal", func(l map[string]any) bool {
		pc := policyChange(l)
		return l["kind"] == "policy-error" && pc != nil && strings.Contains(fmt.Sprint(pc["error"]), "actionn") && pc["digest"] == v1
	})

	reg.Close()
	src = k.waitSource(t, "the registry's absence reported", func(s agentapi.PolicySource) bool {
		return s.Failing && !strings.Contains(s.LastError, "actionn")
	})
	t.Logf("error with the registry down: %s", src.LastError)
	if src.Digest != v1 || src.Policies != 1 || src.LastErrorAt.Before(src.LastSuccess) {
		t.Fatalf("with the registry down: %+v", src)
	}
	k.waitPolicies(t, "c-web", blockShell)
	if s := k.policyState(t); len(s.Policies) != 1 || s.Policies[0].ID != blockShell {
		t.Fatalf("policies in force with the registry down: %+v", s.Policies)
	}

	code, out, _ := karmor(t, "policy", "list", "--socket", k.Socket)
	if code != 0 || !strings.Contains(out, "FAILING (last good policies in force)") {
		t.Errorf("policy list with the registry down: exit %d\n%s", code, out)
	}
}

// TestRestartWithoutRegistry: a karmord restarted while the registry is unreachable enforces the
// set it cached, from its first answer.
func TestRestartWithoutRegistry(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/team/policies:prod"
	v1 := push(t, ref, false, "block-shell.yaml", testutil.BlockShellPolicy("block-shell", "", "web"))
	k := newKarmord(t, "", "--policy-ref", ref, "--policy-interval", interval, "--plain-http")
	k.Start(t)
	k.waitSource(t, "v1 in force", func(s agentapi.PolicySource) bool { return s.Digest == v1 })
	k.Stop(t)
	reg.Close()

	k.Start(t)
	s := k.policyState(t)
	if len(s.Sources) != 1 || s.Sources[0].Digest != v1 || !s.Sources[0].FromCache || len(s.Policies) != 1 || s.Generation != 1 {
		t.Fatalf("first answer of the restarted karmord: %+v", s)
	}
	k.report(t, "c-web", map[string]string{"app": "web"})
	k.waitPolicies(t, "c-web", blockShell)
	src := k.waitSource(t, "the failed poll reported", func(s agentapi.PolicySource) bool { return s.Failing })
	if src.Digest != v1 || !src.FromCache {
		t.Fatalf("after the first failed poll: %+v", src)
	}
	k.waitPolicies(t, "c-web", blockShell)
}

// TestDirectorySource: a watched directory; the match follows a modified file, a new file and a
// removed one, and a broken file leaves the last good set in force with the error visible.
func TestDirectorySource(t *testing.T) {
	dir := policyDir(t, "block-shell.yaml", testutil.BlockShellPolicy("block-shell", "", "web"))
	k := newKarmord(t, "", "--policy-dir", dir)
	k.Start(t)
	k.report(t, "c-web", map[string]string{"app": "web"})
	k.waitPolicies(t, "c-web", blockShell)

	writeAtomically(t, filepath.Join(dir, "block-shell.yaml"), testutil.BlockShellPolicy("block-shell", "", "api"))
	took := k.waitPolicies(t, "c-web")
	t.Logf("a modified file was in force within %v", took.Round(time.Millisecond))

	writeAtomically(t, filepath.Join(dir, "audit-api.yaml"), testutil.BlockShellPolicy("audit-api", "", "web"))
	k.waitPolicies(t, "c-web", auditAPI)

	writeAtomically(t, filepath.Join(dir, "zz-broken.yaml"), testutil.InvalidPolicy())
	src := k.waitSource(t, "the broken file reported", func(s agentapi.PolicySource) bool { return s.Failing })
	if !strings.Contains(src.LastError, "zz-broken.yaml") || src.Policies != 2 {
		t.Fatalf("with a broken file: %+v", src)
	}
	k.waitPolicies(t, "c-web", auditAPI)

	if err := os.Remove(filepath.Join(dir, "zz-broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "audit-api.yaml")); err != nil {
		t.Fatal(err)
	}
	k.waitPolicies(t, "c-web")
	if src := k.waitSource(t, "the source healthy again", func(s agentapi.PolicySource) bool { return !s.Failing }); src.Policies != 1 {
		t.Fatalf("after the removals: %+v", src)
	}
}
