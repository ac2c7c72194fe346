package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A new process's temp dir removes those of processes that are gone, and only those.
func TestProcessTempDirRemovesDeadProcesses(t *testing.T) {
	prefix := "karmor-testutil-selftest-"
	dead := filepath.Join(os.TempDir(), prefix+"2147483646-x") // beyond pid_max: never a live pid
	live := filepath.Join(os.TempDir(), prefix+"1-x")          // pid 1 is always there
	other := filepath.Join(os.TempDir(), prefix+"notapid")
	for _, d := range []string{dead, live, other} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
	}
	d, err := processTempDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if !strings.HasPrefix(filepath.Base(d), prefix+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("new dir %s is not named after this process", d)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead process's dir %s is still there (%v)", dead, err)
	}
	for _, keep := range []string{live, other} {
		if _, err := os.Stat(keep); err != nil {
			t.Errorf("%s was removed: %v", keep, err)
		}
	}
}
