package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
)

// TestExitCodes runs the real binary: flag mistakes exit 2, configuration it cannot serve exits 1,
// both with a message saying what to change.
func TestExitCodes(t *testing.T) {
	bin := testutil.Binary(t, "karmord")
	dir := t.TempDir()
	paths := []string{"--socket", filepath.Join(dir, "k.sock"), "--spool-dir", filepath.Join(dir, "spool"), "--state-dir", filepath.Join(dir, "state")}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--log-format", "xml"}, 2, "--log-format"},
		{[]string{"--log-level", "loud"}, 2, "--log-level"},
		{[]string{"--no-such-flag"}, 2, "unknown flag"},
		{[]string{"--allow-uid", "-1"}, 2, "allow-uid"},
		{[]string{"--socket-mode", "rw"}, 2, "--socket-mode"},
		{[]string{"--socket-mode", "0755"}, 1, "no execute"},
		{[]string{"--socket-mode", "0600", "--allow-uid", "1000"}, 1, "--socket-group"},
		{[]string{"--socket-group", "no-such-group-karmor"}, 1, "--socket-group"},
		{[]string{"serve"}, 2, "takes no arguments"},
		{[]string{"--metrics-addr", "0.0.0.0:9464"}, 1, "--metrics-allow-remote"},
		{[]string{"--proc-root", "proc"}, 1, "absolute"},
		{[]string{"--node-label", "zone"}, 2, "KEY=VALUE"},
		{[]string{"--node-labels-file", filepath.Join(dir, "absent")}, 2, "node labels file"},
		{[]string{"--registry-username", "ci"}, 2, "--registry-password-file"},
		{[]string{"--registry-username", "ci", "--registry-password-file", filepath.Join(dir, "absent")}, 1, "password file"},
		{[]string{"--policy-ref", "registry.example/p:bad tag"}, 1, "--policy-ref"},
		{[]string{"--policy-interval", "-1s"}, 1, "--policy-interval"},
	} {
		cmd := exec.Command(bin, append(append([]string{}, paths...), tc.args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("karmord %v: %v, want exit %d with %q:\n%s", tc.args, err, tc.code, tc.want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "k.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a karmord that refused its configuration left a socket")
	}
}
