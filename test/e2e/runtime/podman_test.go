package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestPodmanNameSeenByKarmord: with the hooks.d files `karmor hook install --runtime podman`
// writes, a `podman run --name` container reaches karmord under its Podman name, and its removal
// takes it out of the table.
func TestPodmanNameSeenByKarmord(t *testing.T) {
	testutil.RequirePodman(t)
	image := testutil.PodmanImage(t)

	noRuntime := t.TempDir() // karmord learns this container from the hook alone
	k := newKarmord(t, noRuntime, "--reconcile-interval", "1h")
	k.Start(t)
	dir := t.TempDir()
	hooksDir := filepath.Join(dir, "hooks.d")
	out, err := exec.Command(testutil.Binary(t, "karmor"), "hook", "install", "--runtime", "podman", "--hooks-dir", hooksDir,
		"--hook-path", filepath.Join(dir, "bin", "karmor-hook"), "--hook-binary", testutil.Binary(t, "karmor-hook"),
		"--socket", k.Socket, "--spool-dir", k.SpoolDir).CombinedOutput()
	if err != nil {
		t.Fatalf("karmor hook install: %v\n%s", err, out)
	}

	// The brief's name is web1; the pid keeps concurrent runs on one machine apart.
	name := fmt.Sprintf("web1-%d", os.Getpid())
	t.Cleanup(func() {
		_ = exec.Command("podman", "--hooks-dir", hooksDir, "rm", "--force", "--time", "0", name).Run()
	})
	out, err = exec.Command("podman", "--hooks-dir", hooksDir, "run", "-d", "--net=none", "--name", name, image, "sleep", "1000").Output()
	if err != nil {
		t.Fatalf("podman run: %v\n%s", err, exitStderr(err))
	}
	id := strings.TrimSpace(string(out))
	list := k.waitTable(t, "the podman container", func(l []agentapi.Container) bool { return find(l, id) != nil })
	c := find(list, id)
	if c.Name != name || c.Image != image || c.Source != agentapi.SourceHook || c.PID <= 0 || c.Annotations["io.container.manager"] != "libpod" {
		t.Fatalf("karmord's podman container: name %q image %q source %q pid %d annotations %v", c.Name, c.Image, c.Source, c.PID, c.Annotations)
	}
	inspect, err := exec.Command("podman", "inspect", "--format", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatalf("podman inspect: %v", err)
	}
	if got := strings.TrimSpace(string(inspect)); got != fmt.Sprint(c.PID) {
		t.Fatalf("karmord says pid %d, podman %s", c.PID, got)
	}
	// By name, as `karmor containers NAME` asks.
	if got, err := k.Client.Get(t.Context(), name); err != nil || got.ID != id {
		t.Fatalf("get by name %s: %+v, %v", name, got, err)
	}

	if out, err := exec.Command("podman", "--hooks-dir", hooksDir, "rm", "--force", "--time", "0", name).CombinedOutput(); err != nil {
		t.Fatalf("podman rm: %v\n%s", err, out)
	}
	k.waitTable(t, "the removed podman container gone", func(l []agentapi.Container) bool { return find(l, id) == nil })
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
