package policy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
)

// TestMakeDemo runs scripts/demo.sh, what `make demo` runs, with freshly built programs: it must
// pass every one of its checks, and leave nothing behind in its temporary directory.
func TestMakeDemo(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "runc", "apt-get install runc")
	if _, err := os.Stat("/bin/busybox"); err != nil {
		testutil.Unavailable(t, "/bin/busybox missing; install busybox-static (.ci/run does)")
	}
	repo := testutil.RepoRoot(t)
	bin := t.TempDir()
	for _, prog := range []string{"karmor", "karmord", "karmor-hook"} {
		if err := os.Symlink(testutil.Binary(t, prog), filepath.Join(bin, prog)); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "karmor-demo-registry"), "./demo/registry")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the demo registry: %v\n%s", err, out)
	}

	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", "demo.sh"))
	cmd.Env = append(isolatedEnv(t), "BIN="+bin, "TMPDIR="+tmp)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err := cmd.Run()
	if err != nil || !strings.Contains(out.String(), "Demo passed") {
		t.Fatalf("scripts/demo.sh: %v\n%s", err, out.String())
	}
	t.Logf("scripts/demo.sh passed in %v", time.Since(began).Round(100*time.Millisecond))
	for _, want := range []string{"ok: web1 -> [\"KubeArmorPolicy/default/block-shell\"]", "ok: web1 -> []", "FAILING (last good policies in force)",
		"FAILING (cached policies in force)", "karmord_policy_generation 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the demo left %d entries in its TMPDIR (%s...)", len(left), left[0].Name())
	}
}
