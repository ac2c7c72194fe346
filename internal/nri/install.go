package nri

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/nri/pkg/api"

	"github.com/karmor/karmor/internal/install"
)

// How karmor-nri is started beside the runtime.
const (
	// StartPreregistered puts karmor-nri in NRI's plugin_path as <index>-karmor, with its
	// configuration in plugin_config_path: the runtime starts it when the runtime starts.
	StartPreregistered = "preregistered"
	// StartSystemd installs karmor-nri and a systemd unit that runs it and restarts it; it
	// connects to the runtime's NRI socket.
	StartSystemd = "systemd"
)

// Defaults of the systemd way.
const (
	DefaultBinaryPath = "/usr/local/bin/karmor-nri"
	DefaultSystemdDir = "/etc/systemd/system"
	SystemdUnitName   = "karmor-nri.service"
)

// InstallOptions is what Install needs.
type InstallOptions struct {
	// Hook is how karmor-hook runs; HookBinary is the karmor-hook copied to Hook.Path.
	Hook       install.HookConfig
	HookBinary string
	// NRIBinary is the karmor-nri to install.
	NRIBinary string
	// Start is StartPreregistered or StartSystemd.
	Start       string
	PluginIndex string // DefaultPluginIndex when empty
	// PluginDir and PluginConfigDir are NRI's plugin_path and plugin_config_path (preregistered).
	PluginDir, PluginConfigDir string
	// BinaryPath, SystemdDir and Socket are where karmor-nri goes, where its unit goes, and the
	// runtime's NRI socket it connects to (systemd).
	BinaryPath, SystemdDir, Socket string
}

// Installed lists what Install put in place.
type Installed struct {
	Written []string // files written
	Kept    []string // programs already in place
}

// Install copies karmor-hook and karmor-nri into place and writes what starts the plugin: its
// configuration file (preregistered) or its systemd unit. Every file is written atomically.
func Install(o InstallOptions) (*Installed, error) {
	if err := o.Hook.Check(); err != nil {
		return nil, err
	}
	if o.PluginIndex == "" {
		o.PluginIndex = DefaultPluginIndex
	}
	if err := api.CheckPluginIndex(o.PluginIndex); err != nil {
		return nil, err
	}
	res := &Installed{}
	if err := res.program(o.HookBinary, o.Hook.Path); err != nil {
		return res, err
	}
	cfg := Config{Hook: o.Hook}
	switch o.Start {
	case StartPreregistered:
		if o.PluginDir == "" || o.PluginConfigDir == "" {
			return res, errors.New("the NRI plugin and plugin configuration directories are needed")
		}
		name := o.PluginIndex + "-" + DefaultPluginName
		if err := res.program(o.NRIBinary, filepath.Join(o.PluginDir, name)); err != nil {
			return res, err
		}
		body, err := FormatConfig(cfg)
		if err != nil {
			return res, err
		}
		return res, res.file(filepath.Join(o.PluginConfigDir, name+".conf"), body, 0o644)
	case StartSystemd:
		if !filepath.IsAbs(o.BinaryPath) || o.SystemdDir == "" {
			return res, fmt.Errorf("karmor-nri's path %q must be absolute and the systemd directory set", o.BinaryPath)
		}
		if err := res.program(o.NRIBinary, o.BinaryPath); err != nil {
			return res, err
		}
		args := CommandLine(Options{Run: RunOptions{Socket: o.Socket, Index: o.PluginIndex}, Config: cfg})
		return res, res.file(filepath.Join(o.SystemdDir, SystemdUnitName), []byte(SystemdUnit(o.BinaryPath, args)), 0o644)
	}
	return res, fmt.Errorf("start %q: want %s or %s", o.Start, StartPreregistered, StartSystemd)
}

// program copies src to dst atomically, mode 0755, unless they are the same file.
func (r *Installed) program(src, dst string) error {
	copied, err := install.CopyProgram(src, dst)
	if err != nil {
		return err
	}
	if copied {
		r.Written = append(r.Written, dst)
	} else {
		r.Kept = append(r.Kept, dst)
	}
	return nil
}

// file writes path atomically, creating its directory.
func (r *Installed) file(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := install.WriteFileAtomic(path, data, perm); err != nil {
		return err
	}
	r.Written = append(r.Written, path)
	return nil
}

// SystemdUnit renders the unit that runs karmor-nri beside containerd and restarts it.
func SystemdUnit(path string, args []string) string {
	quoted := make([]string, 0, len(args)+1)
	for _, a := range append([]string{path}, args...) {
		quoted = append(quoted, systemdQuote(a))
	}
	return `[Unit]
Description=karmor NRI plugin: adds karmor-hook and pod labels to containerd's containers
After=containerd.service
PartOf=containerd.service

[Service]
ExecStart=` + strings.Join(quoted, " ") + `
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
`
}

// systemdQuote quotes one ExecStart argument: specifiers (%) and variables ($) are escaped, and
// arguments with blanks, quotes or backslashes are double-quoted with C-style escapes.
func systemdQuote(s string) string {
	s = strings.ReplaceAll(s, "%", "%%")
	s = strings.ReplaceAll(s, "$", "$$")
	if s != "" && !strings.ContainsAny(s, " \t\n\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
