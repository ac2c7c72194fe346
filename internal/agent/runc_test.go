package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
)

// runcCmd runs runc with its state under root and returns its output. The output goes through a
// file, not a pipe: a detached container inherits runc's stdout and would hold a pipe open.
func runcCmd(t testing.TB, root string, args ...string) []byte {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "runc-out-")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "runc", append([]string{"--root", root}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	if err != nil {
		t.Fatalf("runc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return b
}

func runcPID(t testing.TB, root, id string) int {
	t.Helper()
	var st struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(runcCmd(t, root, "state", id), &st); err != nil {
		t.Fatal(err)
	}
	return st.Pid
}

func nsInode(t testing.TB, pid int, kind string) uint64 {
	t.Helper()
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, kind))
	if err != nil {
		t.Fatal(err)
	}
	var ino uint64
	if _, err := fmt.Sscanf(target, kind+":[%d]", &ino); err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	return ino
}

// TestReconcileWithRealRunc: containers started by real runc while no agent ran appear at the
// agent's start with the pid and namespaces runc and /proc report; one that was killed is not
// reported, and one killed while the agent runs is dropped by the next pass.
func TestReconcileWithRealRunc(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireCommand(t, "runc", "apt-get install runc")
	root, err := os.MkdirTemp("", "karmor-runc-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	bundle := testutil.Bundle(t, []string{"sleep", "1000"}, nil)
	prefix := fmt.Sprintf("kt%d-", os.Getpid())
	idLive, idKilled, idLater := prefix+"live", prefix+"killed", prefix+"later"
	for _, id := range []string{idLive, idKilled, idLater} {
		t.Cleanup(func() { _ = exec.Command("runc", "--root", root, "delete", "-f", id).Run() })
		runcCmd(t, root, "run", "-d", "--bundle", bundle, id)
	}
	// Killed but not deleted: runc keeps its state.json, the process is gone (or a zombie).
	runcCmd(t, root, "kill", idKilled, "KILL")
	waitFor(t, "runc to see the killed container stopped", func() bool {
		return strings.Contains(string(runcCmd(t, root, "state", idKilled)), `"stopped"`)
	})

	cfg, _ := testConfig(t)
	cfg.RuntimeRoots = []string{root}
	a := runAgent(t, cfg)
	list, err := client(cfg).List(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(list); got != idLater+","+idLive {
		t.Fatalf("table after start %q, want %s,%s", got, idLater, idLive)
	}
	for _, c := range list {
		pid := runcPID(t, root, c.ID)
		if c.PID != pid || c.Source != "reconcile" || c.Bundle != bundle {
			t.Errorf("%s: pid %d (runc says %d), source %q, bundle %q", c.ID, c.PID, pid, c.Source, c.Bundle)
		}
		for _, kind := range []string{"pid", "mnt", "net", "uts", "ipc"} {
			if got, want := c.Namespaces[kind], nsInode(t, pid, kind); got != want {
				t.Errorf("%s: %s namespace %d, /proc says %d", c.ID, kind, got, want)
			}
		}
		if c.PIDStart == 0 {
			t.Errorf("%s: no pid start time", c.ID)
		}
	}

	runcCmd(t, root, "kill", idLater, "KILL")
	waitFor(t, "runc to see it stopped", func() bool {
		return strings.Contains(string(runcCmd(t, root, "state", idLater)), `"stopped"`)
	})
	if _, removed := a.reconcile(); removed != 1 {
		t.Fatalf("reconcile after a kill removed %d, want 1", removed)
	}
	list, _ = a.snapshot()
	if ids(list) != idLive {
		t.Fatalf("after kill: %s", ids(list))
	}
}
