package agent

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/kubearmor/kasocktest"
	"github.com/karmor/karmor/pkg/agentapi"
)

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// probe GETs an endpoint of karmord's health server and decodes its answer.
func probe(t *testing.T, addr, path string) (int, agentapi.Health) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var h agentapi.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("GET %s: body: %v", path, err)
	}
	return resp.StatusCode, h
}

func findCheck(h agentapi.Health, name string) (agentapi.HealthCheck, bool) {
	for _, c := range h.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return agentapi.HealthCheck{}, false
}

// TestHealthFollowsPolicySourcesAndKubeArmor: karmord with a loaded policy directory, a
// registry source that never answered and a KubeArmor feed is live but not ready, and says why
// on the socket and on both HTTP endpoints; once KubeArmor is there, only the registry is missing.
func TestHealthFollowsPolicySourcesAndKubeArmor(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.HealthAddr = freeAddr(t)
	cfg.PolicyDirs = []string{t.TempDir()}
	cfg.PolicyTransport.PlainHTTP = true
	cfg.PolicyRefs = []string{freeAddr(t) + "/team/policies:prod"} // nothing listens there
	cfg.KubeArmorSocket = kubearmorSocket(t)
	runAgent(t, cfg)

	h, err := client(cfg).Health(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !h.Live || h.Ready {
		t.Fatalf("health %+v: want live and not ready", h)
	}
	var dirOK, refFailing bool
	for _, c := range h.Checks {
		if c.Name == checkPolicySource && strings.HasPrefix(c.Source, "dir:") {
			dirOK = c.OK
		}
		if c.Name == checkPolicySource && strings.HasPrefix(c.Source, "oci:") {
			refFailing = !c.OK && c.Detail != ""
		}
	}
	if !dirOK || !refFailing {
		t.Errorf("policy source checks: %+v", h.Checks)
	}
	if c, ok := findCheck(*h, checkKubeArmor); !ok || c.OK {
		t.Errorf("kubearmor check with no KubeArmor: %+v", c)
	}
	if c, ok := findCheck(*h, checkReconcile); !ok || !c.OK {
		t.Errorf("reconcile check after Ready: %+v", c)
	}

	if code, body := probe(t, cfg.HealthAddr, "/healthz"); code != http.StatusOK || !body.Live {
		t.Errorf("/healthz: %d %+v", code, body)
	}
	if code, body := probe(t, cfg.HealthAddr, "/readyz"); code != http.StatusServiceUnavailable || body.Ready {
		t.Errorf("/readyz: %d %+v", code, body)
	}

	kasocktest.Start(t, cfg.KubeArmorSocket)
	waitFor(t, "the kubearmor check to pass", func() bool {
		h, err := client(cfg).Health(ctxT(t))
		if err != nil {
			return false
		}
		c, _ := findCheck(*h, checkKubeArmor)
		return c.OK
	})
	code, body := probe(t, cfg.HealthAddr, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the registry never reached: %d", code)
	}
	for _, c := range body.Checks {
		if !c.OK && !(c.Name == checkPolicySource && strings.HasPrefix(c.Source, "oci:")) {
			t.Errorf("failing check besides the registry: %+v", c)
		}
	}
}

// TestReadyWithAllChecksPassing: a policy directory and no other source: ready, 200 on both.
func TestReadyWithAllChecksPassing(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.MetricsAddr = freeAddr(t) // the probes are served beside the metrics too
	cfg.PolicyDirs = []string{t.TempDir()}
	runAgent(t, cfg)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := probe(t, cfg.MetricsAddr, path); code != http.StatusOK || !body.Live || !body.Ready {
			t.Errorf("%s: %d %+v", path, code, body)
		}
	}
	resp, err := http.Post("http://"+cfg.MetricsAddr+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d", resp.StatusCode)
	}
}

// TestLivenessFailsWhenTheSocketIsGone: a socket removed or replaced under karmord leaves the
// hooks without an agent; that is the one failure a restart repairs.
func TestLivenessFailsWhenTheSocketIsGone(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.HealthAddr = freeAddr(t)
	a := runAgent(t, cfg)
	if h := a.Health(); !h.Live || !h.Ready {
		t.Fatalf("fresh agent: %+v", h)
	}
	if err := os.Remove(cfg.Socket); err != nil {
		t.Fatal(err)
	}
	code, body := probe(t, cfg.HealthAddr, "/healthz")
	c, _ := findCheck(body, checkSocket)
	if code != http.StatusServiceUnavailable || body.Live || c.OK || !c.Liveness || !strings.Contains(c.Detail, "gone") {
		t.Errorf("/healthz with the socket removed: %d %+v", code, body)
	}
	// Another file at the path is not karmord's socket either.
	if err := os.WriteFile(cfg.Socket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if h := a.Health(); h.Live {
		t.Errorf("a plain file at the socket's path passes: %+v", h)
	}
	os.Remove(cfg.Socket)
}

func TestHealthAddrMustBeHostPort(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.HealthAddr = filepath.Join(t.TempDir(), "health")
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--health-addr") {
		t.Errorf("--health-addr without a port: %v", err)
	}
}
