// Package install puts karmor-hook where container runtimes run it: it copies the binary into
// place, writes hooks.d files for CRI-O and Podman, and injects the hooks into plain OCI bundles
// (for runc users, and for the runc wrapper). Every write is atomic: a temporary file in the
// target directory, fsync, then rename.
package install

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/pkg/agentapi"
)

// Defaults for where things go.
const (
	// DefaultHookPath is where the hook binary is installed.
	DefaultHookPath = "/usr/local/bin/karmor-hook"
	// DefaultHooksDir is the hooks.d directory both runtimes read by default: Podman 4 reads only
	// this one unless containers.conf sets hooks_dir, and CRI-O's default hooks_dir lists only it.
	DefaultHooksDir = "/usr/share/containers/oci/hooks.d"
	// HookProgram is the hook's program name (args[0]).
	HookProgram = "karmor-hook"
	// DefaultHookTimeout is the hook's own deadline for karmord's acknowledgement.
	DefaultHookTimeout = 2 * time.Second
)

// Runtimes that read hooks.d files.
const (
	RuntimeCRIO   = "cri-o"
	RuntimePodman = "podman"
)

// Runtimes lists the runtimes Install knows.
var Runtimes = []string{RuntimeCRIO, RuntimePodman}

// DefaultHooksDirFor returns the hooks.d directory runtime reads by default.
func DefaultHooksDirFor(runtime string) (string, error) {
	switch runtime {
	case RuntimeCRIO, RuntimePodman:
		return DefaultHooksDir, nil
	}
	return "", fmt.Errorf("unknown runtime %q (want %s or %s)", runtime, RuntimeCRIO, RuntimePodman)
}

// Stages are the hook stages karmor installs: createRuntime reports a start once the init
// process is in its namespaces and before the user's program runs; poststop reports the stop.
var Stages = []string{"createRuntime", "poststop"}

// HookConfig is how the installed hook runs: its path and the flags it is given.
type HookConfig struct {
	// Path is the hook binary's absolute path.
	Path     string
	Socket   string
	SpoolDir string
	// LogFile, when set, is passed as --log-file.
	LogFile string
	// Timeout is the hook's deadline for karmord's acknowledgement.
	Timeout          time.Duration
	FailClosed       bool
	AllowNamespaces  []string
	AllowAnnotations []string
}

// DefaultHookConfig returns the configuration `karmor hook install` uses without flags.
func DefaultHookConfig() HookConfig {
	return HookConfig{
		Path:     DefaultHookPath,
		Socket:   agentapi.DefaultSocket,
		SpoolDir: agentapi.DefaultSpoolDir,
		Timeout:  DefaultHookTimeout,
	}
}

// Check reports whether the configuration can be installed.
func (h HookConfig) Check() error {
	switch {
	case !filepath.IsAbs(h.Path):
		return fmt.Errorf("hook path %q must be absolute (runtimes exec it without a PATH search)", h.Path)
	case h.Socket == "" || h.SpoolDir == "":
		return fmt.Errorf("the hook needs a socket and a spool directory")
	case h.Timeout <= 0:
		return fmt.Errorf("hook timeout must be positive, got %v", h.Timeout)
	}
	return nil
}

// Args returns the hook's argv for stage, program name first and the stage last.
func (h HookConfig) Args(stage string) []string {
	args := []string{HookProgram, "--socket", h.Socket, "--spool-dir", h.SpoolDir, "--timeout", h.Timeout.String()}
	if h.LogFile != "" {
		args = append(args, "--log-file", h.LogFile)
	}
	if h.FailClosed {
		args = append(args, "--fail-closed")
	}
	for _, ns := range h.AllowNamespaces {
		args = append(args, "--allow-namespace", ns)
	}
	for _, a := range h.AllowAnnotations {
		args = append(args, "--allow-annotation", a)
	}
	return append(args, stage)
}

// RuntimeTimeout is the timeout, in whole seconds, after which the runtime kills the hook (and
// fails the start). It leaves the hook time to give up on karmord and spool the event first.
func (h HookConfig) RuntimeTimeout() int {
	secs := int(math.Ceil(h.Timeout.Seconds())) + 3
	return max(secs, 5)
}

// OCIHook returns the hook entry for stage as it goes into config.json.
func (h HookConfig) OCIHook(stage string) rspec.Hook {
	timeout := h.RuntimeTimeout()
	return rspec.Hook{Path: h.Path, Args: h.Args(stage), Timeout: &timeout}
}

// isKarmorHook reports whether an existing hook entry is karmor's: same path, or a binary named
// karmor-hook (an earlier install elsewhere).
func isKarmorHook(hk rspec.Hook, h HookConfig) bool {
	return hk.Path == h.Path || filepath.Base(hk.Path) == HookProgram
}

// sameHook reports whether two hook entries run the same command with the same timeout.
func sameHook(a, b rspec.Hook) bool {
	return a.Path == b.Path && slices.Equal(a.Args, b.Args) && slices.Equal(a.Env, b.Env) &&
		(a.Timeout == nil) == (b.Timeout == nil) && (a.Timeout == nil || *a.Timeout == *b.Timeout)
}
