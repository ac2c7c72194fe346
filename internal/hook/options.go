// Package hook is karmor-hook: the OCI runtime hook that reports each container's start and stop
// to karmord. The runtime execs it at createRuntime (or prestart, poststart) and at poststop with
// the container's state on stdin. It sends one event over karmord's socket and waits for the
// acknowledgement under a hard deadline; when karmord is away or slow it spools the event for
// karmord to replay and lets the container start (fail-open) unless told to fail closed.
//
// It runs on every container start, so it imports little: the standard library, the
// runtime-spec types, pkg/agentapi and internal/containerinfo. It never starts a child process.
package hook

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/karmor/karmor/pkg/agentapi"
)

// DefaultTimeout bounds the whole exchange with karmord.
const DefaultTimeout = 2 * time.Second

// Stages karmor-hook accepts on its command line. createRuntime is the one runtimes should use
// for starts: the init process exists and is in its namespaces, and the user's program has not
// run yet.
const (
	StageCreateRuntime = "createRuntime"
	StagePrestart      = "prestart"
	StagePoststart     = "poststart"
	StagePoststop      = "poststop"
)

// KindForStage returns the event kind a stage reports, or "" for a stage karmor-hook does not
// handle.
func KindForStage(stage string) string {
	switch stage {
	case StageCreateRuntime, StagePrestart, StagePoststart:
		return agentapi.KindStart
	case StagePoststop:
		return agentapi.KindStop
	}
	return ""
}

// Options is karmor-hook's configuration, from its command line.
type Options struct {
	// Stage is the hook stage named on the command line; empty means "infer from the state's
	// status".
	Stage    string
	Socket   string
	SpoolDir string
	// LogFile, when set, receives the log lines too (appended, created 0600).
	LogFile string
	// ProcRoot is where /proc is read (tests point it elsewhere).
	ProcRoot string
	// Timeout bounds the time from the hook's start to karmord's acknowledgement.
	Timeout time.Duration
	// FailClosed makes the hook exit non-zero (the runtime then refuses the start) when karmord
	// did not take the event, except for containers matching the allow-lists.
	FailClosed bool
	// AllowNamespaces are Kubernetes namespaces whose containers start even when failing closed.
	AllowNamespaces []string
	// AllowAnnotations are KEY or KEY=VALUE annotations whose containers start even when
	// failing closed.
	AllowAnnotations []string
	// Verbose logs successful reports too; by default the hook is quiet on success.
	Verbose bool
	// Version prints the version and exits.
	Version bool
}

// DefaultOptions returns the options karmor-hook runs with when given no flags.
func DefaultOptions() Options {
	return Options{
		Socket:   agentapi.DefaultSocket,
		SpoolDir: agentapi.DefaultSpoolDir,
		ProcRoot: "/proc",
		Timeout:  DefaultTimeout,
	}
}

// ErrUsage marks a command line karmor-hook cannot run with.
var ErrUsage = errors.New("usage")

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func newFlagSet(o *Options) *flag.FlagSet {
	fs := flag.NewFlagSet("karmor-hook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.Socket, "socket", o.Socket, "karmord's unix socket")
	fs.StringVar(&o.SpoolDir, "spool-dir", o.SpoolDir, "where events karmord could not take are left for it to replay")
	fs.StringVar(&o.LogFile, "log-file", o.LogFile, "also append log lines to this file (created 0600)")
	fs.StringVar(&o.ProcRoot, "proc-root", o.ProcRoot, "where /proc is mounted")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "deadline for karmord's acknowledgement, from the hook's start")
	fs.BoolVar(&o.FailClosed, "fail-closed", o.FailClosed, "exit non-zero (refusing the start) when karmord did not take the event")
	fs.Var((*repeated)(&o.AllowNamespaces), "allow-namespace", "with --fail-closed, Kubernetes namespace whose containers always start (repeatable)")
	fs.Var((*repeated)(&o.AllowAnnotations), "allow-annotation", "with --fail-closed, KEY or KEY=VALUE annotation whose containers always start (repeatable)")
	fs.BoolVar(&o.Verbose, "verbose", o.Verbose, "log successful reports too")
	fs.BoolVar(&o.Version, "version", o.Version, "print the version and exit")
	return fs
}

// Usage describes karmor-hook's command line.
func Usage() string {
	var b strings.Builder
	b.WriteString("usage: karmor-hook [flags] [createRuntime|prestart|poststart|poststop] < OCI state\n\n")
	b.WriteString("Without a stage, the state's status decides: creating/created/running report a start, stopped a stop.\n\nflags:\n")
	o := DefaultOptions()
	fs := newFlagSet(&o)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// ParseArgs parses karmor-hook's arguments (without the program name). Flags may come before
// or after the stage.
func ParseArgs(args []string) (Options, error) {
	o := DefaultOptions()
	fs := newFlagSet(&o)
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return o, err
			}
			return o, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		if o.Stage != "" {
			return o, fmt.Errorf("%w: more than one stage (%q and %q)", ErrUsage, o.Stage, rest[0])
		}
		if KindForStage(rest[0]) == "" {
			return o, fmt.Errorf("%w: unknown hook stage %q (want createRuntime, prestart, poststart or poststop)", ErrUsage, rest[0])
		}
		o.Stage = rest[0]
		rest = rest[1:]
	}
	switch {
	case o.Timeout <= 0:
		return o, fmt.Errorf("%w: --timeout must be positive, got %v", ErrUsage, o.Timeout)
	case o.Socket == "":
		return o, fmt.Errorf("%w: --socket must not be empty", ErrUsage)
	case o.SpoolDir == "":
		return o, fmt.Errorf("%w: --spool-dir must not be empty", ErrUsage)
	}
	for _, a := range o.AllowAnnotations {
		if k, _, _ := strings.Cut(a, "="); k == "" {
			return o, fmt.Errorf("%w: --allow-annotation %q has no key", ErrUsage, a)
		}
	}
	return o, nil
}

// wantsFailClosed reports whether a command line that did not parse asked to fail closed, so
// that a broken hook configuration cannot silently open a node that was meant to be closed. It
// reads --fail-closed as Go's flag package would have: -fail-closed or --fail-closed, alone or
// with =VALUE in any spelling strconv.ParseBool accepts, the last one winning. A value that
// does not parse (--fail-closed=yes) counts as closed: the operator asked for the flag, and the
// line is broken anyway.
func wantsFailClosed(args []string) bool {
	closed := false
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		if name != "fail-closed" {
			continue
		}
		if !hasValue {
			closed = true
			continue
		}
		b, err := strconv.ParseBool(value)
		closed = err != nil || b
	}
	return closed
}
