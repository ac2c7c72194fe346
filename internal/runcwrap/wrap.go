// Package runcwrap is karmor-runc: a wrapper invoked exactly as runc, for runtimes that run no
// hooks of their own choosing (Docker, containerd without NRI). On `create` and `run` it adds
// karmor's hooks to the bundle's config.json (once, atomically, leaving other hooks alone, through
// internal/install), then execs the real runc with the same argv. Every other command execs runc
// at once. A failure to inject never stops the container: the wrapper logs it where runc's caller
// reads runc's log and execs runc anyway.
//
// It imports only the standard library and internal/install, so that it starts as fast as a Go
// program can: it sits in front of every runc call.
package runcwrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/karmor/karmor/internal/install"
)

// Configuration file and environment.
const (
	// DefaultConfigPath is the wrapper's configuration file; it is optional.
	DefaultConfigPath = "/etc/karmor/karmor-runc.json"
	// EnvConfig points the wrapper at another configuration file.
	EnvConfig = "KARMOR_RUNC_CONFIG"
	// maxConfigBytes bounds the configuration file.
	maxConfigBytes = 64 << 10
)

// Config is the wrapper's configuration file, JSON. Every field is optional.
type Config struct {
	// Runtime is the real runc (a path, or a name looked up on PATH); KARMOR_RUNC wins over it.
	Runtime string `json:"runtime,omitempty"`
	// The hook's settings, as `karmor hook install` takes them.
	HookPath         string   `json:"hook_path,omitempty"`
	Socket           string   `json:"socket,omitempty"`
	SpoolDir         string   `json:"spool_dir,omitempty"`
	Timeout          string   `json:"timeout,omitempty"`
	LogFile          string   `json:"log_file,omitempty"`
	FailClosed       bool     `json:"fail_closed,omitempty"`
	AllowNamespaces  []string `json:"allow_namespaces,omitempty"`
	AllowAnnotations []string `json:"allow_annotations,omitempty"`
}

// HookConfig returns the hook configuration: install's defaults overridden by the file's fields.
func (c Config) HookConfig() (install.HookConfig, error) {
	h := install.DefaultHookConfig()
	override := func(dst *string, src string) {
		if src != "" {
			*dst = src
		}
	}
	override(&h.Path, c.HookPath)
	override(&h.Socket, c.Socket)
	override(&h.SpoolDir, c.SpoolDir)
	override(&h.LogFile, c.LogFile)
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return h, fmt.Errorf("timeout: %w", err)
		}
		h.Timeout = d
	}
	h.FailClosed = c.FailClosed
	h.AllowNamespaces, h.AllowAnnotations = c.AllowNamespaces, c.AllowAnnotations
	return h, h.Check()
}

// ConfigFromHook renders a hook configuration (and the real runtime) as the wrapper's file.
func ConfigFromHook(h install.HookConfig, runtime string) Config {
	return Config{Runtime: runtime, HookPath: h.Path, Socket: h.Socket, SpoolDir: h.SpoolDir, Timeout: h.Timeout.String(),
		LogFile: h.LogFile, FailClosed: h.FailClosed, AllowNamespaces: h.AllowNamespaces, AllowAnnotations: h.AllowAnnotations}
}

// LoadConfig reads the configuration file at path. A missing file is the empty configuration;
// unknown fields and trailing data are errors.
func LoadConfig(path string) (Config, error) {
	var c Config
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxConfigBytes {
		return c, fmt.Errorf("%s is larger than %d bytes", path, maxConfigBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return Config{}, fmt.Errorf("%s: trailing data after the JSON object", path)
	}
	return c, nil
}

// Env is what the wrapper reads from its process.
type Env struct {
	Args   []string // the whole argv, program name first
	Getenv func(string) string
	Getwd  func() (string, error)
	Stderr io.Writer
	// Self is the wrapper's own executable (/proc/self/exe), never exec'd as the runtime.
	Self string
	// Exec replaces the process (syscall.Exec), which returns only on failure; a nil return
	// (a recording Exec in tests) makes Main return 0.
	Exec func(path string, argv, envv []string) error
	// Environ is passed to the runtime unchanged.
	Environ []string
}

// Main runs the wrapper: inject on create/run, then exec the runtime. It returns only when the
// runtime cannot be exec'd, with the exit code to use.
func Main(e Env) int {
	inv := ParseArgs(e.Args[1:])
	want := e.Getenv(EnvRuntime)
	var cfg Config
	var cfgErr error
	// The configuration file is read only when it can matter: for create/run (the hook's
	// settings), or to find the runtime when KARMOR_RUNC does not name it.
	if inv.NeedsHooks() || want == "" {
		path := e.Getenv(EnvConfig)
		if path == "" {
			path = DefaultConfigPath
		}
		cfg, cfgErr = LoadConfig(path)
		if want == "" {
			want = cfg.Runtime
		}
	}
	runtime, err := ResolveRuntime(want, e.Getenv("PATH"), e.Self)
	if err != nil {
		fmt.Fprintf(e.Stderr, "karmor-runc: cannot find the real runc: %v\n", err)
		return 127
	}
	if inv.NeedsHooks() {
		if err := inject(inv, e, cfg, cfgErr); err != nil {
			logWarning(inv, e.Stderr, "karmor-runc: karmor's hooks were not added; the container starts unreported", err)
		}
	}
	argv := append([]string{runtime}, e.Args[1:]...)
	if err := e.Exec(runtime, argv, e.Environ); err != nil {
		fmt.Fprintf(e.Stderr, "karmor-runc: exec %s: %v\n", runtime, err)
		return 127
	}
	return 0
}

func inject(inv Invocation, e Env, cfg Config, cfgErr error) error {
	if cfgErr != nil {
		return fmt.Errorf("configuration: %w", cfgErr)
	}
	h, err := cfg.HookConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	cwd, err := e.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	bundle := inv.BundleDir(cwd)
	_, err = install.InjectBundle(bundle, h)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No config.json: runc refuses the bundle itself and says so in its own words.
		return nil
	case err != nil:
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	return nil
}

// logWarning writes one warning where runc's caller reads runc's messages: the --log file in
// --log-format (containerd's shim and dockerd read it), else stderr. It never writes to stdout or
// to stderr when a log file is given: for `create`, those may be the container's own stdio.
func logWarning(inv Invocation, stderr io.Writer, msg string, err error) {
	w := stderr
	if inv.LogPath != "" && filepath.IsAbs(inv.LogPath) {
		f, ferr := os.OpenFile(inv.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if ferr != nil {
			return // nowhere safe to say it; runc will report its own problems with that file
		}
		defer f.Close()
		w = f
	}
	var h slog.Handler
	if inv.LogFormat == "json" {
		h = slog.NewJSONHandler(w, nil)
	} else {
		h = slog.NewTextHandler(w, nil)
	}
	slog.New(h).Warn(msg, "err", err.Error())
}
