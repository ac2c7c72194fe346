package testutil

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// TestKarmordLifecycle: a karmord prepared but not started does not answer; started, it does;
// killed, it leaves its socket behind and a new start takes it over; SIGTERM ends it cleanly.
func TestKarmordLifecycle(t *testing.T) {
	k := NewKarmord(t, KarmordOptions{Args: []string{"--reconcile-interval", "1h"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := k.Client.List(ctx); err == nil {
		t.Fatal("a karmord that was not started answered")
	}

	k.Start(t)
	k.Kill(t)
	if _, err := os.Stat(k.Socket); err != nil {
		t.Fatalf("after SIGKILL the socket should stay behind: %v", err)
	}
	if _, err := k.Client.List(ctx); err == nil {
		t.Fatal("a killed karmord answered")
	}

	k.Start(t)
	if err := k.Signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("karmord exited with %v after SIGTERM", err)
	}
	if err := k.Signal(t, syscall.SIGTERM); err != nil {
		t.Fatalf("signalling a stopped karmord: %v", err)
	}
}

// TestRuncHookedBundle: a container run by the private runc from a hooked bundle is listed by
// runc as running and reported by karmor-hook to karmord.
func TestRuncHookedBundle(t *testing.T) {
	r := NewRunc(t)
	k := NewKarmord(t, KarmordOptions{RuntimeRoots: []string{r.Root}, Args: []string{"--reconcile-interval", "1h"}, Start: true})
	id := fmt.Sprintf("tu%d", os.Getpid())
	r.Must(t, "run", "-d", "--bundle", HookedBundle(t, k, []string{"sleep", "1000"}, nil), id)

	e, ok := r.List(t)[id]
	if !ok || e.Status != "running" || e.PID <= 0 {
		t.Fatalf("runc list: %s is %+v (listed %t), want running with a pid", id, e, ok)
	}
	c, err := k.Client.Get(t.Context(), id)
	if err != nil || c.PID != e.PID || c.Source != agentapi.SourceHook {
		t.Fatalf("karmord's %s: %+v, %v; want pid %d from the hook", id, c, err, e.PID)
	}
	if _, err := r.Run("no-such-command"); err == nil {
		t.Fatal("runc accepted a command it does not have")
	}
}
