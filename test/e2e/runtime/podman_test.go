package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// requirePodmanSettings skips loudly unless /etc/containers/containers.conf has the settings
// Podman needs on these machines (see /work/shared/docs/runtimes.md): runc as the runtime (crun
// refuses hybrid cgroups) and explicit nofile/nproc ulimits.
func requirePodmanSettings(t *testing.T) {
	t.Helper()
	const path = "/etc/containers/containers.conf"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("SKIP (loud): %s unreadable (%v); it needs [engine] runtime = \"runc\" and [containers] default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"] (.ci/run writes them)", path, err)
	}
	for setting, re := range map[string]string{
		`[engine] runtime = "runc"`:                `(?m)^\s*runtime\s*=\s*"runc"`,
		`[containers] default_ulimits with nofile`: `(?m)^\s*default_ulimits\s*=.*nofile=`,
	} {
		if !regexp.MustCompile(re).Match(b) {
			t.Skipf("SKIP (loud): %s lacks %s, without which Podman cannot start containers here (.ci/run writes it)", path, setting)
		}
	}
}

// podmanImage returns a local busybox image, importing one from the busybox rootfs when absent.
func podmanImage(t *testing.T) string {
	t.Helper()
	const image = "localhost/karmor-e2e-busybox:test"
	if exec.Command("podman", "image", "exists", image).Run() == nil {
		return image
	}
	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if out, err := exec.Command("tar", "-C", testutil.BusyboxRootfs(t), "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar the busybox rootfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("podman", "import", tarball, image).CombinedOutput(); err != nil {
		t.Skipf("SKIP (loud): podman cannot import a busybox image here (%v: %s); see /work/shared/docs/runtimes.md", err, out)
	}
	return image
}

// TestPodmanNameSeenByKarmord: with the hooks.d files `karmor hook install --runtime podman`
// writes, a `podman run --name` container reaches karmord under its Podman name, and its removal
// takes it out of the table.
func TestPodmanNameSeenByKarmord(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "podman", "apt-get install podman")
	requirePodmanSettings(t)
	image := podmanImage(t)

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
