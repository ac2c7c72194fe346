package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// containerdLocations are the flags that say where `hook install --runtime containerd` puts
// things; uninstall and status take the same ones to find them.
type containerdLocations struct {
	ConfigPath    string // containerd's config.toml: NRI's directories and whether NRI is on
	PluginDir     string // preregistered: NRI's plugin_path (default: containerd's)
	PluginConfDir string // preregistered: NRI's plugin_config_path (default: containerd's)
	PluginIndex   string
	NRIPath       string // systemd: where karmor-nri goes
	SystemdDir    string // systemd: where the unit goes
}

// containerdInstallOptions are the flags only `hook install --runtime containerd` uses.
type containerdInstallOptions struct {
	containerdLocations
	ContainerdBin string // asked for its version: NRI's default differs between 1.7 and 2.x
	Start         string // nri.StartPreregistered or nri.StartSystemd
	NRIBinary     string // the karmor-nri to install (default: beside karmor)
}

// addContainerdLocationFlags registers the flags that locate karmor-nri's files.
func addContainerdLocationFlags(f *pflag.FlagSet, o *containerdLocations) {
	f.StringVar(&o.ConfigPath, "containerd-config", nri.DefaultContainerdConfig, "containerd: its config.toml, read for NRI's directories and whether NRI is on")
	f.StringVar(&o.PluginDir, "nri-plugin-dir", "", "containerd, preregistered: NRI's plugin_path (default: containerd's)")
	f.StringVar(&o.PluginConfDir, "nri-conf-dir", "", "containerd, preregistered: NRI's plugin_config_path (default: containerd's)")
	f.StringVar(&o.PluginIndex, "nri-plugin-index", nri.DefaultPluginIndex, "containerd: the plugin's two-digit NRI index")
	f.StringVar(&o.NRIPath, "nri-path", nri.DefaultBinaryPath, "containerd, systemd: where karmor-nri is installed")
	f.StringVar(&o.SystemdDir, "systemd-dir", nri.DefaultSystemdDir, "containerd, systemd: where the "+nri.SystemdUnitName+" unit is written")
}

// addContainerdInstallFlags registers the containerd flags on `karmor hook install`.
func addContainerdInstallFlags(f *pflag.FlagSet, o *containerdInstallOptions) {
	addContainerdLocationFlags(f, &o.containerdLocations)
	addContainerdBinFlag(f, &o.ContainerdBin)
	f.StringVar(&o.Start, "nri-start", nri.StartPreregistered, "containerd: how karmor-nri runs: preregistered (containerd starts it), systemd (a unit) or external (run by something else, e.g. the Helm chart's DaemonSet: only karmor-hook is installed)")
	f.StringVar(&o.NRIBinary, "nri-binary", "", "containerd: the karmor-nri to install (default: the one beside karmor)")
}

func addContainerdBinFlag(f *pflag.FlagSet, bin *string) {
	f.StringVar(bin, "containerd-bin", "containerd", "containerd: its binary, asked for its version (NRI's default depends on it)")
}

// check returns a usage error for a plugin index or karmor-nri path install would refuse.
func (o *containerdLocations) check() error {
	if len(o.PluginIndex) != 2 || strings.Trim(o.PluginIndex, "0123456789") != "" {
		return usagef("--nri-plugin-index %q: want two digits", o.PluginIndex)
	}
	if !filepath.IsAbs(o.NRIPath) {
		return usagef("--nri-path %q must be absolute", o.NRIPath)
	}
	return nil
}

// locations are where karmor-nri's files are: the flags, and containerd's NRI directories
// (from status) where the flags leave them out.
func (o *containerdLocations) locations(status nri.NRIStatus, hookPath string) nri.Locations {
	return nri.Locations{HookPath: hookPath, PluginIndex: o.PluginIndex,
		PluginDir: firstOf(o.PluginDir, status.PluginPath), PluginConfigDir: firstOf(o.PluginConfDir, status.PluginConfigPath),
		SystemdDir: o.SystemdDir, BinaryPath: o.NRIPath}
}

// installContainerd installs karmor-hook and karmor-nri for containerd and says whether
// containerd's configuration lets the plugin in. hookBinary is the karmor-hook to copy ("" for
// the one beside karmor). When NRI is off it still installs, prints the lines that turn it on,
// and exits 1.
func installContainerd(cmd *cobra.Command, h install.HookConfig, hookBinary string, o *containerdInstallOptions) error {
	if err := checkHookConfig(h); err != nil {
		return err
	}
	if o.Start == nriStartExternal {
		return installHookForExternalNRI(cmd, h, hookBinary, o)
	}
	if o.Start != nri.StartPreregistered && o.Start != nri.StartSystemd {
		return usagef("--nri-start %q: want %s, %s or %s", o.Start, nri.StartPreregistered, nri.StartSystemd, nriStartExternal)
	}
	if err := o.check(); err != nil {
		return err
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
		if nriBinary, err = siblingProgram(nri.NRIProgram, "--nri-binary"); err != nil {
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

// nriStartExternal is --nri-start external: karmor-nri is run by something else that connects it
// to NRI's socket (the Helm chart's DaemonSet runs it beside karmord), so install only puts
// karmor-hook in place, where the plugin's hooks name it.
const nriStartExternal = "external"

// installHookForExternalNRI copies karmor-hook into place and says whether containerd's
// configuration lets an external plugin in. It fails only when the copy does: containerd's
// configuration and version may not be visible from where it runs (a container), and the plugin
// reports itself whether it could register.
func installHookForExternalNRI(cmd *cobra.Command, h install.HookConfig, hookBinary string, o *containerdInstallOptions) error {
	var err error
	if hookBinary == "" {
		if hookBinary, err = siblingProgram(install.HookProgram, "--hook-binary"); err != nil {
			return err
		}
	}
	copied, err := install.CopyProgram(hookBinary, h.Path)
	if err != nil {
		return fmt.Errorf("%w (run as root, or point --hook-path at a writable place)", err)
	}
	out := cmd.OutOrStdout()
	if copied {
		fmt.Fprintf(out, "installed %s (from %s)\n", h.Path, hookBinary)
	} else {
		fmt.Fprintf(out, "kept %s (already in place)\n", h.Path)
	}
	status, err := nri.CheckContainerdConfig(o.ConfigPath, containerdVersion(cmd.Context(), o.ContainerdBin))
	switch {
	case err != nil:
		fmt.Fprintf(out, "containerd's configuration could not be read (%v); karmor-nri's log says whether it registers\n", err)
	case !status.Enabled:
		fmt.Fprintf(out, "warning: NRI looks off in containerd (%s); karmor-nri cannot register until it is on:\n\n%s\n", status.Reason, status.Fix)
	case status.ExternalPluginsRefused:
		fmt.Fprintln(out, "warning: containerd sets disable_connections = true and refuses plugins it did not start")
	default:
		fmt.Fprintf(out, "NRI is on in containerd (%s; socket %s)\n", status.Reason, status.Socket)
	}
	fmt.Fprintf(out, "run karmor-nri connected to NRI's socket with --hook-path %s; it adds karmor-hook to every new container\n", h.Path)
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

// containerdHooksDirs are the hooks.d directories whose karmor files may run the same
// karmor-hook as karmor-nri: dir when given, else the ones CRI-O and Podman read.
func containerdHooksDirs(dir string) []string {
	if dir != "" {
		return []string{dir}
	}
	var dirs []string
	for _, rt := range install.Runtimes {
		if d, err := install.DefaultHooksDirFor(rt); err == nil && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// uninstallContainerd removes what `hook install --runtime containerd` wrote and says what is
// left to do. It exits 1 when it left something at one of karmor's paths.
func uninstallContainerd(cmd *cobra.Command, hookPath, hooksDir string, o *containerdLocations) error {
	if err := o.check(); err != nil {
		return err
	}
	if !filepath.IsAbs(hookPath) {
		return usagef("--hook-path %q must be absolute", hookPath)
	}
	status, err := nri.CheckContainerdConfig(o.ConfigPath, "")
	if err != nil && (o.PluginDir == "" || o.PluginConfDir == "") {
		return fmt.Errorf("%w: it says where NRI's plugin directories are; fix it, or pass --nri-plugin-dir and --nri-conf-dir", err)
	}
	loc := o.locations(status, hookPath)
	loc.HooksDirs = containerdHooksDirs(hooksDir)
	res, err := nri.Uninstall(cmd.Context(), loc)
	out := cmd.OutOrStdout()
	if res != nil {
		for _, p := range res.Removed {
			fmt.Fprintf(out, "removed %s\n", p)
		}
		for _, p := range res.Absent {
			fmt.Fprintf(out, "absent %s\n", p)
		}
		for _, f := range res.Left {
			fmt.Fprintf(out, "left %s; remove it yourself if it is karmor's\n", f.Why)
		}
		for _, k := range res.HookKept {
			for _, r := range res.Running {
				fmt.Fprintf(out, "kept %s: karmor-nri still runs (pid %d, %s) and adds it to new containers\n", k.Path, r.PID, r.Exe)
			}
			for _, f := range k.UsedBy {
				fmt.Fprintf(out, "kept %s: %s runs it for CRI-O or Podman ('karmor hook uninstall --runtime cri-o|podman' removes both)\n", k.Path, f)
			}
		}
		if res.UnitRemoved {
			fmt.Fprintln(out, "the karmor-nri unit is gone from disk; stop the running plugin and reload systemd: systemctl stop karmor-nri && systemctl daemon-reload")
		}
		if res.PluginRemoved {
			fmt.Fprintln(out, "containerd runs the pre-registered karmor-nri until it restarts: systemctl restart containerd")
		}
		if len(res.Running) > 0 && len(res.HookKept) > 0 {
			fmt.Fprintf(out, "once karmor-nri has stopped, run again to remove karmor-hook: karmor hook uninstall --runtime containerd --hook-path %s\n", res.HookKept[0].Path)
		}
	}
	if err != nil {
		return fmt.Errorf("%w (run as root, or point the path and directory flags at what install wrote)", err)
	}
	if len(res.Left) > 0 || len(res.HookKept) > 0 {
		return exitError{code: ExitFailure}
	}
	if len(res.Removed) == 0 {
		fmt.Fprintln(out, "nothing to remove: karmor-nri and karmor-hook were not installed there")
	}
	return nil
}

// containerdStatusOptions are `hook status --runtime containerd`'s inputs.
type containerdStatusOptions struct {
	HookPath      string
	Socket        string // karmord's socket; SocketSet when the user named it
	SocketSet     bool
	AgentTimeout  time.Duration
	ContainerdBin string
}

// statusContainerd shows whether containerd's configuration enables NRI, what
// `hook install --runtime containerd` put where, and whether karmord answers. It exits 1 unless
// all three are fine.
func statusContainerd(cmd *cobra.Command, so containerdStatusOptions, o *containerdLocations) error {
	if err := o.check(); err != nil {
		return err
	}
	if !filepath.IsAbs(so.HookPath) {
		return usagef("--hook-path %q must be absolute", so.HookPath)
	}
	out := cmd.OutOrStdout()
	healthy := true
	status, err := nri.CheckContainerdConfig(o.ConfigPath, containerdVersion(cmd.Context(), so.ContainerdBin))
	switch {
	case err != nil:
		healthy = false
		fmt.Fprintf(out, "containerd: %v (NRI's default directories are shown)\n", err)
		status.PluginPath, status.PluginConfigPath = nri.DefaultPluginPath, nri.DefaultPluginConfigPath
	case status.Enabled:
		fmt.Fprintf(out, "containerd: NRI is on (%s; socket %s)\n", status.Reason, status.Socket)
	default:
		healthy = false
		fmt.Fprintf(out, "containerd: NRI is OFF, so karmor-nri cannot add karmor-hook: %s\n", status.Reason)
		if status.Fix != "" {
			fmt.Fprintf(out, "  add to %s, then restart containerd:\n%s", firstOf(status.ConfigPath, o.ConfigPath+" (absent: create it)"), indent(status.Fix, "    "))
		}
	}
	rep, err := nri.Status(cmd.Context(), o.locations(status, so.HookPath))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "karmor-nri, pre-registered: %s\n", describeProgram(rep.Plugin))
	if rep.Plugin.Present || rep.PluginConfig.Present {
		fmt.Fprintf(out, "  configuration: %s\n", describeFile(rep.PluginConfig))
	}
	fmt.Fprintf(out, "karmor-nri, systemd unit: %s\n", describeFile(rep.Unit))
	if rep.UnitProgram.Path != "" {
		fmt.Fprintf(out, "  runs: %s\n", describeProgram(rep.UnitProgram))
	}
	fmt.Fprintf(out, "karmor-hook: %s\n", describeProgram(rep.Hook))
	if rep.HookConfig != nil {
		args := rep.HookConfig.Args("")
		fmt.Fprintf(out, "  karmor-nri adds it with: %s\n", strings.Join(args[1:len(args)-1], " "))
		if !so.SocketSet {
			so.Socket = rep.HookConfig.Socket
		}
	}
	if rep.Preregistered() && rep.Systemd() {
		fmt.Fprintln(out, "warning: karmor-nri is installed both ways, so two would run; remove one of them")
	}
	if !checkAgent(cmd.Context(), out, so.Socket, so.AgentTimeout) {
		healthy = false
	}
	if !rep.Installed() {
		healthy = false
		fmt.Fprintln(out, "karmor-nri is not (fully) installed here; run 'karmor hook install --runtime containerd'")
	}
	if !healthy {
		return exitError{code: ExitFailure}
	}
	return nil
}

func describeFile(f nri.FileStatus) string {
	switch {
	case !f.Present:
		return "not installed (" + f.Path + ")"
	case f.Err != nil:
		return "broken: " + f.Err.Error()
	}
	return f.Path
}

func describeProgram(p nri.ProgramStatus) string {
	if !p.OK() {
		return describeFile(p.FileStatus)
	}
	return p.Path + " version " + p.Version
}

// indent puts prefix before every line of s.
func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if line != "" {
			b.WriteString(prefix + line)
		}
	}
	return b.String()
}
