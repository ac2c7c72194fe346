package agent

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

func TestConfigValidation(t *testing.T) {
	base, _ := testConfig(t)
	cases := []struct {
		name string
		edit func(*Config)
		want string // "" when valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"metrics on loopback v4", func(c *Config) { c.MetricsAddr = "127.0.0.1:9464" }, ""},
		{"metrics on loopback v6", func(c *Config) { c.MetricsAddr = "[::1]:9464" }, ""},
		{"metrics on localhost", func(c *Config) { c.MetricsAddr = "localhost:9464" }, ""},
		{"metrics on every interface", func(c *Config) { c.MetricsAddr = ":9464" }, "not a loopback address"},
		{"metrics on 0.0.0.0", func(c *Config) { c.MetricsAddr = "0.0.0.0:9464" }, "--metrics-allow-remote"},
		{"metrics on a host name", func(c *Config) { c.MetricsAddr = "example.com:9464" }, "not a loopback address"},
		{"metrics remote when forced", func(c *Config) { c.MetricsAddr = "0.0.0.0:9464"; c.MetricsAllowRemote = true }, ""},
		{"metrics without a port", func(c *Config) { c.MetricsAddr = "127.0.0.1" }, "want host:port"},
		{"relative socket", func(c *Config) { c.Socket = "k.sock" }, "--socket"},
		{"relative spool", func(c *Config) { c.SpoolDir = "spool" }, "--spool-dir"},
		{"relative runtime root", func(c *Config) { c.RuntimeRoots = []string{"run/runc"} }, "--runtime-root"},
		{"bad glob", func(c *Config) { c.RuntimeRoots = []string{"/run/[x"} }, "glob"},
		{"negative interval", func(c *Config) { c.ReconcileInterval = -time.Second }, "reconcile interval"},
	}
	for _, tc := range cases {
		cfg := base
		tc.edit(&cfg)
		_, err := New(cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	d := Config{}.withDefaults()
	if d.Socket != agentapi.DefaultSocket || d.SpoolDir != agentapi.DefaultSpoolDir || len(d.RuntimeRoots) != 3 || d.ProcRoot != "/proc" {
		t.Fatalf("defaults: %+v", d)
	}
}

// freeLoopbackAddr finds a port nobody listens on (another process may take it before the agent
// does; the test then fails loudly rather than passing wrongly).
func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestMetricsServedOnLoopback(t *testing.T) {
	cfg, _ := testConfig(t)
	cfg.MetricsAddr = freeLoopbackAddr(t)
	runAgent(t, cfg)
	cl := client(cfg)
	ctx := ctxT(t)
	ev := hookStart("m1", 0, "m")
	ev.HookDuration = 4 * time.Millisecond
	if _, err := cl.Report(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := rawExchange(t, cfg, frame("junk")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + cfg.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"karmord_containers 1",
		`karmord_events_total{kind="start",result="added",source="hook",stage="createRuntime"} 1`,
		"karmord_hook_duration_seconds_count 1",
		`karmord_hook_duration_seconds_bucket{le="0.005"} 1`,
		`karmord_connections_total{result="accepted"}`,
		`karmord_errors_total{kind="malformed"} 1`,
		`karmord_reconcile_runs_total{result="ok"} 1`,
		`karmord_requests_total{type="event"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestStageLabelIsBounded: a peer cannot create a series per made-up stage name.
func TestStageLabelIsBounded(t *testing.T) {
	cfg, _ := testConfig(t)
	a := runAgent(t, cfg)
	ev := hookStart("s1", 0, "s")
	ev.Stage = "made-up-stage-1234"
	if _, err := client(cfg).Report(ctxT(t), ev); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, a, "events", "other", "start", "hook", "added"); got != 1 {
		t.Fatalf("made-up stage counted as %v under \"other\", want 1", got)
	}
}
