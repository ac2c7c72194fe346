package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/karmor/karmor/pkg/agentapi"
)

func init() { subcommands = append(subcommands, newStatusCommand) }

// statusReport is `karmor status -o json`: karmord's health, or why it could not be asked.
type statusReport struct {
	Socket string `json:"socket"`
	// Error is set when karmord did not answer; Live and Ready are then false.
	Error string `json:"error,omitempty"`
	agentapi.Health
}

func newStatusCommand() *cobra.Command {
	socket, output := agentapi.DefaultSocket, "table"
	timeout := 5 * time.Second
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether karmord is healthy and ready, and why not",
		Long: `Ask karmord whether it is healthy and ready, and show each of its checks: its socket still in
place (the one failure that makes it unhealthy: restart karmord), the first reconciliation with
the runtimes' state done, every policy source loaded (or kept from its cache), and KubeArmor
connected when karmord feeds it. Kubernetes reads the same checks from --health-addr's /healthz
and /readyz.

Exit status: 0 when karmord is ready, 1 when it is unhealthy, not ready or not answering, 2 for a
usage error.`,
		Example: `  karmor status
  karmor status -o json --socket /run/karmor/karmor.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usagef("-o %q: want table or json", output)
			}
			rep := askHealth(cmd.Context(), socket, timeout)
			out := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else {
				printStatus(out, rep)
			}
			if !rep.Live || !rep.Ready {
				return exitError{code: ExitFailure}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&socket, "socket", socket, "karmord's socket")
	f.StringVarP(&output, "output", "o", output, "output format: table or json")
	f.DurationVar(&timeout, "timeout", timeout, "how long to wait for karmord's answer")
	return cmd
}

func askHealth(ctx context.Context, socket string, timeout time.Duration) statusReport {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := &agentapi.Client{Socket: socket, Timeout: timeout}
	rep := statusReport{Socket: socket}
	h, err := cl.Health(ctx)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.Health = *h
	return rep
}

func printStatus(out io.Writer, rep statusReport) {
	if rep.Error != "" {
		fmt.Fprintf(out, "karmord at %s: not answering: %s\n", rep.Socket, rep.Error)
		return
	}
	state := "ready"
	switch {
	case !rep.Live:
		state = "unhealthy (restart it)"
	case !rep.Ready:
		state = "not ready"
	}
	fmt.Fprintf(out, "karmord at %s: %s\n", rep.Socket, state)
	for _, c := range rep.Checks {
		mark := "ok"
		if !c.OK {
			mark = "FAIL"
		}
		name := c.Name
		if c.Source != "" {
			name += " " + c.Source
		}
		line := fmt.Sprintf("  %-4s  %s", mark, name)
		if c.Detail != "" {
			line += ": " + c.Detail
		}
		fmt.Fprintln(out, line)
	}
}
