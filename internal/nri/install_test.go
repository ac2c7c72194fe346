package nri

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/install"
)

func writeProgram(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInstallPreregistered(t *testing.T) {
	d := t.TempDir()
	h := install.DefaultHookConfig()
	h.Path = filepath.Join(d, "bin", "karmor-hook")
	h.Socket = "/run/test/k.sock"
	o := InstallOptions{Hook: h, HookBinary: writeProgram(t, filepath.Join(d, "hook-src"), "hook"),
		NRIBinary: writeProgram(t, filepath.Join(d, "nri-src"), "nri"), Start: StartPreregistered,
		PluginDir: filepath.Join(d, "plugins"), PluginConfigDir: filepath.Join(d, "conf.d")}
	res, err := Install(o)
	if err != nil {
		t.Fatal(err)
	}
	plugin, conf := filepath.Join(d, "plugins", "10-karmor"), filepath.Join(d, "conf.d", "10-karmor.conf")
	if !slices.Equal(res.Written, []string{h.Path, plugin, conf}) {
		t.Fatalf("written %q", res.Written)
	}
	for path, want := range map[string]string{h.Path: "hook", plugin: "nri"} {
		b, err := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if err != nil || string(b) != want || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %q %v %v", path, b, fi.Mode(), err)
		}
	}
	b, _ := os.ReadFile(conf)
	c, err := ParseConfig(b, Config{Hook: install.DefaultHookConfig()})
	if err != nil || c.Hook.Path != h.Path || c.Hook.Socket != h.Socket {
		t.Fatalf("the plugin's configuration does not give back the hook: %+v %v\n%s", c, err, b)
	}
	// Again: the programs are rewritten (they may be upgrades), nothing is left behind.
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(d, "plugins"))
	if len(ents) != 1 {
		t.Fatalf("plugin dir holds %d entries after a second install", len(ents))
	}
	// A program that already is the destination is kept.
	o.HookBinary = h.Path
	res, err = Install(o)
	if err != nil || !slices.Equal(res.Kept, []string{h.Path}) {
		t.Fatalf("kept %q %v", res.Kept, err)
	}
}

func TestInstallSystemd(t *testing.T) {
	d := t.TempDir()
	h := install.DefaultHookConfig()
	h.Path = filepath.Join(d, "karmor-hook")
	h.AllowNamespaces = []string{"kube system"} // needs quoting in the unit
	o := InstallOptions{Hook: h, HookBinary: writeProgram(t, filepath.Join(d, "hook-src"), "hook"),
		NRIBinary: writeProgram(t, filepath.Join(d, "nri-src"), "nri"), Start: StartSystemd,
		BinaryPath: filepath.Join(d, "bin", "karmor-nri"), SystemdDir: filepath.Join(d, "systemd"), Socket: "/run/containerd/nri.sock"}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(d, "systemd", SystemdUnitName))
	if err != nil {
		t.Fatal(err)
	}
	var execStart string
	for _, line := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			execStart = v
		}
	}
	args := splitSystemd(t, execStart)
	if args[0] != o.BinaryPath {
		t.Fatalf("ExecStart runs %q", args[0])
	}
	opts, err := ParseArgs(args[1:], io.Discard)
	if err != nil {
		t.Fatalf("ExecStart %q: %v", execStart, err)
	}
	if opts.Run.Socket != o.Socket || opts.Config.Hook.Path != h.Path || !slices.Equal(opts.Config.Hook.AllowNamespaces, h.AllowNamespaces) {
		t.Fatalf("the unit runs karmor-nri with %+v", opts)
	}
	if !strings.Contains(string(unit), "Restart=always") {
		t.Fatal("the unit does not restart the plugin")
	}
}

// splitSystemd undoes systemdQuote for the arguments it produces.
func splitSystemd(t *testing.T, s string) []string {
	t.Helper()
	var args []string
	var cur bytes.Buffer
	inQuote, escaped := false, false
	for _, r := range s {
		switch {
		case escaped:
			switch r {
			case 'n':
				cur.WriteRune('\n')
			case 't':
				cur.WriteRune('\t')
			default:
				cur.WriteRune(r)
			}
			escaped = false
		case r == '\\' && inQuote:
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case r == ' ' && !inQuote:
			args = append(args, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	args = append(args, cur.String())
	for i, a := range args {
		args[i] = strings.ReplaceAll(strings.ReplaceAll(a, "%%", "%"), "$$", "$")
	}
	return args
}

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/x": "/usr/bin/x",
		"a b":        `"a b"`,
		`say "hi"`:   `"say \"hi\""`,
		"100%":       "100%%",
		"$HOME":      "$$HOME",
		"":           `""`,
		`back\slash`: `"back\\slash"`,
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestInstallRejects(t *testing.T) {
	d := t.TempDir()
	h := install.DefaultHookConfig()
	h.Path = filepath.Join(d, "karmor-hook")
	src := writeProgram(t, filepath.Join(d, "src"), "x")
	for name, o := range map[string]InstallOptions{
		"bad start":        {Hook: h, HookBinary: src, NRIBinary: src, Start: "cron"},
		"bad index":        {Hook: h, HookBinary: src, NRIBinary: src, Start: StartPreregistered, PluginIndex: "1", PluginDir: d, PluginConfigDir: d},
		"no plugin dir":    {Hook: h, HookBinary: src, NRIBinary: src, Start: StartPreregistered},
		"relative binary":  {Hook: h, HookBinary: src, NRIBinary: src, Start: StartSystemd, BinaryPath: "karmor-nri", SystemdDir: d},
		"missing program":  {Hook: h, HookBinary: filepath.Join(d, "absent"), NRIBinary: src, Start: StartPreregistered, PluginDir: d, PluginConfigDir: d},
		"directory source": {Hook: h, HookBinary: d, NRIBinary: src, Start: StartPreregistered, PluginDir: d, PluginConfigDir: d},
		"bad hook":         {Hook: install.HookConfig{}, HookBinary: src, NRIBinary: src, Start: StartPreregistered, PluginDir: d, PluginConfigDir: d},
	} {
		if _, err := Install(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
