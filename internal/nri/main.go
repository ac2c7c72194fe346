package nri

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/karmor/karmor/internal/install"
	"github.com/karmor/karmor/internal/version"
)

// Exit codes of karmor-nri.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// Options is karmor-nri's command line.
type Options struct {
	Run    RunOptions
	Config Config
	// LogLevel is debug, info, warn or error.
	LogLevel string
	Version  bool
}

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// ParseArgs parses karmor-nri's flags (args without the program name). A plugin the runtime starts
// itself gets none and runs on the defaults plus the runtime's plugin configuration.
func ParseArgs(args []string, stderr io.Writer) (Options, error) {
	o := Options{Config: Config{Hook: install.DefaultHookConfig()}, LogLevel: "info"}
	h := &o.Config.Hook
	fs := flag.NewFlagSet("karmor-nri", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Run.Socket, "nri-socket", DefaultSocket, "the runtime's NRI socket (containerd's socket_path)")
	fs.StringVar(&o.Run.Name, "plugin-name", DefaultPluginName, "name to register under")
	fs.StringVar(&o.Run.Index, "plugin-index", DefaultPluginIndex, "two-digit index to register under (orders plugins)")
	fs.StringVar(&h.Path, "hook-path", h.Path, "absolute path of karmor-hook, as the runtime execs it")
	fs.StringVar(&h.Socket, "socket", h.Socket, "karmord's socket, passed to karmor-hook")
	fs.StringVar(&h.SpoolDir, "spool-dir", h.SpoolDir, "karmor-hook's spool directory")
	fs.DurationVar(&h.Timeout, "hook-timeout", h.Timeout, "karmor-hook's deadline for karmord's acknowledgement")
	fs.StringVar(&h.LogFile, "hook-log-file", "", "karmor-hook's --log-file")
	fs.BoolVar(&h.FailClosed, "fail-closed", false, "make karmor-hook refuse starts karmord did not acknowledge (see karmor-hook --help)")
	fs.Var((*repeated)(&h.AllowNamespaces), "allow-namespace", "karmor-hook's --allow-namespace (repeatable)")
	fs.Var((*repeated)(&h.AllowAnnotations), "allow-annotation", "karmor-hook's --allow-annotation (repeatable)")
	fs.StringVar(&o.Config.PluginLogFile, "log-file", "", "append karmor-nri's own log lines to this file instead of stderr")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&o.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Version {
		return o, nil
	}
	if err := h.Check(); err != nil {
		return o, err
	}
	if _, err := parseLevel(o.LogLevel); err != nil {
		return o, err
	}
	return o, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// Main runs karmor-nri until ctx ends and returns its exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "karmor-nri:", err)
		return ExitUsage
	}
	if o.Version {
		fmt.Fprintf(stdout, "karmor-nri %s\n", version.String())
		return ExitOK
	}
	logs := NewLogWriter(stderr)
	defer logs.Close()
	if o.Config.PluginLogFile != "" {
		if err := logs.OpenFile(o.Config.PluginLogFile); err != nil {
			fmt.Fprintln(stderr, "karmor-nri:", err)
			return ExitFailure
		}
	}
	level, _ := parseLevel(o.LogLevel)
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	o.Run.Logger = logger
	p := NewPlugin(o.Config, logger, logs)
	logger.Info("karmor-nri starting", "version", version.String(), "nri_socket", o.Run.Socket, "launched_by_runtime", Launched(),
		"hook", o.Config.Hook.Path, "socket", o.Config.Hook.Socket)
	if err := Run(ctx, p, o.Run); err != nil {
		logger.Error("karmor-nri stopped", "err", err)
		return ExitFailure
	}
	adjusted, failed := p.Stats()
	logger.Info("karmor-nri stopped", "containers_adjusted", adjusted, "failed_open", failed)
	return ExitOK
}

// CommandLine returns the flags that make karmor-nri run with o (what ParseArgs reads back), for
// a systemd unit or any other supervisor. Defaults are left out.
func CommandLine(o Options) []string {
	def := install.DefaultHookConfig()
	h := o.Config.Hook
	var args []string
	add := func(flag, value, dflt string) {
		if value != "" && value != dflt {
			args = append(args, "--"+flag, value)
		}
	}
	add("nri-socket", o.Run.Socket, DefaultSocket)
	add("plugin-name", o.Run.Name, DefaultPluginName)
	add("plugin-index", o.Run.Index, DefaultPluginIndex)
	add("hook-path", h.Path, def.Path)
	add("socket", h.Socket, def.Socket)
	add("spool-dir", h.SpoolDir, def.SpoolDir)
	if h.Timeout != def.Timeout {
		args = append(args, "--hook-timeout", h.Timeout.String())
	}
	add("hook-log-file", h.LogFile, "")
	if h.FailClosed {
		args = append(args, "--fail-closed")
	}
	for _, ns := range h.AllowNamespaces {
		args = append(args, "--allow-namespace", ns)
	}
	for _, a := range h.AllowAnnotations {
		args = append(args, "--allow-annotation", a)
	}
	add("log-file", o.Config.PluginLogFile, "")
	add("log-level", o.LogLevel, "info")
	return args
}
