package hook

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/hook/hooktest"
	"github.com/karmor/karmor/internal/testutil"
)

// TestHookStaysSmall keeps karmor-hook, which runs on every container start, free of the heavy
// dependencies the rest of karmor uses: it may link only the standard library, the runtime-spec
// types and karmor's own small packages.
func TestHookStaysSmall(t *testing.T) {
	testutil.RequireCommand(t, "go", "the Go toolchain")
	cmd := exec.Command("go", "list", "-deps", "./cmd/karmor-hook")
	cmd.Dir = testutil.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := []string{
		"github.com/opencontainers/runtime-spec/specs-go",
		"github.com/karmor/karmor/cmd/karmor-hook",
		"github.com/karmor/karmor/internal/hook",
		"github.com/karmor/karmor/internal/containerinfo",
		"github.com/karmor/karmor/internal/version",
		"github.com/karmor/karmor/pkg/agentapi",
	}
	var n int
	for dep := range strings.FieldsSeq(string(out)) {
		n++
		first, _, _ := strings.Cut(dep, "/")
		if !strings.Contains(first, ".") || strings.HasPrefix(dep, "vendor/") {
			continue // standard library
		}
		ok := false
		for _, a := range allowed {
			ok = ok || dep == a
		}
		if !ok {
			t.Errorf("karmor-hook links %s; keep the hook to the standard library, runtime-spec and agentapi", dep)
		}
	}
	if n < len(allowed) {
		t.Fatalf("go list printed %d packages, fewer than the hook's own %d", n, len(allowed))
	}
}

// TestBinaryLeavesNoChildHoldingPipes runs the real binary the way a runtime does, with pipes
// for stdout and stderr: when the hook exits, nothing of it may keep those pipes open, or the
// runtime would wait on them.
func TestBinaryLeavesNoChildHoldingPipes(t *testing.T) {
	bin := testutil.Binary(t, "karmor-hook")
	s := newScene(t, nil, nil)
	for _, socket := range []string{hooktest.Start(t).Socket, filepath.Join(t.TempDir(), "none.sock")} {
		spool := t.TempDir()
		cmd := exec.Command(bin, "--socket", socket, "--spool-dir", spool, "--proc-root", s.proc, "--verbose", "createRuntime")
		cmd.Stdin = s.stdin(t)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.WaitDelay = 5 * time.Second
		err := cmd.Run()
		if errors.Is(err, exec.ErrWaitDelay) {
			t.Fatalf("karmor-hook exited but its stdout/stderr stayed open")
		}
		if err != nil {
			t.Fatalf("karmor-hook: %v\n%s", err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "reported") && !strings.Contains(stderr.String(), "spooled") {
			t.Errorf("verbose run logged neither a report nor a spool: %q", stderr.String())
		}
	}
}
