package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
)

// maxExposure is the highest `systemd-analyze security` exposure a unit may have, in tenths as
// --threshold takes it (0 safest, 100 worst): 3.0, well inside what systemd calls "OK" (< 4.0).
const maxExposure = "30"

// unitFiles are the units deploy/systemd ships and the program each one runs.
var unitFiles = map[string]string{"karmord.service": "karmord", "karmor-nri.service": "karmor-nri"}

// unitWithProgram copies a shipped unit into dir with its program's path replaced by the built
// one: systemd-analyze verify checks that ExecStart's program exists.
func unitWithProgram(t *testing.T, dir, unit, program string, edit func(string) string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "deploy", "systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "ExecStart=/usr/local/bin/"+program+" ", "ExecStart="+testutil.Binary(t, program)+" ")
	if !strings.Contains(text, "ExecStart="+testutil.Binary(t, program)) {
		t.Fatalf("%s does not run /usr/local/bin/%s", unit, program)
	}
	if edit != nil {
		text = edit(text)
	}
	path := filepath.Join(dir, unit)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSystemdUnitsVerify: systemd-analyze verify finds nothing to say about the units (it exits 0
// even on unknown or misspelt settings, so any output fails), and their offline security
// exposure is at most maxExposure.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := testutil.RequireCommand(t, "systemd-analyze", "apt-get install systemd")
	for unit, program := range unitFiles {
		t.Run(unit, func(t *testing.T) {
			path := unitWithProgram(t, t.TempDir(), unit, program, nil)
			out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
			out, err = exec.Command(analyze, "security", "--offline=true", "--threshold="+maxExposure, path).CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("%s", lines[len(lines)-1])
			if err != nil {
				t.Errorf("systemd-analyze security %s: exposure above %s (%v)\n%s", unit, maxExposure, err, out)
			}
		})
	}
}

// TestSystemdVerifyCatchesMistakes: the check above can fail: a misspelt value is reported.
func TestSystemdVerifyCatchesMistakes(t *testing.T) {
	analyze := testutil.RequireCommand(t, "systemd-analyze", "apt-get install systemd")
	path := unitWithProgram(t, t.TempDir(), "karmord.service", "karmord", func(s string) string {
		return strings.Replace(s, "ProtectSystem=strict", "ProtectSystem=strictly", 1)
	})
	out, _ := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if !strings.Contains(string(out), "strictly") {
		t.Errorf("systemd-analyze verify said nothing of ProtectSystem=strictly:\n%s", out)
	}
}
