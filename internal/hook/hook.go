package hook

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
	"github.com/karmor/karmor/internal/version"
	"github.com/karmor/karmor/pkg/agentapi"
)

// Exit codes. The runtime treats any non-zero exit as a failed hook and refuses the start, so
// karmor-hook only exits non-zero when told to fail closed (or for a command line it cannot
// run with while --fail-closed is on it).
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Outcome is what one run of the hook did.
type Outcome struct {
	// Event is the event built from the state; nil when the state could not be read.
	Event *agentapi.Event
	// Seq is karmord's sequence number for the event when it was delivered.
	Seq       uint64
	Delivered bool
	// SpoolPath is where the event was spooled when it was not delivered.
	SpoolPath string
	// Allowed is true when the container matched an allow-list.
	Allowed bool
	// Err is why the event was not delivered (nil when it was).
	Err error
}

// ExitCode is the process exit code for o under opts: 0 unless failing closed for a start (or an
// unreadable state) of a container that is not allow-listed and whose event karmord did not
// take. A stop never fails: the container is gone, and a failing poststop hook would only make
// the runtime's cleanup fail.
func (o *Outcome) ExitCode(opts Options) int {
	if o.Delivered || !opts.FailClosed || o.Allowed || o.Event != nil && o.Event.Kind == agentapi.KindStop {
		return ExitOK
	}
	return ExitFailed
}

// Main runs karmor-hook with args (without the program name) and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	started := time.Now()
	opts, err := ParseArgs(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, Usage())
		return ExitOK
	}
	logs := &logSink{stderr: stderr, path: opts.LogFile}
	defer logs.Close()
	if err != nil {
		logger := newLogger(logs, false)
		if wantsFailClosed(args) {
			logger.Error("karmor-hook cannot run; refusing the start because --fail-closed is set; fix the hook's arguments", "args", strings.Join(args, " "), "err", err)
			return ExitUsage
		}
		logger.Error("karmor-hook cannot run; the container starts unreported; fix the hook's arguments", "args", strings.Join(args, " "), "err", err)
		return ExitOK
	}
	if opts.Version {
		fmt.Fprintf(stdout, "karmor-hook %s\n", version.String())
		return ExitOK
	}
	logger := newLogger(logs, opts.Verbose)
	out := Run(context.Background(), opts, stdin, logger, started)
	return out.ExitCode(opts)
}

// Run reads one OCI state from stdin and reports it to karmord, spooling the event when karmord
// does not acknowledge it before started+opts.Timeout. It logs what went wrong to logger; it
// never panics on bad input.
func Run(ctx context.Context, opts Options, stdin io.Reader, logger *slog.Logger, started time.Time) *Outcome {
	out := &Outcome{}
	state, err := containerinfo.ReadState(stdin)
	if err != nil {
		out.Err = err
		logger.Error("cannot read the container's OCI state from stdin; the container is not reported", "stage", opts.Stage, "err", err, "fail_closed", opts.FailClosed)
		return out
	}
	stage, kind := opts.Stage, KindForStage(opts.Stage)
	if kind == "" {
		kind = kindForStatus(state.Status)
	}
	if kind == "" {
		out.Err = fmt.Errorf("no stage given and state status %q says neither start nor stop", state.Status)
		logger.Error("cannot tell a start from a stop; pass the stage as an argument (createRuntime or poststop)", "id", state.ID, "err", out.Err)
		return out
	}

	var spec *rspec.Spec
	ev := &agentapi.Event{Kind: kind, Stage: stage, Time: started.UTC()}
	if kind == agentapi.KindStart {
		spec = describeStart(ev, state, opts, logger)
	} else {
		ev.Container = agentapi.Container{ID: state.ID, PID: state.Pid}
	}
	out.Event = ev
	out.Allowed = opts.FailClosed && allowListed(opts, state, spec, ev.Container.Namespace)
	if err := ev.Check(); err != nil {
		out.Err = err
		logger.Error("the container's state cannot make a valid event; it is not reported", "id", state.ID, "err", err)
		return out
	}

	deadline := started.Add(opts.Timeout)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	client := &agentapi.Client{Socket: opts.Socket, Timeout: opts.Timeout}
	ev.HookDuration = time.Since(started)
	seq, err := client.Report(rctx, ev)
	if err == nil {
		out.Delivered, out.Seq = true, seq
		logger.Info("reported", "kind", kind, "stage", stage, "id", state.ID, "seq", seq, "took", time.Since(started))
		return out
	}
	out.Err = err
	spooled, serr := agentapi.Spool(opts.SpoolDir, ev, agentapi.DefaultSpoolLimits)
	path := spooled.Path
	out.SpoolPath = path
	if len(spooled.Evicted) > 0 {
		logger.Warn("the spool is full; dropped the oldest spooled starts to make room (counted in the spool's dropped file)",
			"dropped", spooled.Evicted, "spool", opts.SpoolDir)
	}
	level, verdict := slog.LevelWarn, "the container starts (fail-open)"
	switch {
	case ev.Kind == agentapi.KindStop:
		verdict = "the stop is recorded when karmord replays the spool"
	case opts.FailClosed && !out.Allowed:
		level, verdict = slog.LevelError, "refusing the start (--fail-closed)"
	case opts.FailClosed:
		verdict = "the container starts (allow-listed)"
	}
	if serr != nil {
		logger.Error("karmord did not take the event and it could not be spooled; it is lost until karmord reconciles; "+verdict,
			"kind", kind, "id", state.ID, "socket", opts.Socket, "err", err, "spool_err", serr)
		return out
	}
	logger.Log(ctx, level, "karmord did not take the event; spooled for replay; "+verdict,
		"kind", kind, "id", state.ID, "socket", opts.Socket, "spool", path, "err", err)
	return out
}

// describeStart fills ev's container for a start from the state, the bundle's config and
// /proc. What cannot be read is logged and left out: a partial event is better than none.
// It returns the spec (nil when unreadable) for the allow-list.
func describeStart(ev *agentapi.Event, state *rspec.State, opts Options, logger *slog.Logger) *rspec.Spec {
	spec, err := containerinfo.ReadSpecSummary(state.Bundle)
	if err != nil {
		logger.Warn("cannot read the container's config.json; reporting what the state says", "id", state.ID, "err", err)
	}
	c := containerinfo.FromOCI(state, spec)
	if err := containerinfo.ReadLibpodIdentity(&c); err != nil {
		logger.Warn("cannot find the Podman container's name", "id", state.ID, "err", err)
	}
	if state.Pid > 0 {
		if err := containerinfo.ReadProc(opts.ProcRoot, state.Pid, &c); err != nil {
			logger.Warn("cannot read all of the container's /proc entries", "id", state.ID, "pid", state.Pid, "err", err)
		}
	} else {
		logger.Warn("the state has no pid; reporting the start without namespaces", "id", state.ID, "stage", opts.Stage)
	}
	ev.Container = c
	return spec
}

// kindForStatus infers the event kind from an OCI state's status when no stage was named.
func kindForStatus(s rspec.ContainerState) string {
	switch s {
	case rspec.StateCreating, rspec.StateCreated, rspec.StateRunning:
		return agentapi.KindStart
	case rspec.StateStopped:
		return agentapi.KindStop
	}
	return ""
}

// allowListed reports whether the container matches --allow-namespace (against namespace, the
// Kubernetes namespace already read into the event) or --allow-annotation. It looks at the full
// annotations (state over config), not the bounded copy in the event.
func allowListed(opts Options, state *rspec.State, spec *rspec.Spec, namespace string) bool {
	annotation := func(k string) (string, bool) {
		if v, ok := state.Annotations[k]; ok {
			return v, true
		}
		if spec != nil {
			v, ok := spec.Annotations[k]
			return v, ok
		}
		return "", false
	}
	if namespace != "" && slices.Contains(opts.AllowNamespaces, namespace) {
		return true
	}
	for _, a := range opts.AllowAnnotations {
		key, want, hasValue := strings.Cut(a, "=")
		if v, ok := annotation(key); ok && (!hasValue || v == want) {
			return true
		}
	}
	return false
}

// newLogger logs text lines at warning level and above, or info when verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})).With("prog", "karmor-hook")
}

// logSink writes to stderr (the runtime's log) and, when path is set, appends to that file,
// which it opens only when there is something to log so that a quiet run touches no file.
type logSink struct {
	stderr  io.Writer
	path    string
	file    *os.File
	openErr error
}

func (s *logSink) Write(p []byte) (int, error) {
	n, err := s.stderr.Write(p)
	if s.path == "" {
		return n, err
	}
	if s.file == nil && s.openErr == nil {
		s.file, s.openErr = os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if s.openErr != nil {
			fmt.Fprintf(s.stderr, "karmor-hook: cannot open --log-file %s: %v\n", s.path, s.openErr)
		}
	}
	if s.file != nil {
		_, _ = s.file.Write(p)
	}
	return n, err
}

// Close closes the log file if one was opened.
func (s *logSink) Close() error {
	if s.file == nil {
		return nil
	}
	return s.file.Close()
}
