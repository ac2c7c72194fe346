package nri

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/testutil"
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
	args, err := splitExecStart(execStart)
	if err != nil {
		t.Fatal(err)
	}
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

// The unit's ExecStart reads back as the arguments it was written from.
func TestSplitExecStartRoundTrip(t *testing.T) {
	args := []string{"/usr/local/bin/karmor-nri", "--allow-namespace", "kube system", `say "hi"`, "100%", "$HOME", "", `back\slash`, "tab\there", "new\nline"}
	unit := SystemdUnit(args[0], args[1:])
	_, line, _ := strings.Cut(unit, "ExecStart=")
	line, _, _ = strings.Cut(line, "\n")
	got, err := splitExecStart(line)
	if err != nil || !slices.Equal(got, args) {
		t.Fatalf("ExecStart=%s\nreads back as %q (%v), want %q", line, got, err, args)
	}
	if _, err := splitExecStart(`/bin/x "open`); err == nil {
		t.Fatal("an unterminated quote was accepted")
	}
}

func FuzzSplitExecStart(f *testing.F) {
	f.Add("a b", `"c d"`)
	f.Add(`x\"y`, "%$")
	f.Add("0", "\xa0") // not UTF-8: passes through byte for byte
	f.Fuzz(func(t *testing.T, a, b string) {
		_, _ = splitExecStart(a) // any line: no panic
		want := []string{"/bin/karmor-nri", a, b}
		line := systemdQuote(want[0]) + " " + systemdQuote(a) + " " + systemdQuote(b)
		got, err := splitExecStart(line)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%s reads back as %q (%v), want %q", line, got, err, want)
		}
	})
}

// versionScript is a stand-in karmor program: it names itself, as a real one does, and answers
// --version as a real one does.
func versionScript(t *testing.T, path, name, version string) string {
	t.Helper()
	return writeProgram(t, path, "#!/bin/sh\necho '"+name+" "+version+"'\n")
}

// installed runs Install for start in a fresh temp dir and returns where it put things.
func installed(t *testing.T, start string) (InstallOptions, Locations) {
	t.Helper()
	d := t.TempDir()
	h := install.DefaultHookConfig()
	h.Path = filepath.Join(d, "bin", "karmor-hook")
	h.Socket = "/run/test/k.sock"
	o := InstallOptions{Hook: h, Start: start,
		HookBinary: versionScript(t, filepath.Join(d, "hook-src"), install.HookProgram, "h-1.0"),
		NRIBinary:  versionScript(t, filepath.Join(d, "nri-src"), NRIProgram, "n-2.0"),
		PluginDir:  filepath.Join(d, "plugins"), PluginConfigDir: filepath.Join(d, "conf.d"),
		BinaryPath: filepath.Join(d, "bin", "karmor-nri"), SystemdDir: filepath.Join(d, "systemd"), Socket: filepath.Join(d, "nri.sock")}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	// HookPath says nothing useful: what was installed names the hook.
	return o, Locations{HookPath: filepath.Join(d, "elsewhere", "karmor-hook"), PluginDir: o.PluginDir, PluginConfigDir: o.PluginConfigDir,
		SystemdDir: o.SystemdDir, BinaryPath: filepath.Join(d, "elsewhere", "karmor-nri")}
}

func TestStatusUninstallPreregistered(t *testing.T) {
	o, loc := installed(t, StartPreregistered)
	rep, err := Status(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Installed() || !rep.Preregistered() || rep.Systemd() || rep.Unit.Present {
		t.Fatalf("status %+v", rep)
	}
	if rep.Plugin.Version != "n-2.0" || rep.Hook.Version != "h-1.0" || rep.Hook.Path != o.Hook.Path || rep.HookConfig.Socket != o.Hook.Socket {
		t.Fatalf("status %+v hook %+v", rep, rep.HookConfig)
	}

	res, err := Uninstall(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	plugin, conf := filepath.Join(o.PluginDir, "10-karmor"), filepath.Join(o.PluginConfigDir, "10-karmor.conf")
	if want := []string{plugin, conf, o.Hook.Path}; !slices.Equal(res.Removed, want) || !res.PluginRemoved || res.UnitRemoved || len(res.Left) > 0 {
		t.Fatalf("removed %q, want %q; %+v", res.Removed, want, res)
	}
	if want := []string{filepath.Join(o.SystemdDir, SystemdUnitName), loc.BinaryPath}; !slices.Equal(res.Absent, want) {
		t.Fatalf("absent %q, want %q", res.Absent, want)
	}
	for _, p := range []string{plugin, conf, o.Hook.Path} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s is still there: %v", p, err)
		}
	}
	rep, _ = Status(context.Background(), loc)
	if rep.Installed() || rep.Plugin.Present || rep.PluginConfig.Present || rep.Hook.Present {
		t.Fatalf("status after uninstall %+v", rep)
	}
}

func TestStatusUninstallSystemd(t *testing.T) {
	o, loc := installed(t, StartSystemd)
	unit := filepath.Join(o.SystemdDir, SystemdUnitName)
	// What `systemctl enable` does, so that uninstall leaves no dangling link.
	wants := filepath.Join(o.SystemdDir, "multi-user.target.wants", SystemdUnitName)
	if err := os.MkdirAll(filepath.Dir(wants), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(unit, wants); err != nil {
		t.Fatal(err)
	}
	rep, err := Status(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Installed() || !rep.Systemd() || rep.Preregistered() || rep.UnitProgram.Path != o.BinaryPath || rep.UnitProgram.Version != "n-2.0" ||
		rep.Hook.Path != o.Hook.Path || rep.Hook.Version != "h-1.0" {
		t.Fatalf("status %+v", rep)
	}

	res, err := Uninstall(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{wants, unit, o.BinaryPath, o.Hook.Path}; !slices.Equal(res.Removed, want) || !res.UnitRemoved || res.PluginRemoved {
		t.Fatalf("removed %q, want %q; %+v", res.Removed, want, res)
	}
	if ents, _ := os.ReadDir(filepath.Dir(o.BinaryPath)); len(ents) != 0 {
		t.Fatalf("left in bin: %v", ents)
	}
	// Again: everything is absent, nothing fails.
	res, err = Uninstall(context.Background(), loc)
	if err != nil || len(res.Removed) != 0 || len(res.Absent) != 5 {
		t.Fatalf("second uninstall %+v %v", res, err)
	}
}

// A file at one of karmor's paths that karmor did not write stays, and is reported.
func TestUninstallLeavesForeignFiles(t *testing.T) {
	d := t.TempDir()
	loc := Locations{HookPath: filepath.Join(d, "bin", "karmor-hook"), PluginDir: filepath.Join(d, "plugins"), PluginConfigDir: filepath.Join(d, "conf.d"),
		SystemdDir: filepath.Join(d, "systemd"), BinaryPath: filepath.Join(d, "bin", "karmor-nri")}
	for _, dir := range []string{filepath.Join(d, "plugins", "10-karmor"), filepath.Join(d, "conf.d"), filepath.Join(d, "systemd"), filepath.Join(d, "bin")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	other := writeProgram(t, filepath.Join(d, "other"), "#!/bin/sh\necho other\n")
	if err := os.Symlink(other, filepath.Join(d, "conf.d", "10-karmor.conf")); err != nil {
		t.Fatal(err)
	}
	unit := "[Service]\nExecStart=/usr/bin/other-daemon\n"
	if err := os.WriteFile(filepath.Join(d, "systemd", SystemdUnitName), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	writeProgram(t, loc.BinaryPath, "#!/bin/sh\necho containerd\n")
	writeProgram(t, loc.HookPath, "#!/bin/sh\necho karmor-nri\n") // karmor's, but not karmor-hook

	res, err := Uninstall(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || len(res.Left) != 5 {
		t.Fatalf("removed %q, left %+v", res.Removed, res.Left)
	}
	for _, f := range res.Left {
		if _, err := os.Lstat(f.Path); err != nil || !strings.Contains(f.Why, "not karmor's") {
			t.Errorf("%s: %v (%s)", f.Path, err, f.Why)
		}
	}
	rep, err := Status(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Installed() || !rep.Unit.Present || rep.Unit.Err == nil || !rep.Plugin.Present || rep.Plugin.Err == nil || rep.Hook.Err == nil {
		t.Fatalf("status of foreign files %+v", rep)
	}
}

// karmor-hook stays while a karmor-nri still runs (it adds the hook to new containers until it
// stops) or a CRI-O/Podman hooks.d file runs it.
func TestUninstallKeepsHookInUse(t *testing.T) {
	d := t.TempDir()
	h := install.DefaultHookConfig()
	h.Path = filepath.Join(d, "bin", "karmor-hook")
	o := InstallOptions{Hook: h, Start: StartPreregistered, HookBinary: testutil.Binary(t, "karmor-hook"), NRIBinary: testutil.Binary(t, "karmor-nri"),
		PluginDir: filepath.Join(d, "plugins"), PluginConfigDir: filepath.Join(d, "conf.d")}
	if _, err := Install(o); err != nil {
		t.Fatal(err)
	}
	loc := Locations{HookPath: h.Path, PluginDir: o.PluginDir, PluginConfigDir: o.PluginConfigDir}
	// The installed plugin, running as containerd would run it, waiting for an NRI socket.
	plugin := exec.Command(filepath.Join(o.PluginDir, "10-karmor"), "--nri-socket", filepath.Join(d, "no-nri.sock"))
	if err := plugin.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plugin.Process.Kill(); _ = plugin.Wait() })
	waitRunning(t, filepath.Join(o.PluginDir, "10-karmor"))

	res, err := Uninstall(context.Background(), loc)
	if err != nil {
		t.Fatal(err)
	}
	if !res.PluginRemoved || len(res.HookKept) != 1 || res.HookKept[0].Path != h.Path || len(res.Running) != 1 || res.Running[0].PID != plugin.Process.Pid {
		t.Fatalf("with karmor-nri running: %+v", res)
	}
	if _, err := os.Stat(h.Path); err != nil {
		t.Fatal("karmor-hook was removed while karmor-nri runs")
	}
	_ = plugin.Process.Kill()
	_ = plugin.Wait()

	// Podman's hooks.d file runs the same karmor-hook.
	hooksDir := filepath.Join(d, "hooks.d")
	if _, err := install.Install(install.Options{HooksDir: hooksDir, HookBinary: h.Path, Hook: h}); err != nil {
		t.Fatal(err)
	}
	loc.HooksDirs = []string{hooksDir}
	res, err = Uninstall(context.Background(), loc)
	if err != nil || len(res.Running) != 0 || len(res.HookKept) != 1 || len(res.HookKept[0].UsedBy) != len(install.Stages) {
		t.Fatalf("with hooks.d using it: %+v %v", res, err)
	}
	loc.HooksDirs = nil
	res, err = Uninstall(context.Background(), loc)
	if err != nil || !slices.Equal(res.Removed, []string{h.Path}) {
		t.Fatalf("once nothing uses it: %+v %v", res, err)
	}
}

// waitRunning waits until a process runs the program at path (exec is not instant).
func waitRunning(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(processesRunning([]string{path})) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no process runs %s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
