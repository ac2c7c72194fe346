package runtime

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestPodmanLabelsSelectPolicies: Podman 4 keeps `podman run --label` out of the OCI config and
// the hook's state; karmord reads them from libpod's real state database (--podman-db), so a
// KubeArmorPolicy selecting app=web applies to the container run with --label app=web, and not to
// one run with another label. Both `karmor containers -o json` and the agent API show it.
func TestPodmanLabelsSelectPolicies(t *testing.T) {
	testutil.RequirePodman(t)
	image := testutil.PodmanImage(t)
	db := podmanStateDB(t)

	policies := t.TempDir()
	if err := os.WriteFile(filepath.Join(policies, "web.yaml"), []byte(testutil.BlockShellPolicy("web-block", "", "web")), 0o600); err != nil {
		t.Fatal(err)
	}
	k := newKarmord(t, t.TempDir(), "--reconcile-interval", "1h", "--podman-db", db, "--policy-dir", policies)
	k.Start(t)
	hooksDir := installPodmanHook(t, k)

	run := func(name string, labels ...string) string {
		t.Helper()
		t.Cleanup(func() {
			_ = exec.Command("podman", "--hooks-dir", hooksDir, "rm", "--force", "--time", "0", name).Run()
		})
		args := []string{"--hooks-dir", hooksDir, "run", "-d", "--net=none", "--name", name}
		for _, l := range labels {
			args = append(args, "--label", l)
		}
		out, err := exec.Command("podman", append(args, image, "sleep", "1000")...).Output()
		if err != nil {
			t.Fatalf("podman run %s: %v\n%s", name, err, exitStderr(err))
		}
		return strings.TrimSpace(string(out))
	}
	webName := fmt.Sprintf("lbl-web-%d", os.Getpid())
	dbName := fmt.Sprintf("lbl-db-%d", os.Getpid())
	web := run(webName, "app=web", "tier=front")
	other := run(dbName, "app=db")

	list := k.waitTable(t, "both podman containers", func(l []agentapi.Container) bool { return find(l, web) != nil && find(l, other) != nil })
	w, o := find(list, web), find(list, other)
	if w.Source != agentapi.SourceHook || w.Annotations["io.container.manager"] != "libpod" {
		t.Fatalf("the web container did not come from the podman hook: source %q, annotations %v", w.Source, w.Annotations)
	}
	if want := map[string]string{"app": "web", "tier": "front"}; !maps.Equal(w.Labels, want) {
		t.Errorf("web container's labels %v, want %v (from %s)", w.Labels, want, db)
	}
	if len(w.Policies) != 1 || !strings.HasSuffix(w.Policies[0], "/web-block") {
		t.Errorf("web container's policies %v, want the web-block policy", w.Policies)
	}
	if want := map[string]string{"app": "db"}; !maps.Equal(o.Labels, want) {
		t.Errorf("db container's labels %v, want %v", o.Labels, want)
	}
	if len(o.Policies) != 0 {
		t.Errorf("the app=db container matched %v; the policy selects app=web", o.Policies)
	}

	// What a user sees, by name.
	out, err := exec.Command(testutil.Binary(t, "karmor"), "containers", webName, "-o", "json", "--socket", k.Socket).Output()
	if err != nil {
		t.Fatalf("karmor containers %s -o json: %v\n%s", webName, err, exitStderr(err))
	}
	var view struct {
		ID       string            `json:"id"`
		Labels   map[string]string `json:"labels"`
		Policies []string          `json:"policies"`
	}
	if err := json.Unmarshal(out, &view); err != nil {
		t.Fatalf("karmor containers -o json: %v\n%s", err, out)
	}
	if view.ID != web || view.Labels["app"] != "web" || len(view.Policies) != 1 || !strings.HasSuffix(view.Policies[0], "/web-block") {
		t.Errorf("karmor containers %s -o json: %s", webName, out)
	}

	// Reading the real database raised no problem.
	if log, err := os.ReadFile(k.LogPath); err != nil || strings.Contains(string(log), "podman's database") || strings.Contains(string(log), "unusable") {
		t.Errorf("karmord's log (%v) reports a problem with %s:\n%s", err, db, log)
	}
}

// podmanStateDB is rootful Podman's BoltDB state database on this machine, under its graph root.
func podmanStateDB(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("podman", "info", "--format", "{{.Store.GraphRoot}}").Output()
	if err != nil {
		t.Fatalf("podman info: %v\n%s", err, exitStderr(err))
	}
	db := filepath.Join(strings.TrimSpace(string(out)), "libpod", "bolt_state.db")
	if _, err := os.Stat(db); err != nil {
		testutil.Unavailable(t, "Podman's state is not in BoltDB at %s (%v): Podman 5 keeps it in SQLite, which karmord does not read", db, err)
	}
	return db
}

// installPodmanHook runs `karmor hook install --runtime podman` into a hooks.d directory of the
// test, reporting to k, and returns that directory for `podman --hooks-dir`.
func installPodmanHook(t *testing.T, k *karmord) string {
	t.Helper()
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks.d")
	out, err := exec.Command(testutil.Binary(t, "karmor"), "hook", "install", "--runtime", "podman", "--hooks-dir", hooksDir,
		"--hook-path", filepath.Join(dir, "bin", "karmor-hook"), "--hook-binary", testutil.Binary(t, "karmor-hook"),
		"--socket", k.Socket, "--spool-dir", k.SpoolDir).CombinedOutput()
	if err != nil {
		t.Fatalf("karmor hook install: %v\n%s", err, out)
	}
	return hooksDir
}
