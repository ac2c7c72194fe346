package nri

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/karmor/karmor/internal/readlimit"
)

// Where containerd and NRI keep things unless configured otherwise.
const (
	DefaultContainerdConfig = "/etc/containerd/config.toml"
	DefaultSocket           = "/var/run/nri/nri.sock"
	DefaultPluginPath       = "/opt/nri/plugins"
	DefaultPluginConfigPath = "/etc/nri/conf.d"
)

// The NRI plugin's id in containerd's configuration: its full URI in config versions 2 and 3,
// its short id in version 1.
const (
	containerdNRIPlugin   = "io.containerd.nri.v1.nri"
	containerdNRIPluginV1 = "nri"
)

// Bounds for reading containerd's configuration, which is root's file but still parsed with care:
// a real config.toml is a few KiB.
const (
	maxConfigBytes   = 1 << 20
	maxConfigImports = 64
)

// NRIStatus is what containerd's configuration says about NRI.
type NRIStatus struct {
	// Enabled is true when containerd will serve NRI with this configuration.
	Enabled bool
	// Reason says in one sentence why NRI is on or off.
	Reason string
	// Fix holds the exact configuration lines that turn NRI on, empty when it is on.
	Fix string
	// ConfigPath is the main configuration file ("" when there is none and defaults apply).
	ConfigPath string
	// ConfigVersion is the main file's `version` (1 when absent, as containerd reads it).
	ConfigVersion int
	// ContainerdVersion is the runtime's version as given ("" when unknown).
	ContainerdVersion string
	// Socket, PluginPath and PluginConfigPath are the effective NRI paths.
	Socket           string
	PluginPath       string
	PluginConfigPath string
	// ExternalPluginsRefused is true when disable_connections = true: only pre-registered plugins
	// (in PluginPath, started by containerd) can run.
	ExternalPluginsRefused bool
}

// ParseContainerdVersion extracts major and minor from `containerd --version` output such as
// "containerd github.com/containerd/containerd/v2 v2.4.2 abc123" or Debian's
// "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+b1".
func ParseContainerdVersion(out string) (major, minor int, ok bool) {
	fields := strings.Fields(out)
	for _, f := range fields {
		f = strings.TrimPrefix(f, "v")
		parts := strings.SplitN(f, ".", 3)
		if len(parts) < 2 {
			continue
		}
		maj, err1 := strconv.Atoi(parts[0])
		minStr := parts[1]
		if i := strings.IndexFunc(minStr, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			minStr = minStr[:i]
		}
		mnr, err2 := strconv.Atoi(minStr)
		if err1 == nil && err2 == nil {
			return maj, mnr, true
		}
	}
	return 0, 0, false
}

// CheckContainerdConfig reads containerd's configuration at path (following its imports as
// containerd does) and says whether NRI is on. versionOutput is the output of
// `containerd --version`, or "" when unknown; NRI's default differs between containerd 1.7 (off)
// and 2.x (on). A missing file means containerd runs on its defaults.
func CheckContainerdConfig(path, versionOutput string) (NRIStatus, error) {
	files, err := loadConfigFiles(path)
	if err != nil {
		return NRIStatus{}, err
	}
	st := evaluate(files, versionOutput)
	if len(files) > 0 {
		st.ConfigPath = path
	}
	return st, nil
}

// containerdConfigFile is the part of one containerd configuration file that matters for NRI.
type containerdConfigFile struct {
	Version         int            `toml:"version"`
	Imports         []string       `toml:"imports"`
	DisabledPlugins []string       `toml:"disabled_plugins"`
	Plugins         map[string]any `toml:"plugins"`
}

// nriSection is containerd's NRI plugin configuration.
type nriSection struct {
	Disable            *bool  `toml:"disable"`
	SocketPath         string `toml:"socket_path"`
	PluginPath         string `toml:"plugin_path"`
	PluginConfigPath   string `toml:"plugin_config_path"`
	DisableConnections bool   `toml:"disable_connections"`
}

// ParseContainerdConfig decodes one configuration file's bytes.
func ParseContainerdConfig(data []byte) (*containerdConfigFile, error) {
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("containerd config is %d bytes (limit %d)", len(data), maxConfigBytes)
	}
	var f containerdConfigFile
	if err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f); err != nil {
		return nil, err
	}
	if f.Version == 0 {
		f.Version = 1
	}
	return &f, nil
}

// nri returns the file's NRI section, or nil when it has none.
func (f *containerdConfigFile) nri() (*nriSection, error) {
	key := containerdNRIPlugin
	if f.Version == 1 {
		key = containerdNRIPluginV1
	}
	raw, ok := f.Plugins[key]
	if !ok {
		return nil, nil
	}
	// Re-encode the generic table and decode it typed, so that wrong types are reported.
	b, err := toml.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var s nriSection
	if err := toml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("[plugins.%q]: %w", key, err)
	}
	return &s, nil
}

// loadConfigFiles reads path and the files it imports, breadth first and each once, as
// containerd does. A missing main file yields no files; a missing import is an error, as it is
// for containerd.
func loadConfigFiles(path string) ([]*containerdConfigFile, error) {
	var files []*containerdConfigFile
	loaded := map[string]bool{}
	pending := []string{path}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if loaded[p] {
			continue
		}
		if len(loaded) > maxConfigImports {
			return nil, fmt.Errorf("containerd config %s imports more than %d files", path, maxConfigImports)
		}
		loaded[p] = true
		data, err := readlimit.File(p, maxConfigBytes)
		if err != nil {
			if p == path && errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("read containerd config: %w", err)
		}
		f, err := ParseContainerdConfig(data)
		if err != nil {
			return nil, fmt.Errorf("containerd config %s is not valid TOML: %w", p, err)
		}
		files = append(files, f)
		for _, imp := range f.Imports {
			imp = filepath.Clean(imp)
			if !filepath.IsAbs(imp) {
				imp = filepath.Join(filepath.Dir(p), imp)
			}
			if strings.Contains(imp, "*") {
				matches, err := filepath.Glob(imp)
				if err != nil {
					return nil, fmt.Errorf("containerd config %s: import %q: %w", p, imp, err)
				}
				pending = append(pending, matches...)
				continue
			}
			pending = append(pending, imp)
		}
	}
	return files, nil
}

// evaluate merges the NRI settings of the files (a later file's section replaces an earlier one,
// as containerd merges plugin tables) and applies the version's default.
func evaluate(files []*containerdConfigFile, versionOutput string) NRIStatus {
	st := NRIStatus{
		ConfigVersion:     1,
		ContainerdVersion: strings.TrimSpace(versionOutput),
		Socket:            DefaultSocket,
		PluginPath:        DefaultPluginPath,
		PluginConfigPath:  DefaultPluginConfigPath,
	}
	if len(files) > 0 {
		st.ConfigVersion = files[0].Version
	}
	var section *nriSection
	disabledByList := false
	for _, f := range files {
		s, err := f.nri()
		if err != nil {
			st.Reason = fmt.Sprintf("containerd's NRI section cannot be read (%v)", err)
			st.Fix = enableLines(st.ConfigVersion)
			return st
		}
		if s != nil {
			section = s
		}
		for _, d := range f.DisabledPlugins {
			if d == containerdNRIPlugin || d == containerdNRIPluginV1 {
				disabledByList = true
			}
		}
	}
	if section != nil {
		if section.SocketPath != "" {
			st.Socket = section.SocketPath
		}
		if section.PluginPath != "" {
			st.PluginPath = section.PluginPath
		}
		if section.PluginConfigPath != "" {
			st.PluginConfigPath = section.PluginConfigPath
		}
		st.ExternalPluginsRefused = section.DisableConnections
	}

	major, minor, known := ParseContainerdVersion(versionOutput)
	if !known && st.ConfigVersion >= 3 {
		major, known = 2, true // only containerd 2.x reads version 3 configurations
	}
	switch {
	case disabledByList:
		st.Reason = fmt.Sprintf("disabled_plugins lists %q", containerdNRIPlugin)
		st.Fix = fmt.Sprintf("remove %q from disabled_plugins, then:\n%s", containerdNRIPlugin, enableLines(st.ConfigVersion))
	case known && (major < 1 || major == 1 && minor < 7):
		st.Reason = fmt.Sprintf("containerd %d.%d has no NRI (it came in 1.7); upgrade containerd or use karmor-runc as its runc (BinaryName)", major, minor)
	case section != nil && section.Disable != nil && *section.Disable:
		st.Reason = "the NRI section sets disable = true"
		st.Fix = "set disable = false in the existing section:\n" + enableLines(st.ConfigVersion)
	case section != nil && section.Disable != nil && !*section.Disable:
		st.Enabled = true
		st.Reason = "the NRI section sets disable = false"
	case known && major >= 2:
		st.Enabled = true
		st.Reason = fmt.Sprintf("NRI is on by default in containerd %d.%d", major, minor)
	case known:
		st.Reason = fmt.Sprintf("NRI is off by default in containerd %d.%d and the configuration does not enable it", major, minor)
		st.Fix = enableLines(st.ConfigVersion)
	default:
		st.Reason = "the configuration does not enable NRI, which is off by default in containerd 1.7 (containerd's version is unknown; 2.x turns it on by default)"
		st.Fix = enableLines(st.ConfigVersion)
	}
	return st
}

// enableLines returns the TOML that turns NRI on for a configuration of the given version.
func enableLines(version int) string {
	key := fmt.Sprintf("%q", containerdNRIPlugin)
	head := ""
	if version <= 1 {
		head = "version = 2  # at the top of the file; NRI needs a version 2 (1.7) or 3 (2.x) configuration\n"
	}
	return head + "[plugins." + key + "]\n" +
		"  disable = false\n" +
		"  socket_path = \"" + DefaultSocket + "\"\n" +
		"  plugin_path = \"" + DefaultPluginPath + "\"\n" +
		"  plugin_config_path = \"" + DefaultPluginConfigPath + "\"\n"
}
