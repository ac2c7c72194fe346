package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestUsageErrors: bad flags and arguments are usage errors (exit 2), found before anything
// connects anywhere.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"extra"},
		{"--workers", "0"},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
		{"--no-such-flag"},
	} {
		cmd := newCommand(io.Discard)
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		var ue usageError
		if err := cmd.Execute(); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestNoKubeconfig: outside a cluster, with a kubeconfig that does not exist, the error names
// the flag.
func TestNoKubeconfig(t *testing.T) {
	cmd := newCommand(io.Discard)
	cmd.SetArgs([]string{"--kubeconfig", "/nonexistent/kubeconfig", "--metrics-addr", "", "--health-addr", ""})
	err := cmd.Execute()
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("got %v, want a runtime error", err)
	}
	if want := "--kubeconfig /nonexistent/kubeconfig"; !strings.Contains(err.Error(), want) {
		t.Errorf("%v does not name %q", err, want)
	}
}
