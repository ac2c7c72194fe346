package nri

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

// The plugin's registration defaults. NRI orders plugins by index; 10 runs karmor's adjustment
// early, and no other plugin's change to the hooks or annotations can be lost by it.
const (
	DefaultPluginName  = "karmor"
	DefaultPluginIndex = "10"
)

// RunOptions configure the plugin's connection to the runtime.
type RunOptions struct {
	// Socket is the runtime's NRI socket (DefaultSocket when empty).
	Socket string
	// Name and Index register the plugin (DefaultPluginName and DefaultPluginIndex when empty).
	// A plugin the runtime started itself from its plugin dir takes both from NRI_PLUGIN_NAME and
	// NRI_PLUGIN_IDX instead, as NRI does.
	Name, Index string
	// MinBackoff and MaxBackoff bound the wait between connection attempts (100 ms and 5 s when zero).
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Launched reports whether the runtime started this process as a pre-registered plugin: it
// then passes a connected socket in NRI_PLUGIN_SOCKET, which cannot be dialled again.
func Launched() bool { return os.Getenv(api.PluginSocketEnvVar) != "" }

// Run connects the plugin to the runtime and serves it until ctx ends. When the connection ends
// (the runtime restarted, or is not up yet) it connects again, waiting MinBackoff, doubling up to
// MaxBackoff, and back to MinBackoff after a connection that was accepted. A plugin the runtime
// launched itself returns instead when its connection ends: the runtime starts it again.
func Run(ctx context.Context, p *Plugin, opts RunOptions) error {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(5*time.Second, opts.MinBackoff)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	launched := Launched()
	stubOpts := []stub.Option{
		stub.WithLogger(slogAdapter{logger}),
		// Say explicitly what NRI's default already is: when the plugin times out or is gone,
		// the container is created without it (fail-open), and a slow answer does not cost the
		// plugin its registration.
		stub.WithFailurePolicy(&api.FailurePolicy{FailRequest: false, KeepConnected: true}),
	}
	if !launched {
		name, index := opts.Name, opts.Index
		if name == "" {
			name = DefaultPluginName
		}
		if index == "" {
			index = DefaultPluginIndex
		}
		if err := api.CheckPluginIndex(index); err != nil {
			return fmt.Errorf("plugin index: %w", err)
		}
		stubOpts = append(stubOpts, stub.WithPluginName(name), stub.WithPluginIdx(index), stub.WithSocketPath(opts.Socket))
	}

	backoff := opts.MinBackoff
	for {
		s, err := stub.New(p, stubOpts...)
		if err != nil {
			return fmt.Errorf("create NRI plugin: %w", err)
		}
		started := time.Now()
		err = s.Run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if launched {
			return fmt.Errorf("connection to the runtime that launched karmor-nri ended: %w", err)
		}
		// A connection the runtime accepted and kept for a while was healthy: start over quickly.
		if time.Since(started) > opts.MaxBackoff {
			backoff = opts.MinBackoff
		}
		logger.Warn("karmor-nri: not connected to the runtime's NRI socket; retrying",
			"socket", opts.Socket, "err", errorOrClosed(err), "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, opts.MaxBackoff)
	}
}

func errorOrClosed(err error) string {
	if err == nil {
		return "connection closed"
	}
	return err.Error()
}

// slogAdapter routes the NRI stub's logs to slog; its Info lines (registration, configuration)
// are useful once per connection, so they stay at Info.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Debugf(ctx context.Context, f string, args ...any) {
	a.l.DebugContext(ctx, "nri: "+fmt.Sprintf(f, args...))
}
func (a slogAdapter) Infof(ctx context.Context, f string, args ...any) {
	a.l.InfoContext(ctx, "nri: "+fmt.Sprintf(f, args...))
}
func (a slogAdapter) Warnf(ctx context.Context, f string, args ...any) {
	a.l.WarnContext(ctx, "nri: "+fmt.Sprintf(f, args...))
}
func (a slogAdapter) Errorf(ctx context.Context, f string, args ...any) {
	a.l.ErrorContext(ctx, "nri: "+fmt.Sprintf(f, args...))
}
