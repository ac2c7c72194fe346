package nri

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/karmor/karmor/internal/install"
)

// MaxConfigBytes bounds the plugin configuration the runtime hands over.
const MaxConfigBytes = 64 << 10

// fileConfig is the plugin configuration file, <plugin_config_path>/10-karmor.conf, which the
// runtime passes to a plugin it starts itself (such a plugin gets no command line). Every field is
// optional and overrides the corresponding karmor-nri flag's value.
type fileConfig struct {
	// PluginLogFile is where karmor-nri itself logs: a plugin the runtime starts has its output
	// discarded, so without this its messages are lost.
	PluginLogFile    *string   `yaml:"plugin_log_file,omitempty"`
	HookPath         *string   `yaml:"hook_path,omitempty"`
	Socket           *string   `yaml:"socket,omitempty"`
	SpoolDir         *string   `yaml:"spool_dir,omitempty"`
	Timeout          *string   `yaml:"timeout,omitempty"`
	LogFile          *string   `yaml:"log_file,omitempty"`
	FailClosed       *bool     `yaml:"fail_closed,omitempty"`
	AllowNamespaces  *[]string `yaml:"allow_namespaces,omitempty"`
	AllowAnnotations *[]string `yaml:"allow_annotations,omitempty"`
}

// Config is karmor-nri's configuration: how karmor-hook runs, and where the plugin logs.
type Config struct {
	Hook install.HookConfig
	// PluginLogFile, when set, receives karmor-nri's own log lines (appended, created 0600).
	PluginLogFile string
}

// ParseConfig applies a YAML plugin configuration to base and checks the result. Unknown fields,
// duplicate keys and more than one document are errors, so a typo does not silently fall back to
// a default.
func ParseConfig(data []byte, base Config) (Config, error) {
	if len(data) > MaxConfigBytes {
		return base, fmt.Errorf("plugin configuration is %d bytes (limit %d)", len(data), MaxConfigBytes)
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return base, fmt.Errorf("plugin configuration: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return base, errors.New("plugin configuration: more than one YAML document")
	}
	c := base
	h := &c.Hook
	set := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	set(&c.PluginLogFile, fc.PluginLogFile)
	if c.PluginLogFile != "" && !filepath.IsAbs(c.PluginLogFile) {
		return base, fmt.Errorf("plugin configuration: plugin_log_file %q must be absolute", c.PluginLogFile)
	}
	set(&h.Path, fc.HookPath)
	set(&h.Socket, fc.Socket)
	set(&h.SpoolDir, fc.SpoolDir)
	set(&h.LogFile, fc.LogFile)
	if fc.Timeout != nil {
		d, err := time.ParseDuration(*fc.Timeout)
		if err != nil {
			return base, fmt.Errorf("plugin configuration: timeout: %w", err)
		}
		h.Timeout = d
	}
	if fc.FailClosed != nil {
		h.FailClosed = *fc.FailClosed
	}
	if fc.AllowNamespaces != nil {
		h.AllowNamespaces = *fc.AllowNamespaces
	}
	if fc.AllowAnnotations != nil {
		h.AllowAnnotations = *fc.AllowAnnotations
	}
	if err := h.Check(); err != nil {
		return base, fmt.Errorf("plugin configuration: %w", err)
	}
	return c, nil
}

// FormatConfig renders c as the plugin configuration file ParseConfig reads.
func FormatConfig(c Config) ([]byte, error) {
	h := c.Hook
	timeout := h.Timeout.String()
	fc := fileConfig{HookPath: &h.Path, Socket: &h.Socket, SpoolDir: &h.SpoolDir, Timeout: &timeout}
	if c.PluginLogFile != "" {
		fc.PluginLogFile = &c.PluginLogFile
	}
	if h.LogFile != "" {
		fc.LogFile = &h.LogFile
	}
	if h.FailClosed {
		fc.FailClosed = &h.FailClosed
	}
	if len(h.AllowNamespaces) > 0 {
		fc.AllowNamespaces = &h.AllowNamespaces
	}
	if len(h.AllowAnnotations) > 0 {
		fc.AllowAnnotations = &h.AllowAnnotations
	}
	out, err := yaml.Marshal(&fc)
	if err != nil {
		return nil, err
	}
	return append([]byte("# karmor-nri: how karmor-hook runs in each container (see docs/runtimes-containerd-docker.md)\n"), out...), nil
}
