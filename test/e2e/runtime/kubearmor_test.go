package runtime

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/agentapi"
)

// TestRuncContainersReachRealKubeArmor: the real KubeArmor (-useOCIHooks, no runtime socket)
// learns runc containers from karmord alone. karmord runs first with no containers: KubeArmor's
// ready gate must open anyway, or it would refuse the first live container. A KubeArmor killed
// and restarted gets every live container again, including one started while it was down, and
// a stop reaches it as a delete. KubeArmor's own log is the witness. This host cannot enforce
// (see ../shared/docs/kubearmor.md): test/e2e/kubearmor proves enforcement in a QEMU guest.
func TestRuncContainersReachRealKubeArmor(t *testing.T) {
	r := testutil.NewRunc(t)
	ka := testutil.StartKubeArmor(t, testutil.KubeArmorOptions{})
	ka.Stop(t) // the test starts it again once karmord runs
	k := newKarmord(t, r.Root, "--reconcile-interval", "1h", "--kubearmor-socket", testutil.KubeArmorSocket)
	k.Start(t)
	ka.Start(t)

	prefix := fmt.Sprintf("ka%d-", os.Getpid()%100000)
	first, second := prefix+"a", prefix+"b"
	r.Must(t, "run", "-d", "--bundle", hookedBundle(t, k, "sleep", "1000"), first)
	t.Cleanup(func() { _, _ = r.Run("delete", "--force", first) })
	waitKubeArmor(t, ka, added(first), 1)
	k.waitTable(t, first+" acknowledged by KubeArmor", func(l []agentapi.Container) bool {
		c := find(l, first)
		return c != nil && c.KubeArmor == "yes"
	})

	// KubeArmor crashes; a container starts meanwhile and is not held up by it.
	ka.Kill(t)
	began := time.Now()
	r.Must(t, "run", "-d", "--bundle", hookedBundle(t, k, "sleep", "1000"), second)
	t.Cleanup(func() { _, _ = r.Run("delete", "--force", second) })
	t.Logf("runc run -d with KubeArmor down took %v", time.Since(began))
	k.waitTable(t, second+" known, KubeArmor away", func(l []agentapi.Container) bool {
		c := find(l, second)
		return c != nil && c.KubeArmor == "away"
	})

	ka.Start(t)
	waitKubeArmor(t, ka, added(first), 2)
	waitKubeArmor(t, ka, added(second), 1)
	k.waitTable(t, "both acknowledged by the new KubeArmor", func(l []agentapi.Container) bool {
		a, b := find(l, first), find(l, second)
		return a != nil && b != nil && a.KubeArmor == "yes" && b.KubeArmor == "yes"
	})

	r.Must(t, "kill", second, "KILL")
	r.Must(t, "delete", "--force", second)
	waitKubeArmor(t, ka, "Detected a container (removed/"+short(second), 1)
	// "Failed to create container : container ID is empty" is the empty detached message that
	// opens the ready gate; any other refusal is a container KubeArmor did not take.
	if refused := refusedContainer.FindAllString(ka.Log(), -1); len(refused) != 0 {
		t.Errorf("KubeArmor refused containers: %q", refused)
	}
}

var refusedContainer = regexp.MustCompile(`Failed to create container [^:\n]+:[^\n]*`)

func short(id string) string { return id[:min(12, len(id))] }

func added(id string) string { return "Detected a container (added/" + short(id) }

// waitKubeArmor waits until KubeArmor's log has line at least n times.
func waitKubeArmor(t *testing.T, ka *testutil.KubeArmor, line string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(ka.Log(), line) < n {
		if time.Now().After(deadline) {
			t.Fatalf("KubeArmor's log has %q %d time(s), want %d:\n%s", line, strings.Count(ka.Log(), line), n,
				testutil.TailFile(ka.LogPath, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
