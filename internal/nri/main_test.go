package nri

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	o, err := ParseArgs([]string{"--nri-socket", "/run/x/nri.sock", "--plugin-index", "42", "--hook-path", "/opt/karmor-hook",
		"--socket", "/run/k.sock", "--spool-dir", "/var/s", "--hook-timeout", "3s", "--allow-namespace", "a", "--allow-namespace", "b",
		"--allow-annotation", "k=v", "--fail-closed", "--log-level", "debug"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	h := o.Config.Hook
	if o.Run.Socket != "/run/x/nri.sock" || o.Run.Index != "42" || o.Run.Name != DefaultPluginName || h.Path != "/opt/karmor-hook" ||
		h.Socket != "/run/k.sock" || h.SpoolDir != "/var/s" || h.Timeout != 3*time.Second || !h.FailClosed ||
		!slices.Equal(h.AllowNamespaces, []string{"a", "b"}) || !slices.Equal(h.AllowAnnotations, []string{"k=v"}) || o.LogLevel != "debug" {
		t.Fatalf("parsed %+v", o)
	}
	d, err := ParseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.Run.Socket != DefaultSocket || d.Config.Hook.Path != "/usr/local/bin/karmor-hook" || d.Run.Index != DefaultPluginIndex {
		t.Fatalf("defaults %+v", d)
	}
}

func TestMainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, ExitOK, "karmor-nri "},
		{[]string{"--help"}, ExitOK, ""},
		{[]string{"--hook-path", "relative"}, ExitUsage, "absolute"},
		{[]string{"--log-level", "loud"}, ExitUsage, "log level"},
		{[]string{"extra"}, ExitUsage, "unexpected"},
		{[]string{"--no-such-flag"}, ExitUsage, "not defined"},
		{[]string{"--plugin-index", "7"}, ExitFailure, "index"},
		{[]string{"--log-file", "/nonexistent-dir/x.log"}, ExitFailure, "log file"},
	} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		code := Main(ctx, tc.args, &stdout, &stderr)
		cancel()
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("%q: exit %d, output %q; want %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.out)
		}
	}
}

// Main stops cleanly (exit 0) when its context ends while it waits for a runtime.
func TestMainStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logPath := filepath.Join(t.TempDir(), "nri.log")
	go func() {
		done <- Main(ctx, []string{"--nri-socket", filepath.Join(t.TempDir(), "absent.sock"), "--log-file", logPath}, io.Discard, io.Discard)
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("exit %d", code)
		}
		b, _ := os.ReadFile(logPath)
		if !strings.Contains(string(b), "not connected") || !strings.Contains(string(b), "karmor-nri stopped") {
			t.Fatalf("log file does not show the retries and the stop:\n%s", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Main did not stop")
	}
}

func TestCommandLineRoundTrip(t *testing.T) {
	in, err := ParseArgs([]string{"--nri-socket", "/run/x.sock", "--plugin-index", "20", "--hook-path", "/opt/a b/karmor-hook", "--socket", "/run/k.sock",
		"--hook-timeout", "1.5s", "--fail-closed", "--allow-namespace", "kube-system", "--allow-annotation", "a=b", "--log-file", "/var/log/n.log"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	args := CommandLine(in)
	out, err := ParseArgs(args, io.Discard)
	if err != nil {
		t.Fatalf("%q: %v", args, err)
	}
	if out.Run.Socket != in.Run.Socket || out.Run.Index != in.Run.Index || out.Config.Hook.Path != in.Config.Hook.Path ||
		out.Config.Hook.Timeout != in.Config.Hook.Timeout || !out.Config.Hook.FailClosed || out.Config.PluginLogFile != in.Config.PluginLogFile ||
		!slices.Equal(out.Config.Hook.AllowNamespaces, in.Config.Hook.AllowNamespaces) || !slices.Equal(out.Config.Hook.AllowAnnotations, in.Config.Hook.AllowAnnotations) {
		t.Fatalf("round trip through %q:\n got %+v\nwant %+v", args, out, in)
	}
	d, _ := ParseArgs(nil, io.Discard)
	if args := CommandLine(d); len(args) != 0 {
		t.Fatalf("defaults need no flags, got %q", args)
	}
}
