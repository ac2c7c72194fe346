package nri

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	v2Output  = "containerd github.com/containerd/containerd/v2 v2.4.2 4f03e1fa7c0f9ea5e5d1f0c9b8a7c4b3d2e1f0a9"
	v17Output = "containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182"
	v16Output = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1"
)

func TestParseContainerdVersion(t *testing.T) {
	for out, want := range map[string][2]int{v2Output: {2, 4}, v17Output: {1, 7}, v16Output: {1, 6}} {
		maj, mnr, ok := ParseContainerdVersion(out)
		if !ok || maj != want[0] || mnr != want[1] {
			t.Errorf("ParseContainerdVersion(%q) = %d.%d %v, want %d.%d", out, maj, mnr, ok, want[0], want[1])
		}
	}
	if _, _, ok := ParseContainerdVersion("containerd: command not found"); ok {
		t.Error("parsed a version from an error message")
	}
}

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckContainerdConfig(t *testing.T) {
	cases := []struct {
		name, config, version string
		enabled               bool
		reason                string // a part of Reason
		socket                string // "" means the default
		fixHas                string // a part of Fix when disabled
	}{
		{name: "2.x without a file", config: "-", version: v2Output, enabled: true, reason: "on by default"},
		{name: "1.7 without a file", config: "-", version: v17Output, reason: "off by default", fixHas: "disable = false"},
		{name: "2.x v3 defaults", config: "version = 3\n", version: v2Output, enabled: true, reason: "on by default"},
		{name: "v3 unknown version means 2.x", config: "version = 3\n", enabled: true, reason: "on by default"},
		{name: "2.x disable = true", config: "version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n", version: v2Output,
			reason: "disable = true", fixHas: "set disable = false"},
		{name: "1.7 v2 absent", config: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"x\"\n", version: v17Output,
			reason: "off by default", fixHas: "[plugins.\"io.containerd.nri.v1.nri\"]"},
		{name: "1.7 v2 enabled with socket", config: "version = 2\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = false\n  socket_path = \"/run/x/nri.sock\"\n",
			version: v17Output, enabled: true, reason: "disable = false", socket: "/run/x/nri.sock"},
		{name: "v2 unknown version absent", config: "version = 2\n", reason: "version is unknown", fixHas: "disable = false"},
		{name: "1.6 has none", config: "version = 2\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = false\n", version: v16Output, reason: "no NRI"},
		{name: "disabled_plugins", config: "version = 3\ndisabled_plugins = [\"io.containerd.nri.v1.nri\"]\n", version: v2Output,
			reason: "disabled_plugins", fixHas: "remove"},
		{name: "version 1 short id", config: "[plugins.nri]\n  disable = false\n", version: v17Output, enabled: true, reason: "disable = false"},
		{name: "version 1 needs an upgrade to enable", config: "[plugins.cri]\n", version: v17Output, reason: "off by default", fixHas: "version = 2"},
		{name: "wrong type", config: "version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = \"no\"\n", version: v2Output,
			reason: "cannot be read", fixHas: "disable = false"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "config.toml")
			if tc.config != "-" {
				writeConfig(t, dir, "config.toml", tc.config)
			}
			st, err := CheckContainerdConfig(path, tc.version)
			if err != nil {
				t.Fatal(err)
			}
			if st.Enabled != tc.enabled || !strings.Contains(st.Reason, tc.reason) {
				t.Fatalf("got enabled=%v reason %q; want enabled=%v reason containing %q", st.Enabled, st.Reason, tc.enabled, tc.reason)
			}
			wantSocket := tc.socket
			if wantSocket == "" {
				wantSocket = DefaultSocket
			}
			if st.Socket != wantSocket {
				t.Errorf("socket %q, want %q", st.Socket, wantSocket)
			}
			if tc.enabled && st.Fix != "" {
				t.Errorf("enabled but a fix is offered: %q", st.Fix)
			}
			if !tc.enabled && !strings.Contains(st.Fix, tc.fixHas) {
				t.Errorf("fix %q does not contain %q", st.Fix, tc.fixHas)
			}
			if (tc.config == "-") != (st.ConfigPath == "") {
				t.Errorf("ConfigPath %q for config present=%v", st.ConfigPath, tc.config != "-")
			}
		})
	}
}

// The fix must itself be configuration that containerd reads as NRI on.
func TestFixEnablesNRI(t *testing.T) {
	for _, base := range []string{"", "version = 2\n", "version = 3\n"} {
		dir := t.TempDir()
		p := writeConfig(t, dir, "config.toml", base)
		st, err := CheckContainerdConfig(p, v17Output)
		if err != nil {
			t.Fatal(err)
		}
		if st.Enabled {
			t.Fatalf("base %q: enabled before the fix", base)
		}
		// A version line in the fix replaces the file's own (at most one may exist).
		fixed := st.Fix
		if !strings.Contains(fixed, "version =") {
			fixed = base + fixed
		}
		p = writeConfig(t, dir, "config.toml", fixed)
		st, err = CheckContainerdConfig(p, v17Output)
		if err != nil || !st.Enabled {
			t.Fatalf("base %q with the fix applied:\n%s\nstill off: %+v %v", base, fixed, st, err)
		}
	}
}

func TestCheckContainerdConfigImports(t *testing.T) {
	dir := t.TempDir()
	main := writeConfig(t, dir, "config.toml", "version = 3\nimports = [\"conf.d/*.toml\", \"/nonexistent-is-not-globbed/*.toml\"]\n")
	writeConfig(t, dir, "conf.d/10-nri.toml", "version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n")
	st, err := CheckContainerdConfig(main, v2Output)
	if err != nil {
		t.Fatal(err)
	}
	if st.Enabled {
		t.Fatalf("an imported disable = true was missed: %+v", st)
	}
	// A later import replaces the whole section, as containerd merges plugin tables.
	writeConfig(t, dir, "conf.d/20-nri.toml", "version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  socket_path = \"/run/y.sock\"\n")
	st, err = CheckContainerdConfig(main, v2Output)
	if err != nil || !st.Enabled || st.Socket != "/run/y.sock" {
		t.Fatalf("later import: %+v %v", st, err)
	}
	// A missing import is an error for containerd, so it is one here.
	writeConfig(t, dir, "config.toml", "version = 3\nimports = [\"missing.toml\"]\n")
	if _, err := CheckContainerdConfig(main, v2Output); err == nil {
		t.Fatal("missing import accepted")
	}
	// An import cycle is read once.
	writeConfig(t, dir, "config.toml", "version = 3\nimports = [\"config.toml\"]\n")
	if _, err := CheckContainerdConfig(main, v2Output); err != nil {
		t.Fatalf("self import: %v", err)
	}
}

func TestCheckContainerdConfigRejects(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"not toml":    "version = = 3\n",
		"dup section": "[plugins.x]\n[plugins.x]\n",
		"huge":        "# " + strings.Repeat("x", maxConfigBytes) + "\n",
	} {
		p := writeConfig(t, dir, "config.toml", body)
		if st, err := CheckContainerdConfig(p, v2Output); err == nil {
			t.Errorf("%s: accepted: %+v", name, st)
		}
	}
	if _, err := CheckContainerdConfig(dir, v2Output); err == nil {
		t.Error("a directory as the config was accepted")
	}
}

func FuzzParseContainerdConfig(f *testing.F) {
	f.Add([]byte("version = 3\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = false\n"))
	f.Add([]byte("[plugins.nri]\ndisable = 1\n"))
	f.Add([]byte("disabled_plugins = [1]\nimports = \"x\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseContainerdConfig(data)
		if err != nil {
			return
		}
		// Whatever parses must evaluate without panicking and say something.
		st := evaluate([]*containerdConfigFile{cfg}, v17Output)
		if st.Reason == "" {
			t.Fatalf("no reason for %q", data)
		}
		if !st.Enabled && st.Fix == "" && !strings.Contains(st.Reason, "no NRI") {
			t.Fatalf("disabled without a fix for %q: %+v", data, st)
		}
	})
}
