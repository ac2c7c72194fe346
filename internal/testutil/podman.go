package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// podmanImage is the busybox image the Podman tests run, imported by PodmanImage.
const podmanImage = "localhost/karmor-busybox:test"

// RequirePodman stops the test (see Unavailable) unless it runs as root with podman installed
// and /etc/containers/containers.conf has the settings Podman needs on these machines
// (/work/shared/docs/runtimes.md): runc as the runtime (crun refuses hybrid cgroups) and
// explicit nofile/nproc ulimits. .ci/run installs and writes all of it.
func RequirePodman(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "podman", "apt-get install podman")
	const path = "/etc/containers/containers.conf"
	b, err := os.ReadFile(path)
	if err != nil {
		Unavailable(t, "%s unreadable (%v); it needs [engine] runtime = \"runc\" and [containers] default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"] (.ci/run writes them)", path, err)
	}
	for setting, re := range map[string]string{
		`[engine] runtime = "runc"`:                `(?m)^\s*runtime\s*=\s*"runc"`,
		`[containers] default_ulimits with nofile`: `(?m)^\s*default_ulimits\s*=.*nofile=`,
	} {
		if !regexp.MustCompile(re).Match(b) {
			Unavailable(t, "%s lacks %s, without which Podman cannot start containers here (.ci/run writes it)", path, setting)
		}
	}
}

// PodmanImage returns a local busybox image for `podman run`, importing it from BusyboxRootfs
// when absent (no image can be pulled here).
func PodmanImage(t testing.TB) string {
	t.Helper()
	if exec.Command("podman", "image", "exists", podmanImage).Run() == nil {
		return podmanImage
	}
	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if out, err := exec.Command("tar", "-C", BusyboxRootfs(t), "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar the busybox rootfs: %v\n%s", err, out)
	}
	if out, err := exec.Command("podman", "import", tarball, podmanImage).CombinedOutput(); err != nil {
		Unavailable(t, "podman cannot import a busybox image here (%v: %s); see /work/shared/docs/runtimes.md", err, out)
	}
	return podmanImage
}
