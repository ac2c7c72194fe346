package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	bin, err := exec.LookPath("containerd")
	if err != nil {
		bin = filepath.Join(testutil.GoBinDir(), "containerd")
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("SKIP (loud): containerd not on PATH or in %s; install it with: %s", testutil.GoBinDir(), testutil.ContainerdInstallHint)
		}
	}
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
