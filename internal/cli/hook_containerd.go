package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/nri"
)

// runtimeContainerd is `karmor hook install --runtime containerd`: containerd reads no hooks.d,
// so karmor-hook reaches its containers through the karmor-nri plugin.
const runtimeContainerd = "containerd"

// containerdInstallOptions are the flags only `hook install --runtime containerd` uses.
type containerdInstallOptions struct {
	ConfigPath    string // containerd's config.toml
	ContainerdBin string // asked for its version: NRI's default differs between 1.7 and 2.x
	Start         string // nri.StartPreregistered or nri.StartSystemd
	NRIBinary     string // the karmor-nri to install (default: beside karmor)
	PluginDir     string // preregistered: NRI's plugin_path (default: containerd's)
	PluginConfDir string // preregistered: NRI's plugin_config_path (default: containerd's)
	PluginIndex   string
	NRIPath       string // systemd: where karmor-nri goes
	SystemdDir    string // systemd: where the unit goes
}

// addContainerdInstallFlags registers the containerd flags on `karmor hook install`.
func addContainerdInstallFlags(f *pflag.FlagSet, o *containerdInstallOptions) {
	f.StringVar(&o.ConfigPath, "containerd-config", nri.DefaultContainerdConfig, "containerd: its config.toml, read to check that NRI is on")
	f.StringVar(&o.ContainerdBin, "containerd-bin", "containerd", "containerd: its binary, asked for its version")
	f.StringVar(&o.Start, "nri-start", nri.StartPreregistered, "containerd: how karmor-nri runs: preregistered (containerd starts it) or systemd (a unit)")
	f.StringVar(&o.NRIBinary, "nri-binary", "", "containerd: the karmor-nri to install (default: the one beside karmor)")
	f.StringVar(&o.PluginDir, "nri-plugin-dir", "", "containerd, preregistered: NRI's plugin_path (default: containerd's)")
	f.StringVar(&o.PluginConfDir, "nri-conf-dir", "", "containerd, preregistered: NRI's plugin_config_path (default: containerd's)")
	f.StringVar(&o.PluginIndex, "nri-plugin-index", nri.DefaultPluginIndex, "containerd: the plugin's two-digit NRI index")
	f.StringVar(&o.NRIPath, "nri-path", nri.DefaultBinaryPath, "containerd, systemd: where karmor-nri is installed")
	f.StringVar(&o.SystemdDir, "systemd-dir", nri.DefaultSystemdDir, "containerd, systemd: where the "+nri.SystemdUnitName+" unit is written")
}

// installContainerd installs karmor-hook and karmor-nri for containerd and says whether
// containerd's configuration lets the plugin in. hookBinary is the karmor-hook to copy ("" for
// the one beside karmor). When NRI is off it still installs, prints the lines that turn it on,
// and exits 1.
func installContainerd(cmd *cobra.Command, h install.HookConfig, hookBinary string, o *containerdInstallOptions) error {
	if err := checkHookConfig(h); err != nil {
		return err
	}
	if o.Start != nri.StartPreregistered && o.Start != nri.StartSystemd {
		return usagef("--nri-start %q: want %s or %s", o.Start, nri.StartPreregistered, nri.StartSystemd)
	}
	if len(o.PluginIndex) != 2 || strings.Trim(o.PluginIndex, "0123456789") != "" {
		return usagef("--nri-plugin-index %q: want two digits", o.PluginIndex)
	}
	if o.Start == nri.StartSystemd && !filepath.IsAbs(o.NRIPath) {
		return usagef("--nri-path %q must be absolute", o.NRIPath)
	}
	out := cmd.OutOrStdout()

	status, err := nri.CheckContainerdConfig(o.ConfigPath, containerdVersion(cmd.Context(), o.ContainerdBin))
	if err != nil {
		return fmt.Errorf("%w (fix containerd's configuration, or point --containerd-config at it)", err)
	}
	if hookBinary == "" {
		if hookBinary, err = siblingProgram(install.HookProgram, "--hook-binary"); err != nil {
			return err
		}
	}
	nriBinary := o.NRIBinary
	if nriBinary == "" {
		if nriBinary, err = siblingProgram("karmor-nri", "--nri-binary"); err != nil {
			return err
		}
	}
	if o.Start == nri.StartSystemd && status.ExternalPluginsRefused {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: containerd sets disable_connections = true and refuses plugins it did not start; use --nri-start preregistered")
	}
	res, err := nri.Install(nri.InstallOptions{
		Hook: h, HookBinary: hookBinary, NRIBinary: nriBinary, Start: o.Start, PluginIndex: o.PluginIndex,
		PluginDir: firstOf(o.PluginDir, status.PluginPath), PluginConfigDir: firstOf(o.PluginConfDir, status.PluginConfigPath),
		BinaryPath: o.NRIPath, SystemdDir: o.SystemdDir, Socket: status.Socket,
	})
	if res != nil {
		for _, p := range res.Kept {
			fmt.Fprintf(out, "kept %s (already in place)\n", p)
		}
		for _, p := range res.Written {
			fmt.Fprintf(out, "wrote %s\n", p)
		}
	}
	if err != nil {
		return fmt.Errorf("%w (run as root, or point the path and directory flags at writable places)", err)
	}
	if o.Start == nri.StartSystemd {
		fmt.Fprintln(out, "start it with: systemctl daemon-reload && systemctl enable --now karmor-nri")
	} else {
		fmt.Fprintln(out, "containerd starts pre-registered plugins when it starts: restart it (systemctl restart containerd) to start karmor-nri")
	}

	if !status.Enabled {
		where := status.ConfigPath
		if where == "" {
			where = o.ConfigPath + " (absent: create it)"
		}
		fmt.Fprintf(out, "\nNRI is OFF in containerd, so karmor-nri cannot add karmor-hook: %s.\n", status.Reason)
		if status.Fix != "" {
			fmt.Fprintf(out, "Add to %s, then restart containerd:\n\n%s\n", where, status.Fix)
		}
		return exitError{code: ExitFailure}
	}
	fmt.Fprintf(out, "NRI is on in containerd (%s; socket %s); new containers will report to %s\n", status.Reason, status.Socket, h.Socket)
	return nil
}

// containerdVersion returns `containerd --version`'s output, or "" when it cannot be run.
func containerdVersion(ctx context.Context, bin string) string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// siblingProgram is the named program installed beside the running karmor.
func siblingProgram(name, flag string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find karmor's own directory: %w; pass %s", err, flag)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	p := filepath.Join(filepath.Dir(exe), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s beside karmor (%s): %w; pass %s", name, p, err, flag)
	}
	return p, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
