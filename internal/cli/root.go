// Package cli is the karmor command line: it parses flags and calls the packages that do the work.
package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every karmor command.
const (
	ExitOK      = 0
	ExitFailure = 1 // validation, registry, network, runtime failures
	ExitUsage   = 2 // bad flags or arguments
)

// usageError marks an error as the caller's mistake (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns an error that makes karmor exit with ExitUsage.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitError carries an exit code for a failure whose message was already printed
// (for example `policy validate` after listing the invalid documents).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// NewRootCommand builds the karmor command tree.
func NewRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "karmor",
		Short:         "KubeArmor policies as OCI artifacts, and container events without the CRI socket",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newVersionCommand())
	for _, add := range subcommands {
		root.AddCommand(add())
	}
	return root
}

// subcommands is filled by the init functions of the files that define each command group,
// so that each group lives in its own file without editing this one.
var subcommands []func() *cobra.Command

// Execute runs karmor with the process's arguments and returns the exit code.
func Execute() int {
	return Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
}

// Run runs karmor with args and returns the exit code; tests call it directly.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(stderr, "Error:", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsageError(err) {
		fmt.Fprintln(stderr, "Run 'karmor --help' for usage.")
		return ExitUsage
	}
	return ExitFailure
}

// isCobraUsageError recognises the argument errors cobra returns itself
// (unknown command, wrong number of arguments), which do not pass through the flag error func.
func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires at most", "unknown flag", "unknown shorthand flag", "required flag(s)"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// writeJSON is every command's -o json / --format json output: indented, one value.
func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
