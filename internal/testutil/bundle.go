package testutil

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

// BusyboxRootfs returns a shared read-only root filesystem made from /bin/busybox
// (Debian's busybox-static), built once per test process.
func BusyboxRootfs(t testing.TB) string {
	t.Helper()
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		Unavailable(t, "/bin/busybox missing; install busybox-static (.ci/run does)")
	}
	rootfsOnce.Do(func() {
		d, err := processTempDir("karmor-rootfs-")
		if err != nil {
			rootfsErr = err
			return
		}
		bin := filepath.Join(d, "bin")
		if rootfsErr = os.MkdirAll(bin, 0o755); rootfsErr != nil {
			return
		}
		data, err := os.ReadFile(busybox)
		if err != nil {
			rootfsErr = err
			return
		}
		if rootfsErr = os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); rootfsErr != nil {
			return
		}
		for _, c := range []string{"sh", "echo", "sleep", "cat", "ls", "true", "false"} {
			if rootfsErr = os.Symlink("busybox", filepath.Join(bin, c)); rootfsErr != nil {
				return
			}
		}
		for _, sub := range []string{"proc", "dev", "sys", "tmp", "etc"} {
			if rootfsErr = os.MkdirAll(filepath.Join(d, sub), 0o755); rootfsErr != nil {
				return
			}
		}
		rootfsDir = d
	})
	if rootfsErr != nil {
		t.Fatalf("busybox rootfs: %v", rootfsErr)
	}
	return rootfsDir
}

// Bundle makes an OCI bundle in a new temp dir whose process runs args in the busybox rootfs,
// starting from `runc spec` (so the config is what runc users have), with terminal off and the
// rootfs read-only. edit, when non-nil, changes the spec before it is written.
func Bundle(t testing.TB, args []string, edit func(*rspec.Spec)) string {
	t.Helper()
	RequireCommand(t, "runc", "apt-get install runc")
	rootfs := BusyboxRootfs(t)
	dir := t.TempDir()
	cmd := exec.Command("runc", "spec")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec rspec.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Root = &rspec.Root{Path: rootfs, Readonly: true}
	spec.Process.Terminal = false
	spec.Process.Args = args
	if edit != nil {
		edit(&spec)
	}
	out, err := json.MarshalIndent(&spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
