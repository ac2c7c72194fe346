package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/hook/hooktest"
	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/nri"
	"github.com/karmor/karmor/internal/testutil"
)

// runContainerdInstall runs `karmor hook install --runtime containerd ARGS...` through the CLI and
// returns its exit code, stdout and stderr.
func runContainerdInstall(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(append([]string{"hook", "install", "--runtime", runtimeContainerd}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// containerdFixture is a containerd configuration and the programs to install, all in a temp dir.
type containerdFixture struct {
	dir, config, hookSrc, nriSrc, hookPath string
}

func newContainerdFixture(t *testing.T, config string) containerdFixture {
	t.Helper()
	d := t.TempDir()
	f := containerdFixture{dir: d, config: filepath.Join(d, "config.toml"), hookSrc: filepath.Join(d, "karmor-hook-src"),
		nriSrc: filepath.Join(d, "karmor-nri-src"), hookPath: filepath.Join(d, "bin", "karmor-hook")}
	config = strings.ReplaceAll(config, "$D", d)
	if err := os.WriteFile(f.config, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.hookSrc, f.nriSrc} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n# "+filepath.Base(p)+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f containerdFixture) args(extra ...string) []string {
	return append([]string{"--containerd-config", f.config, "--containerd-bin", filepath.Join(f.dir, "no-containerd"),
		"--hook-binary", f.hookSrc, "--nri-binary", f.nriSrc, "--hook-path", f.hookPath, "--socket", "/run/test/karmor.sock"}, extra...)
}

const nriOnConfig = `version = 3
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "$D/nri.sock"
  plugin_path = "$D/plugins"
  plugin_config_path = "$D/conf.d"
`

func TestHookInstallContainerdPreregistered(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	code, out, errOut := runContainerdInstall(t, f.args()...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	plugin := filepath.Join(f.dir, "plugins", "10-karmor")
	conf := filepath.Join(f.dir, "conf.d", "10-karmor.conf")
	for _, want := range []string{"wrote " + f.hookPath, "wrote " + plugin, "wrote " + conf, "restart it", "NRI is on", "/run/test/karmor.sock"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, _ := os.ReadFile(plugin); !strings.Contains(string(b), "karmor-nri-src") {
		t.Fatalf("plugin binary %q", b)
	}
	b, _ := os.ReadFile(conf)
	c, err := nri.ParseConfig(b, nri.Config{Hook: install.DefaultHookConfig()})
	if err != nil || c.Hook.Path != f.hookPath || c.Hook.Socket != "/run/test/karmor.sock" {
		t.Fatalf("plugin configuration %+v %v", c, err)
	}
}

func TestHookInstallContainerdNRIOff(t *testing.T) {
	f := newContainerdFixture(t, strings.Replace(nriOnConfig, "disable = false", "disable = true", 1))
	code, out, _ := runContainerdInstall(t, f.args()...)
	if code != ExitFailure {
		t.Fatalf("exit %d with NRI disabled, want %d\n%s", code, ExitFailure, out)
	}
	for _, want := range []string{"NRI is OFF", "disable = true", "Add to " + f.config, `[plugins."io.containerd.nri.v1.nri"]`, "  disable = false"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Installed anyway, so that turning NRI on and restarting containerd is all that is left.
	if _, err := os.Stat(filepath.Join(f.dir, "plugins", "10-karmor")); err != nil {
		t.Fatal(err)
	}
}

// The real containerd's version decides NRI's default for a configuration that does not say.
func TestHookInstallContainerdVersionDefault(t *testing.T) {
	bin := testutil.ContainerdBinary(t)
	f := newContainerdFixture(t, "version = 2\n")
	code, out, errOut := runContainerdInstall(t, append(f.args("--nri-plugin-dir", filepath.Join(f.dir, "p"), "--nri-conf-dir", filepath.Join(f.dir, "c")),
		"--containerd-bin", bin)...)
	if code != ExitOK || !strings.Contains(out, "on by default in containerd 2.") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	// Without a version, a version 2 configuration may be containerd 1.7's: NRI must be asked for.
	code, out, _ = runContainerdInstall(t, f.args("--nri-plugin-dir", filepath.Join(f.dir, "p"), "--nri-conf-dir", filepath.Join(f.dir, "c"))...)
	if code != ExitFailure || !strings.Contains(out, "version is unknown") || !strings.Contains(out, "disable = false") {
		t.Fatalf("unknown version: exit %d\n%s", code, out)
	}
}

func TestHookInstallContainerdSystemd(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig+"  disable_connections = true\n")
	nriPath := filepath.Join(f.dir, "bin", "karmor-nri")
	code, out, errOut := runContainerdInstall(t, f.args("--nri-start", "systemd", "--nri-path", nriPath, "--systemd-dir", filepath.Join(f.dir, "systemd"))...)
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	unit, err := os.ReadFile(filepath.Join(f.dir, "systemd", nri.SystemdUnitName))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+nriPath+" --nri-socket "+filepath.Join(f.dir, "nri.sock")+" --hook-path "+f.hookPath) {
		t.Fatalf("unit:\n%s", unit)
	}
	if !strings.Contains(out, "systemctl enable --now karmor-nri") || !strings.Contains(errOut, "disable_connections") {
		t.Fatalf("output:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestHookInstallContainerdUsage(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	for _, args := range [][]string{
		{"--nri-start", "cron"},
		{"--nri-plugin-index", "123"},
		{"--hook-path", "karmor-hook"},
		{"--nri-start", "systemd", "--nri-path", "bin/karmor-nri"},
	} {
		if code, out, errOut := runContainerdInstall(t, f.args(args...)...); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d\n%s%s", args, code, ExitUsage, out, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "plugins")); err == nil {
		t.Fatal("a refused command installed something")
	}
	broken := newContainerdFixture(t, "version = = 3\n")
	if code, _, errOut := runContainerdInstall(t, broken.args()...); code != ExitFailure || !strings.Contains(errOut, "containerd config") {
		t.Fatalf("broken config: exit %d %s", code, errOut)
	}
}

// realPrograms makes the fixture install the karmor-hook and karmor-nri built from this tree,
// which answer --version as status asks them to.
func (f *containerdFixture) realPrograms(t *testing.T) {
	f.hookSrc, f.nriSrc = testutil.Binary(t, install.HookProgram), testutil.Binary(t, nri.NRIProgram)
}

// where is `karmor hook VERB --runtime containerd` with the flags that locate what install wrote.
func (f containerdFixture) where(verb string, extra ...string) []string {
	args := []string{"hook", verb, "--runtime", runtimeContainerd, "--containerd-config", f.config}
	if verb == "status" {
		args = append(args, "--containerd-bin", filepath.Join(f.dir, "no-containerd"))
	}
	return append(append(args, "--systemd-dir", filepath.Join(f.dir, "systemd"), "--nri-path", filepath.Join(f.dir, "bin", "karmor-nri"),
		"--hook-path", filepath.Join(f.dir, "elsewhere", "karmor-hook"), "--hooks-dir", filepath.Join(f.dir, "hooks.d")), extra...)
}

// inOrder fails unless out holds each of lines, in this order.
func inOrder(t *testing.T, out string, lines ...string) {
	t.Helper()
	at := 0
	for _, l := range lines {
		i := strings.Index(out[at:], l)
		if i < 0 {
			t.Fatalf("output lacks %q after offset %d:\n%s", l, at, out)
		}
		at += i + len(l)
	}
}

func gone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
}

func TestHookContainerdStatusUninstallPreregistered(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	f.realPrograms(t)
	agent := hooktest.Start(t)
	if code, out, errOut := runContainerdInstall(t, f.args("--socket", agent.Socket)...); code != ExitOK {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	plugin, conf := filepath.Join(f.dir, "plugins", "10-karmor"), filepath.Join(f.dir, "conf.d", "10-karmor.conf")

	// The plugin's configuration names karmor-hook and karmord's socket: status needs neither flag.
	code, out, errOut := runCLI(t, f.where("status")...)
	if code != ExitOK {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	inOrder(t, out, "containerd: NRI is on (the NRI section sets disable = false; socket "+filepath.Join(f.dir, "nri.sock")+")",
		"karmor-nri, pre-registered: "+plugin+" version ", "configuration: "+conf,
		"karmor-nri, systemd unit: not installed", "karmor-hook: "+f.hookPath+" version ", "karmor-nri adds it with: --socket "+agent.Socket+" --spool-dir",
		"agent: karmord answers at "+agent.Socket)
	agent.Close()
	if code, out, _ := runCLI(t, f.where("status")...); code != ExitFailure || !strings.Contains(out, "not answering") {
		t.Fatalf("status with karmord down: exit %d\n%s", code, out)
	}

	code, out, errOut = runCLI(t, f.where("uninstall")...)
	if code != ExitOK {
		t.Fatalf("uninstall: exit %d\n%s%s", code, out, errOut)
	}
	inOrder(t, out, "removed "+plugin, "removed "+conf, "removed "+f.hookPath, "absent "+filepath.Join(f.dir, "systemd", nri.SystemdUnitName),
		"systemctl restart containerd")
	gone(t, plugin, conf, f.hookPath)
	if strings.Contains(out, "daemon-reload") {
		t.Errorf("no unit was removed, yet:\n%s", out)
	}
	code, out, _ = runCLI(t, f.where("status", "--hook-path", f.hookPath)...)
	if code != ExitFailure || !strings.Contains(out, "pre-registered: not installed ("+plugin+")") || !strings.Contains(out, "karmor-hook: not installed") ||
		!strings.Contains(out, "is not (fully) installed") {
		t.Fatalf("status after uninstall: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, f.where("uninstall")...)
	if code != ExitOK || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("second uninstall: exit %d\n%s", code, out)
	}
}

func TestHookContainerdStatusUninstallSystemd(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	f.realPrograms(t)
	agent := hooktest.Start(t)
	nriPath, unit := filepath.Join(f.dir, "bin", "karmor-nri"), filepath.Join(f.dir, "systemd", nri.SystemdUnitName)
	code, out, errOut := runContainerdInstall(t, f.args("--socket", agent.Socket, "--nri-start", "systemd", "--nri-path", nriPath, "--systemd-dir", filepath.Join(f.dir, "systemd"))...)
	if code != ExitOK {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	// karmor-nri's path comes from the unit, not from --nri-path.
	elsewhere := filepath.Join(f.dir, "elsewhere", "karmor-nri")
	code, out, errOut = runCLI(t, f.where("status", "--nri-path", elsewhere)...)
	if code != ExitOK {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	inOrder(t, out, "karmor-nri, pre-registered: not installed", "karmor-nri, systemd unit: "+unit, "runs: "+nriPath+" version ",
		"karmor-hook: "+f.hookPath+" version ", "agent: karmord answers at "+agent.Socket)

	code, out, errOut = runCLI(t, f.where("uninstall", "--nri-path", elsewhere)...)
	if code != ExitOK {
		t.Fatalf("uninstall: exit %d\n%s%s", code, out, errOut)
	}
	inOrder(t, out, "removed "+unit, "removed "+nriPath, "removed "+f.hookPath, "systemctl stop karmor-nri && systemctl daemon-reload")
	gone(t, unit, nriPath, f.hookPath)
	if code, out, _ := runCLI(t, f.where("status", "--nri-path", elsewhere)...); code != ExitFailure || !strings.Contains(out, "systemd unit: not installed") {
		t.Fatalf("status after uninstall: exit %d\n%s", code, out)
	}
}

// A unit at karmor-nri's unit path that does not run karmor-nri is someone else's: uninstall
// leaves it, still removes karmor's files, and exits 1.
func TestHookContainerdUninstallLeavesForeignUnit(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	f.realPrograms(t)
	if code, out, errOut := runContainerdInstall(t, f.args()...); code != ExitOK {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	unit := filepath.Join(f.dir, "systemd", nri.SystemdUnitName)
	foreign := "[Service]\nExecStart=/usr/sbin/other-daemon\n"
	if err := os.MkdirAll(filepath.Dir(unit), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unit, []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, f.where("status")...)
	if !strings.Contains(out, "systemd unit: broken: "+unit+" is not karmor's") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, f.where("uninstall")...)
	if code != ExitFailure || !strings.Contains(out, "left "+unit+" is not karmor's: it does not run karmor-nri") {
		t.Fatalf("uninstall: exit %d\n%s", code, out)
	}
	if b, err := os.ReadFile(unit); err != nil || string(b) != foreign {
		t.Fatalf("the foreign unit was touched: %q %v", b, err)
	}
	gone(t, filepath.Join(f.dir, "plugins", "10-karmor"), filepath.Join(f.dir, "conf.d", "10-karmor.conf"), f.hookPath)
}

func TestHookContainerdStatusNRIOff(t *testing.T) {
	f := newContainerdFixture(t, strings.Replace(nriOnConfig, "disable = false", "disable = true", 1))
	f.realPrograms(t)
	agent := hooktest.Start(t)
	if code, out, _ := runContainerdInstall(t, f.args("--socket", agent.Socket)...); code != ExitFailure {
		t.Fatalf("install with NRI off: exit %d\n%s", code, out)
	}
	code, out, _ := runCLI(t, f.where("status")...)
	if code != ExitFailure {
		t.Fatalf("status with NRI off: exit %d, want %d\n%s", code, ExitFailure, out)
	}
	// Everything else is fine: NRI is what status blames.
	inOrder(t, out, "containerd: NRI is OFF, so karmor-nri cannot add karmor-hook: the NRI section sets disable = true",
		"add to "+f.config, `[plugins."io.containerd.nri.v1.nri"]`, "disable = false",
		"pre-registered: "+filepath.Join(f.dir, "plugins", "10-karmor")+" version ", "agent: karmord answers at "+agent.Socket)
	if strings.Contains(out, "not (fully) installed") {
		t.Fatalf("status blames the installation:\n%s", out)
	}
}

func TestHookContainerdUninstallStatusUsage(t *testing.T) {
	f := newContainerdFixture(t, nriOnConfig)
	for _, verb := range []string{"uninstall", "status"} {
		for _, args := range [][]string{{"--nri-plugin-index", "1"}, {"--hook-path", "karmor-hook"}, {"--nri-path", "bin/karmor-nri"}} {
			if code, out, errOut := runCLI(t, f.where(verb, args...)...); code != ExitUsage {
				t.Errorf("%s %q: exit %d, want %d\n%s%s", verb, args, code, ExitUsage, out, errOut)
			}
		}
	}
	// containerd's configuration says where the plugin directories are: uninstall needs it, or them.
	broken := newContainerdFixture(t, "version = = 3\n")
	code, _, errOut := runCLI(t, broken.where("uninstall")...)
	if code != ExitFailure || !strings.Contains(errOut, "--nri-plugin-dir") {
		t.Fatalf("uninstall with a broken config: exit %d %s", code, errOut)
	}
	code, out, errOut := runCLI(t, broken.where("uninstall", "--nri-plugin-dir", filepath.Join(f.dir, "p"), "--nri-conf-dir", filepath.Join(f.dir, "c"))...)
	if code != ExitOK || !strings.Contains(out, "nothing to remove") {
		t.Fatalf("uninstall with a broken config and the directories: exit %d\n%s%s", code, out, errOut)
	}
}

// TestInstallForExternalNRI: --nri-start external installs karmor-hook alone (the chart's
// DaemonSet runs karmor-nri itself) and succeeds where containerd is not visible.
func TestInstallForExternalNRI(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src-hook")
	if err := os.WriteFile(src, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hook := filepath.Join(dir, "host", "opt", "karmor", "bin", "karmor-hook")
	code, out, errOut := containersCLI("hook", "install", "--runtime", "containerd", "--nri-start", "external", "--hook-binary", src,
		"--hook-path", hook, "--containerd-config", filepath.Join(dir, "absent.toml"), "--containerd-bin", filepath.Join(dir, "no-containerd"),
		"--nri-plugin-dir", filepath.Join(dir, "plugins"), "--nri-conf-dir", filepath.Join(dir, "conf.d"))
	if code != ExitOK || !strings.Contains(out, "installed "+hook) || !strings.Contains(out, "run karmor-nri connected to NRI's socket") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if fi, err := os.Stat(hook); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("karmor-hook not installed: %v", err)
	}
	for _, d := range []string{"plugins", "conf.d"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("external mode wrote into %s: %v", d, err)
		}
	}
}
