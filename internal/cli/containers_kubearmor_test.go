package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/agent"
	"github.com/karmor/karmor/internal/kubearmor/kasocktest"
)

// TestContainersKubeArmorColumn: with karmord feeding KubeArmor, `karmor containers` says whether
// KubeArmor has each container (away, then yes once a KubeArmor appears), in the table and in
// JSON; without the feed the column and the key are absent.
func TestContainersKubeArmorColumn(t *testing.T) {
	dir, err := os.MkdirTemp("", "ka-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	kaSock := filepath.Join(dir, "kubearmor", "ka.sock")
	sock, _ := startConfiguredAgent(t, func(c *agent.Config) { c.KubeArmorSocket = kaSock })
	reportToAgent(t, sock, webContainerStart())

	state := func() (header, row string, obj map[string]any) {
		t.Helper()
		code, out, errOut := containersCLI("containers", "--socket", sock)
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			t.Fatalf("table:\n%s", out)
		}
		code, out, errOut = containersCLI("containers", "--socket", sock, "-o", "json")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
			t.Fatalf("json: %v\n%s", err, out)
		}
		return lines[0], lines[1], got[0]
	}
	header, row, obj := state()
	if !strings.Contains(header, "KUBEARMOR") || !strings.Contains(row, "away") || obj["kubearmor"] != "away" {
		t.Fatalf("with KubeArmor absent:\n%s\n%s\n%v", header, row, obj)
	}

	kasocktest.Start(t, kaSock)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, row, obj = state()
		if strings.Contains(row, "yes") && obj["kubearmor"] == "yes" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("KubeArmor appeared but the container is still shown as:\n%s\n%v", row, obj)
		}
		time.Sleep(50 * time.Millisecond)
	}

	plain, _ := startContainersAgent(t)
	reportToAgent(t, plain, webContainerStart())
	code, out, _ := containersCLI("containers", "--socket", plain)
	if code != ExitOK || strings.Contains(out, "KUBEARMOR") {
		t.Fatalf("without the feed: exit %d\n%s", code, out)
	}
	code, out, _ = containersCLI("containers", "--socket", plain, "-o", "json")
	if code != ExitOK || strings.Contains(out, `"kubearmor"`) {
		t.Fatalf("without the feed, JSON: exit %d\n%s", code, out)
	}
}
