package nri

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/karmor/karmor/internal/install"
)

func TestParseConfig(t *testing.T) {
	base := Config{Hook: install.DefaultHookConfig()}
	c, err := ParseConfig([]byte("socket: /run/test/k.sock\ntimeout: 750ms\nallow_namespaces: [kube-system, infra]\nfail_closed: true\nplugin_log_file: /var/log/n.log\n"), base)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Hook
	if c.PluginLogFile != "/var/log/n.log" {
		t.Fatalf("plugin_log_file %q", c.PluginLogFile)
	}
	if h.Socket != "/run/test/k.sock" || h.Timeout != 750*time.Millisecond || !h.FailClosed ||
		!slices.Equal(h.AllowNamespaces, []string{"kube-system", "infra"}) {
		t.Fatalf("parsed %+v", h)
	}
	if h.Path != base.Hook.Path || h.SpoolDir != base.Hook.SpoolDir {
		t.Fatalf("fields not in the file changed: %+v", h)
	}
	if c, err := ParseConfig(nil, base); err != nil || c.Hook.Socket != base.Hook.Socket {
		t.Fatalf("empty configuration: %+v %v", c, err)
	}
}

func TestParseConfigRejects(t *testing.T) {
	base := Config{Hook: install.DefaultHookConfig()}
	for name, body := range map[string]string{
		"unknown field":     "sockett: /x\n",
		"duplicate key":     "socket: /a\nsocket: /b\n",
		"two documents":     "socket: /a\n---\nsocket: /b\n",
		"bad duration":      "timeout: soon\n",
		"relative hook":     "hook_path: karmor-hook\n",
		"zero timeout":      "timeout: 0s\n",
		"wrong type":        "fail_closed: maybe\n",
		"not a mapping":     "- a\n- b\n",
		"too large":         "# " + strings.Repeat("x", MaxConfigBytes) + "\n",
		"empty socket":      "socket: \"\"\n",
		"list for a string": "socket: [a]\n",
		"relative log file": "plugin_log_file: n.log\n",
	} {
		if h, err := ParseConfig([]byte(body), base); err == nil {
			t.Errorf("%s: accepted, got %+v", name, h)
		}
	}
}

func TestFormatConfigRoundTrip(t *testing.T) {
	want := install.HookConfig{Path: "/opt/k/karmor-hook", Socket: "/run/k.sock", SpoolDir: "/var/k", Timeout: 1500 * time.Millisecond,
		LogFile: "/var/log/k.log", FailClosed: true, AllowNamespaces: []string{"a"}, AllowAnnotations: []string{"k=v"}}
	b, err := FormatConfig(Config{Hook: want, PluginLogFile: "/var/log/nri.log"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(b, Config{Hook: install.DefaultHookConfig()})
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	got := c.Hook
	if c.PluginLogFile != "/var/log/nri.log" {
		t.Fatalf("plugin_log_file lost: %q", c.PluginLogFile)
	}
	if got.Path != want.Path || got.Socket != want.Socket || got.SpoolDir != want.SpoolDir || got.Timeout != want.Timeout ||
		got.LogFile != want.LogFile || got.FailClosed != want.FailClosed || !slices.Equal(got.AllowNamespaces, want.AllowNamespaces) ||
		!slices.Equal(got.AllowAnnotations, want.AllowAnnotations) {
		t.Fatalf("round trip\n got %+v\nwant %+v\nfile:\n%s", got, want, b)
	}
}

func TestConfigureAppliesRuntimeConfig(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "nri.log")
	var stderr bytes.Buffer
	logs := NewLogWriter(&stderr)
	defer logs.Close()
	p := NewPlugin(Config{Hook: install.DefaultHookConfig()}, slog.New(slog.NewTextHandler(logs, nil)), logs)
	if _, err := p.Configure(context.Background(), "socket: /run/other.sock\nplugin_log_file: "+logPath+"\n", "containerd", "2.4.2"); err != nil {
		t.Fatal(err)
	}
	if p.Config().Hook.Socket != "/run/other.sock" {
		t.Fatalf("configuration not applied: %+v", p.Config())
	}
	adj, _, _ := p.CreateContainer(context.Background(), testPod(), &api.Container{Id: "c1"})
	if got := adj.GetHooks().GetCreateRuntime()[0].Args; !slices.Contains(got, "/run/other.sock") {
		t.Fatalf("adjustment does not use the configured socket: %q", got)
	}
	if _, err := p.Configure(context.Background(), "nonsense: 1\n", "containerd", "2.4.2"); err == nil {
		t.Fatal("invalid configuration accepted")
	}
	if p.Config().Hook.Socket != "/run/other.sock" {
		t.Fatal("a refused configuration changed the plugin")
	}
	// The refusal was logged to the plugin_log_file, not to stderr.
	b, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(b), "invalid") {
		t.Fatalf("plugin log file %q: %v", b, err)
	}
	if strings.Contains(stderr.String(), "invalid") {
		t.Fatal("logged to stderr after plugin_log_file was set")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("socket: /a\ntimeout: 1s\n"))
	f.Add([]byte("allow_namespaces: [x]\nfail_closed: true\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data, Config{Hook: install.DefaultHookConfig()})
		if err != nil {
			return
		}
		if h := c.Hook; h.Check() != nil || c.PluginLogFile != "" && !filepath.IsAbs(c.PluginLogFile) {
			t.Fatalf("accepted a configuration that does not check: %+v", c)
		}
	})
}
