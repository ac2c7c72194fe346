package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/runcwrap"
)

// dockerOptions say where Docker's pieces go: daemon.json, the runtime's name, karmor-runc and
// its configuration file.
type dockerOptions struct {
	daemonJSON  string
	runtimeName string
	wrapperPath string
	wrapperConf string
	// install only
	makeDefault   bool
	wrapperBinary string
}

func addDockerFlags(f *pflag.FlagSet, o *dockerOptions, forInstall bool) {
	f.StringVar(&o.daemonJSON, "daemon-json", install.DefaultDaemonJSON, "docker: dockerd's configuration file")
	f.StringVar(&o.runtimeName, "docker-runtime", install.DefaultDockerRuntimeName, "docker: the runtime name karmor-runc is registered under")
	f.StringVar(&o.wrapperPath, "runc-path", install.DefaultRuncWrapperPath, "docker: where karmor-runc is installed")
	f.StringVar(&o.wrapperConf, "runc-config", runcwrap.DefaultConfigPath, "docker: karmor-runc's configuration file (karmor-runc reads another only when $"+runcwrap.EnvConfig+" names it)")
	if forInstall {
		f.BoolVar(&o.makeDefault, "default-runtime", false, "docker: make karmor-runc dockerd's default-runtime, so every container gets the hook without --runtime")
		f.StringVar(&o.wrapperBinary, "runc-binary", "", "docker: karmor-runc binary to install (default: the one beside karmor)")
	}
}

// installDocker puts karmor-hook and karmor-runc into place, writes karmor-runc's configuration
// (the hook's settings) and registers karmor-runc in daemon.json. dockerd is not signalled: the
// operator reloads it, as printed.
func installDocker(cmd *cobra.Command, h install.HookConfig, hookBinary string, o *dockerOptions) error {
	if err := checkHookConfig(h); err != nil {
		return err
	}
	if !filepath.IsAbs(o.wrapperPath) || !filepath.IsAbs(o.wrapperConf) {
		return usagef("--runc-path and --runc-config must be absolute paths")
	}
	var err error
	if hookBinary == "" {
		if hookBinary, err = siblingHookBinary(); err != nil {
			return err
		}
	}
	if o.wrapperBinary == "" {
		if o.wrapperBinary, err = siblingProgram(install.RuncWrapperProgram, "--runc-binary"); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	for _, p := range []struct{ src, dst string }{{hookBinary, h.Path}, {o.wrapperBinary, o.wrapperPath}} {
		copied, err := install.CopyProgram(p.src, p.dst)
		if err != nil {
			return fmt.Errorf("%w (run as root)", err)
		}
		if copied {
			fmt.Fprintf(out, "installed %s (from %s)\n", p.dst, p.src)
		} else {
			fmt.Fprintf(out, "kept %s (already in place)\n", p.dst)
		}
	}
	conf, err := json.MarshalIndent(runcwrap.ConfigFromHook(h, ""), "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.wrapperConf), 0o755); err != nil {
		return err
	}
	if err := install.WriteFileAtomic(o.wrapperConf, append(conf, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "wrote %s\n", o.wrapperConf)
	changed, err := install.SetDockerRuntime(o.daemonJSON, o.runtimeName, o.wrapperPath, o.makeDefault)
	if err != nil {
		return err
	}
	if !changed {
		fmt.Fprintf(out, "kept %s (runtime %q already registered)\n", o.daemonJSON, o.runtimeName)
		return nil
	}
	fmt.Fprintf(out, "wrote %s: runtime %q runs %s", o.daemonJSON, o.runtimeName, o.wrapperPath)
	if o.makeDefault {
		fmt.Fprint(out, ", and is dockerd's default-runtime")
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "reload dockerd to use it: systemctl reload docker (or kill -HUP $(pidof dockerd)); containers already running keep running without the hook")
	if !o.makeDefault {
		fmt.Fprintf(out, "then: docker run --runtime %s ...\n", o.runtimeName)
	}
	fmt.Fprintf(out, "karmor-runc reports to %s; give karmord --runtime-root /run/docker/runtime-runc/moby so that its reconciliation sees Docker's containers\n", h.Socket)
	return nil
}

// uninstallDocker removes karmor-runc from daemon.json, then karmor-runc and its configuration.
// karmor-hook stays: CRI-O's, Podman's or containerd's installs may run it too.
func uninstallDocker(cmd *cobra.Command, o *dockerOptions) error {
	out := cmd.OutOrStdout()
	was, err := install.RemoveDockerRuntime(o.daemonJSON, o.runtimeName)
	if err != nil {
		return err
	}
	if was.Present || was.Default {
		fmt.Fprintf(out, "removed runtime %q from %s", o.runtimeName, o.daemonJSON)
		if was.Default {
			fmt.Fprint(out, " (it was the default-runtime)")
		}
		fmt.Fprintln(out, "\nreload dockerd first (systemctl reload docker): it runs karmor-runc until then")
	}
	for _, p := range []string{o.wrapperPath, o.wrapperConf} {
		switch err := os.Remove(p); {
		case err == nil:
			fmt.Fprintf(out, "removed %s\n", p)
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
	}
	fmt.Fprintln(out, "karmor-hook is kept (other runtimes may run it); 'karmor hook uninstall --runtime cri-o|podman|containerd' removes it")
	return nil
}

// statusDocker shows daemon.json's entry, karmor-runc, its configuration, karmor-hook and
// whether karmord answers; it fails unless all are in place and karmord answers.
func statusDocker(cmd *cobra.Command, o *dockerOptions, socket string, socketSet bool, timeout time.Duration) error {
	out := cmd.OutOrStdout()
	ok := true
	rt, err := install.ReadDockerRuntime(o.daemonJSON, o.runtimeName)
	switch {
	case err != nil:
		fmt.Fprintf(out, "daemon.json: %v\n", err)
		ok = false
	case !rt.Present:
		fmt.Fprintf(out, "daemon.json: %s has no runtime %q\n", o.daemonJSON, o.runtimeName)
		ok = false
	default:
		def := "not the default-runtime (containers need --runtime " + o.runtimeName + ")"
		if rt.Default {
			def = "the default-runtime"
		}
		fmt.Fprintf(out, "daemon.json: %s: runtime %q runs %s, %s\n", o.daemonJSON, o.runtimeName, rt.Path, def)
		if rt.Path != o.wrapperPath {
			o.wrapperPath = rt.Path
		}
	}
	// karmor-runc answers --version with runc's version (it passes every argument on), so
	// only its presence is checked.
	if fi, err := os.Stat(o.wrapperPath); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		fmt.Fprintf(out, "karmor-runc: %s is missing or not an executable file\n", o.wrapperPath)
		ok = false
	} else {
		fmt.Fprintf(out, "karmor-runc: %s\n", o.wrapperPath)
	}
	conf, err := runcwrap.LoadConfig(o.wrapperConf)
	var h install.HookConfig
	if err == nil {
		h, err = conf.HookConfig()
	}
	if err != nil {
		fmt.Fprintf(out, "karmor-runc configuration: %s: %v\n", o.wrapperConf, err)
		return exitError{code: ExitFailure}
	}
	fmt.Fprintf(out, "karmor-runc configuration: %s: hook %s, socket %s\n", o.wrapperConf, h.Path, h.Socket)
	if v, err := install.ProgramVersion(cmd.Context(), h.Path, install.HookProgram); err != nil {
		fmt.Fprintf(out, "binary: %s: %v\n", h.Path, err)
		ok = false
	} else {
		fmt.Fprintf(out, "binary: %s version %s\n", h.Path, v)
	}
	if !socketSet {
		socket = h.Socket
	}
	if !checkAgent(cmd.Context(), out, socket, timeout) {
		ok = false
	}
	if !ok {
		return exitError{code: ExitFailure}
	}
	return nil
}
