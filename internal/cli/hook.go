package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/pkg/agentapi"
)

func init() { subcommands = append(subcommands, newHookCommand) }

func newHookCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Install karmor-hook for CRI-O, Podman, containerd or plain OCI bundles",
		Long: `karmor-hook is the OCI hook that tells karmord about every container start and stop. These
commands put it where runtimes run it: hooks.d files for CRI-O and Podman, the karmor-nri plugin
for containerd, or the hooks of a plain OCI bundle's config.json for runc. Docker and containerd
without NRI use the karmor-runc wrapper (docs/runtimes-containerd-docker.md).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return usagef("hook needs a subcommand; see 'karmor hook --help'")
		},
	}
	cmd.AddCommand(newHookInstallCommand(), newHookUninstallCommand(), newHookStatusCommand(), newHookInjectCommand())
	return cmd
}

// addHookConfigFlags registers the flags that become karmor-hook's arguments.
func addHookConfigFlags(f *pflag.FlagSet, h *install.HookConfig) {
	f.StringVar(&h.Path, "hook-path", h.Path, "where the karmor-hook binary is (installed to)")
	f.StringVar(&h.Socket, "socket", h.Socket, "karmord's socket, passed to the hook")
	f.StringVar(&h.SpoolDir, "spool-dir", h.SpoolDir, "spool directory for events karmord could not take, passed to the hook")
	f.DurationVar(&h.Timeout, "timeout", h.Timeout, "the hook's deadline for karmord's acknowledgement")
	f.StringVar(&h.LogFile, "log-file", h.LogFile, "file the hook also logs to (default: the runtime's log only)")
	f.BoolVar(&h.FailClosed, "fail-closed", h.FailClosed, "make the hook refuse a start when karmord did not take its event")
	f.StringArrayVar(&h.AllowNamespaces, "allow-namespace", nil, "with --fail-closed, Kubernetes namespace whose containers always start (repeatable)")
	f.StringArrayVar(&h.AllowAnnotations, "allow-annotation", nil, "with --fail-closed, KEY or KEY=VALUE annotation whose containers always start (repeatable)")
}

func checkHookConfig(h install.HookConfig) error {
	if err := h.Check(); err != nil {
		return usagef("%v", err)
	}
	return nil
}

func newHookInstallCommand() *cobra.Command {
	h := install.DefaultHookConfig()
	var runtime, hooksDir, binary string
	ctrd := &containerdInstallOptions{}
	docker := &dockerOptions{}
	cmd := &cobra.Command{
		Use:   "install --runtime cri-o|podman|containerd|docker",
		Short: "Install karmor-hook for CRI-O or Podman (hooks.d), for containerd (the karmor-nri plugin) or for Docker (karmor-runc)",
		Long: `Copy karmor-hook into place (atomically, mode 0755) and write one hooks.d file per stage
(karmor-createRuntime.json, karmor-poststop.json) that runs it for every container.

The hooks directory defaults to the one the runtime reads: /usr/share/containers/oci/hooks.d for
both Podman and CRI-O. The binary copied is the karmor-hook beside this karmor, unless
--hook-binary names another. --socket, --spool-dir, --timeout, --log-file, --fail-closed and
the allow-lists become the hook's arguments.

containerd reads no hooks.d: --runtime containerd installs karmor-hook and the karmor-nri plugin,
which adds the hook (and the pod's labels) to every container through NRI, and says how to enable
NRI when containerd's config has it off.

Docker runs no hooks of its own: --runtime docker installs karmor-hook and karmor-runc, writes
karmor-runc's configuration (--runc-config) with the hook's settings, and registers karmor-runc in
dockerd's daemon.json (--daemon-json) as a runtime (--docker-runtime, default karmor), and as its
default-runtime with --default-runtime. Other keys of daemon.json are kept. dockerd then needs a
reload (systemctl reload docker).`,
		Example: `  karmor hook install --runtime podman
  karmor hook install --runtime cri-o --fail-closed --allow-namespace kube-system --allow-namespace karmor
  karmor hook install --runtime containerd
  karmor hook install --runtime docker --default-runtime`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime == "" {
				return usagef("--runtime is required: %s, %s, %s or %s", install.RuntimeCRIO, install.RuntimePodman, runtimeContainerd, install.RuntimeDocker)
			}
			if runtime == runtimeContainerd {
				return installContainerd(cmd, h, binary, ctrd)
			}
			if runtime == install.RuntimeDocker {
				return installDocker(cmd, h, binary, docker)
			}
			if _, err := install.DefaultHooksDirFor(runtime); err != nil {
				return usagef("%v", err)
			}
			if err := checkHookConfig(h); err != nil {
				return err
			}
			if binary == "" {
				var err error
				if binary, err = siblingHookBinary(); err != nil {
					return err
				}
			}
			res, err := install.Install(install.Options{Runtime: runtime, HooksDir: hooksDir, HookBinary: binary, Hook: h})
			if err != nil {
				return fmt.Errorf("%w (run as root, or point --hooks-dir and --hook-path at writable places)", err)
			}
			out := cmd.OutOrStdout()
			if res.BinaryCopied {
				fmt.Fprintf(out, "installed %s (from %s)\n", res.Binary, binary)
			} else {
				fmt.Fprintf(out, "kept %s (already in place)\n", res.Binary)
			}
			for _, f := range res.Files {
				fmt.Fprintf(out, "wrote %s\n", f)
			}
			fmt.Fprintf(out, "%s runs karmor-hook for new containers; it reports to %s\n", runtime, h.Socket)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "", "the runtime to install for: cri-o, podman, containerd or docker")
	f.StringVar(&hooksDir, "hooks-dir", "", "hooks.d directory (default: the runtime's)")
	f.StringVar(&binary, "hook-binary", "", "karmor-hook binary to install (default: the one beside karmor)")
	addHookConfigFlags(f, &h)
	addContainerdInstallFlags(f, ctrd)
	addDockerFlags(f, docker, true)
	return cmd
}

// siblingHookBinary is the karmor-hook installed beside the running karmor.
func siblingHookBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find karmor's own directory: %w; pass --hook-binary", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	p := filepath.Join(filepath.Dir(exe), install.HookProgram)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no karmor-hook beside karmor (%s): %w; pass --hook-binary", p, err)
	}
	return p, nil
}

func newHookUninstallCommand() *cobra.Command {
	var runtime, hooksDir, hookPath string
	ctrd := &containerdLocations{}
	docker := &dockerOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall --runtime cri-o|podman|containerd|docker",
		Short: "Remove karmor's hooks.d files (or karmor-nri), then the karmor-hook binary they run",
		Long: `Remove karmor's hooks.d files, then the karmor-hook binary they run.

--runtime containerd removes what 'hook install --runtime containerd' wrote: the pre-registered
karmor-nri and its configuration, or its systemd unit; then karmor-nri; then karmor-hook, unless
a karmor-nri still runs or a CRI-O/Podman hooks.d file (--hooks-dir, default theirs) uses it.
It takes install's flags that say where things are, and only removes files that are karmor's.

--runtime docker removes karmor-runc's runtime (and default-runtime) from daemon.json, then
karmor-runc and its configuration; karmor-hook is kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime == runtimeContainerd {
				return uninstallContainerd(cmd, hookPath, hooksDir, ctrd)
			}
			if runtime == install.RuntimeDocker {
				return uninstallDocker(cmd, docker)
			}
			if runtime == "" && hooksDir == "" {
				return usagef("--runtime (or --hooks-dir) is required")
			}
			if runtime != "" {
				if _, err := install.DefaultHooksDirFor(runtime); err != nil {
					return usagef("%v", err)
				}
			}
			res, err := install.Uninstall(runtime, hooksDir, hookPath)
			out := cmd.OutOrStdout()
			if res != nil {
				for _, f := range res.Files {
					fmt.Fprintf(out, "removed %s\n", f)
				}
				if res.Binary != "" {
					fmt.Fprintf(out, "removed %s\n", res.Binary)
				}
			}
			if err != nil {
				return err
			}
			if len(res.Files) == 0 && res.Binary == "" {
				fmt.Fprintln(out, "nothing to remove: karmor-hook was not installed there")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "", "the runtime to uninstall from: cri-o, podman, containerd or docker")
	f.StringVar(&hooksDir, "hooks-dir", "", "hooks.d directory (default: the runtime's; containerd: CRI-O's and Podman's, whose karmor files keep karmor-hook)")
	f.StringVar(&hookPath, "hook-path", install.DefaultHookPath, "the binary to remove when no hooks file (or karmor-nri configuration) names one")
	addContainerdLocationFlags(f, ctrd)
	addDockerFlags(f, docker, false)
	return cmd
}

func newHookStatusCommand() *cobra.Command {
	var runtime, hooksDir, hookPath, socket, containerdBin string
	var agentTimeout time.Duration
	ctrd := &containerdLocations{}
	docker := &dockerOptions{}
	cmd := &cobra.Command{
		Use:   "status [--runtime cri-o|podman|containerd|docker]",
		Short: "Show where karmor-hook (and karmor-nri) is installed and whether karmord answers",
		Long: `Show karmor's hooks.d files, the karmor-hook binary they run and its version, and whether
karmord answers on the hook's socket.

--runtime containerd shows instead whether containerd's configuration enables NRI, the
pre-registered karmor-nri and its configuration or its systemd unit, karmor-hook and its version,
and whether karmord answers; it takes install's flags that say where things are.

--runtime docker shows daemon.json's karmor runtime (and whether it is the default-runtime),
karmor-runc, its configuration, the karmor-hook it names and whether karmord answers.

Exit status: 0 when the hook is installed (for containerd: karmor-nri too, and NRI is on) and
karmord answers, 1 otherwise, 2 for a usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime == runtimeContainerd {
				return statusContainerd(cmd, containerdStatusOptions{HookPath: hookPath, Socket: socket, SocketSet: cmd.Flags().Changed("socket"),
					AgentTimeout: agentTimeout, ContainerdBin: containerdBin}, ctrd)
			}
			if runtime == install.RuntimeDocker {
				return statusDocker(cmd, docker, socket, cmd.Flags().Changed("socket"), agentTimeout)
			}
			if runtime != "" {
				if _, err := install.DefaultHooksDirFor(runtime); err != nil {
					return usagef("%v", err)
				}
			} else if hooksDir == "" {
				hooksDir = install.DefaultHooksDir
			}
			rep, err := install.Status(cmd.Context(), runtime, hooksDir, hookPath)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("socket") && rep.Socket != "" {
				socket = rep.Socket
			}
			healthy := printHookStatus(cmd.Context(), cmd.OutOrStdout(), rep, socket, agentTimeout)
			if !healthy {
				return exitError{code: ExitFailure}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&runtime, "runtime", "", "the runtime: cri-o or podman (their hooks directory), containerd (karmor-nri) or docker (karmor-runc)")
	f.StringVar(&hooksDir, "hooks-dir", "", "hooks.d directory (default: "+install.DefaultHooksDir+")")
	f.StringVar(&hookPath, "hook-path", install.DefaultHookPath, "the binary to look at when no hooks file (or karmor-nri configuration) names one")
	f.StringVar(&socket, "socket", agentapi.DefaultSocket, "karmord's socket (default: the installed hook's)")
	f.DurationVar(&agentTimeout, "agent-timeout", time.Second, "how long to wait for karmord's answer")
	addContainerdLocationFlags(f, ctrd)
	addContainerdBinFlag(f, &containerdBin)
	addDockerFlags(f, docker, false)
	return cmd
}

// printHookStatus writes the report and asks karmord for its containers; it returns whether
// everything is in place and karmord answered.
func printHookStatus(ctx context.Context, out io.Writer, rep *install.Report, socket string, timeout time.Duration) bool {
	fmt.Fprintf(out, "hooks directory: %s\n", rep.HooksDir)
	for _, f := range rep.Files {
		switch {
		case !f.Present:
			fmt.Fprintf(out, "  %-13s not installed (%s)\n", f.Stage, f.Path)
		case f.Err != nil:
			fmt.Fprintf(out, "  %-13s broken: %v\n", f.Stage, f.Err)
		default:
			fmt.Fprintf(out, "  %-13s %s: %s %q\n", f.Stage, f.Path, f.Hook.Path, f.Hook.Args[1:])
		}
	}
	for _, b := range rep.Binaries {
		switch {
		case !b.Present:
			fmt.Fprintf(out, "binary: %s missing\n", b.Path)
		case b.Err != nil:
			fmt.Fprintf(out, "binary: %s present, version unknown: %v\n", b.Path, b.Err)
		default:
			fmt.Fprintf(out, "binary: %s version %s\n", b.Path, b.Version)
		}
	}
	answers := checkAgent(ctx, out, socket, timeout)
	installed := rep.Installed()
	if !installed {
		fmt.Fprintln(out, "karmor-hook is not (fully) installed here; run 'karmor hook install --runtime cri-o|podman'")
	}
	return installed && answers
}

// checkAgent asks karmord for its containers, says whether it answered, and returns whether it did.
func checkAgent(ctx context.Context, out io.Writer, socket string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &agentapi.Client{Socket: socket, Timeout: timeout}
	list, err := client.List(ctx)
	if err != nil {
		fmt.Fprintf(out, "agent: not answering at %s: %v\n", socket, err)
		return false
	}
	fmt.Fprintf(out, "agent: karmord answers at %s (%d containers)\n", socket, len(list))
	return true
}

func newHookInjectCommand() *cobra.Command {
	h := install.DefaultHookConfig()
	cmd := &cobra.Command{
		Use:   "inject BUNDLE",
		Short: "Add karmor-hook to an OCI bundle's config.json (for plain runc)",
		Long: `Add karmor-hook's createRuntime and poststop hooks to BUNDLE/config.json, atomically. Other
hooks and fields are kept as they are; running it again changes nothing (an earlier karmor hook
with other arguments is replaced).`,
		Example: `  runc spec && karmor hook inject . && runc run web1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkHookConfig(h); err != nil {
				return err
			}
			if fi, err := os.Stat(h.Path); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("karmor-hook is not at %s (the runtime would fail every start): install it or pass --hook-path", h.Path)
			}
			changed, err := install.InjectBundle(args[0], h)
			if err != nil {
				return err
			}
			if changed {
				fmt.Fprintf(cmd.OutOrStdout(), "added karmor-hook to %s\n", filepath.Join(args[0], "config.json"))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s already runs karmor-hook\n", filepath.Join(args[0], "config.json"))
			}
			return nil
		},
	}
	addHookConfigFlags(cmd.Flags(), &h)
	return cmd
}
