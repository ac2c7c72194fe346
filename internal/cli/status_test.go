package cli

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/agent"
)

// TestStatusReadyAndNot: a real karmord with only a policy directory is ready (exit 0); one
// following a registry that never answered is not (exit 1), and both outputs say which check
// fails; a karmord that is not running is exit 1 with the reason in the JSON.
func TestStatusReadyAndNot(t *testing.T) {
	policies := t.TempDir()
	sock, _ := startConfiguredAgent(t, func(c *agent.Config) { c.PolicyDirs = []string{policies} })
	code, out, errOut := containersCLI("status", "--socket", sock)
	if code != ExitOK || !strings.Contains(out, "karmord at "+sock+": ready") || !strings.Contains(out, "ok    policy_source dir:"+policies) {
		t.Fatalf("ready karmord: exit %d\n%s%s", code, out, errOut)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := ln.Addr().String()
	ln.Close()
	sock2, _ := startConfiguredAgent(t, func(c *agent.Config) {
		c.PolicyRefs = []string{unreachable + "/team/policies:prod"}
		c.PolicyTransport.PlainHTTP = true
	})
	code, out, _ = containersCLI("status", "--socket", sock2)
	if code != ExitFailure || !strings.Contains(out, ": not ready") || !strings.Contains(out, "FAIL  policy_source oci:"+unreachable) {
		t.Errorf("karmord without its registry: exit %d\n%s", code, out)
	}
	code, out, _ = containersCLI("status", "--socket", sock2, "-o", "json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != ExitFailure || !rep.Live || rep.Ready || len(rep.Checks) < 3 {
		t.Errorf("-o json: exit %d, %v\n%s", code, err, out)
	}

	absent := filepath.Join(t.TempDir(), "absent.sock")
	code, out, _ = containersCLI("status", "--socket", absent, "-o", "json")
	rep = statusReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != ExitFailure || rep.Error == "" || rep.Live || rep.Ready {
		t.Errorf("no karmord: exit %d, %v\n%s", code, err, out)
	}
	if code, _, _ := containersCLI("status", "-o", "yaml"); code != ExitUsage {
		t.Errorf("-o yaml: exit %d, want %d", code, ExitUsage)
	}
}
