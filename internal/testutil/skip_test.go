package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestUnavailableChild is run by TestUnavailable in a child process; alone it does nothing.
func TestUnavailableChild(t *testing.T) {
	if os.Getenv("KARMOR_TESTUTIL_CHILD") != "1" {
		return
	}
	Unavailable(t, "the part is missing")
}

// Unavailable skips loudly on a developer's machine and fails under EnvRequireAll=1, as in CI.
func TestUnavailable(t *testing.T) {
	run := func(requireAll string) (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailableChild$", "-test.v")
		cmd.Env = append(os.Environ(), "KARMOR_TESTUTIL_CHILD=1", EnvRequireAll+"="+requireAll)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	if err != nil || !strings.Contains(out, "--- SKIP") || !strings.Contains(out, "SKIP (loud): the part is missing") {
		t.Errorf("without %s: %v\n%s", EnvRequireAll, err, out)
	}
	out, err = run("1")
	if err == nil || !strings.Contains(out, "--- FAIL") || !strings.Contains(out, "the part is missing") {
		t.Errorf("with %s=1: %v\n%s", EnvRequireAll, err, out)
	}
}
