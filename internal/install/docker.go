package install

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Docker has no hooks.d: dockerd runs karmor-runc as a runtime named in its daemon.json, and
// karmor-runc adds karmor-hook to each container's config.json before it runs the real runc.
const (
	// RuntimeDocker is `karmor hook install --runtime docker`.
	RuntimeDocker = "docker"
	// DefaultDaemonJSON is dockerd's configuration file.
	DefaultDaemonJSON = "/etc/docker/daemon.json"
	// DefaultDockerRuntimeName is the name karmor-runc is registered under (`docker run --runtime karmor`).
	DefaultDockerRuntimeName = "karmor"
	// DefaultRuncWrapperPath is where karmor-runc is installed.
	DefaultRuncWrapperPath = "/usr/local/bin/karmor-runc"
	// RuncWrapperProgram is karmor-runc's program name.
	RuncWrapperProgram = "karmor-runc"
	// maxDaemonJSONBytes bounds daemon.json (a few hundred bytes in practice).
	maxDaemonJSONBytes = 1 << 20
)

// DockerRuntime is what daemon.json says of karmor's runtime.
type DockerRuntime struct {
	// Present is whether runtimes has an entry under the name; Path is its "path".
	Present bool
	Path    string
	// Default is whether "default-runtime" names it: every container then runs through it.
	Default bool
}

// daemonConfig is daemon.json with every key kept as written, so that editing karmor's entry
// leaves the rest alone (key order aside: the file is written back with sorted keys).
type daemonConfig map[string]json.RawMessage

func readDaemonJSON(path string) (daemonConfig, fs.FileMode, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return daemonConfig{}, 0o644, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxDaemonJSONBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxDaemonJSONBytes {
		return nil, 0, fmt.Errorf("%s is larger than %d bytes: is it dockerd's configuration?", path, maxDaemonJSONBytes)
	}
	cfg := daemonConfig{}
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, fi.Mode().Perm(), nil
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, 0, fmt.Errorf("%s is not a JSON object (dockerd would refuse it too): %w", path, err)
	}
	return cfg, fi.Mode().Perm(), nil
}

// runtimes decodes the "runtimes" object, entries kept as written.
func (c daemonConfig) runtimes(path string) (map[string]json.RawMessage, error) {
	rts := map[string]json.RawMessage{}
	if raw, ok := c["runtimes"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &rts); err != nil {
			return nil, fmt.Errorf("%s: \"runtimes\" is not an object: %w", path, err)
		}
	}
	return rts, nil
}

func (c daemonConfig) defaultRuntime() string {
	var name string
	_ = json.Unmarshal(c["default-runtime"], &name)
	return name
}

func runtimePath(raw json.RawMessage) string {
	var rt struct {
		Path string `json:"path"`
	}
	_ = json.Unmarshal(raw, &rt)
	return rt.Path
}

func writeDaemonJSON(path string, c daemonConfig, perm fs.FileMode) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return WriteFileAtomic(path, append(data, '\n'), perm)
}

// SetDockerRuntime registers wrapper (karmor-runc's absolute path) in daemon.json as runtime
// name, and as "default-runtime" when makeDefault is set; every other key and runtime is kept.
// It writes atomically, keeping the file's mode, and only when something changes; it reports
// whether it did. A runtime of that name that runs another program is replaced: the name is
// karmor's to give.
func SetDockerRuntime(daemonJSON, name, wrapper string, makeDefault bool) (bool, error) {
	if !filepath.IsAbs(wrapper) {
		return false, fmt.Errorf("karmor-runc's path %q must be absolute (dockerd runs it as given)", wrapper)
	}
	if name == "" || name == "runc" || name == "io.containerd.runc.v2" {
		return false, fmt.Errorf("runtime name %q is taken by dockerd's own runtimes; choose another, e.g. %s", name, DefaultDockerRuntimeName)
	}
	cfg, perm, err := readDaemonJSON(daemonJSON)
	if err != nil {
		return false, err
	}
	rts, err := cfg.runtimes(daemonJSON)
	if err != nil {
		return false, err
	}
	changed := false
	if runtimePath(rts[name]) != wrapper {
		entry, _ := json.Marshal(map[string]string{"path": wrapper})
		rts[name] = entry
		if cfg["runtimes"], err = json.Marshal(rts); err != nil {
			return false, err
		}
		changed = true
	}
	if makeDefault && cfg.defaultRuntime() != name {
		cfg["default-runtime"], _ = json.Marshal(name)
		changed = true
	}
	if !changed {
		return false, nil
	}
	return true, writeDaemonJSON(daemonJSON, cfg, perm)
}

// RemoveDockerRuntime removes runtime name from daemon.json, and "default-runtime" when it names
// it, keeping everything else. A runtime of that name that does not run karmor-runc is left in
// place and is an error. It reports what daemon.json said before.
func RemoveDockerRuntime(daemonJSON, name string) (DockerRuntime, error) {
	cfg, perm, err := readDaemonJSON(daemonJSON)
	if err != nil {
		return DockerRuntime{}, err
	}
	rts, err := cfg.runtimes(daemonJSON)
	if err != nil {
		return DockerRuntime{}, err
	}
	was := dockerRuntimeOf(cfg, rts, name)
	if !was.Present && !was.Default {
		return was, nil
	}
	if was.Present && filepath.Base(was.Path) != RuncWrapperProgram {
		return was, fmt.Errorf("%s: runtime %q runs %s, not karmor-runc: left in place", daemonJSON, name, was.Path)
	}
	delete(rts, name)
	if len(rts) == 0 {
		delete(cfg, "runtimes")
	} else if cfg["runtimes"], err = json.Marshal(rts); err != nil {
		return was, err
	}
	if was.Default {
		delete(cfg, "default-runtime")
	}
	return was, writeDaemonJSON(daemonJSON, cfg, perm)
}

// ReadDockerRuntime says what daemon.json has of runtime name. A missing file is an empty one.
func ReadDockerRuntime(daemonJSON, name string) (DockerRuntime, error) {
	cfg, _, err := readDaemonJSON(daemonJSON)
	if err != nil {
		return DockerRuntime{}, err
	}
	rts, err := cfg.runtimes(daemonJSON)
	if err != nil {
		return DockerRuntime{}, err
	}
	return dockerRuntimeOf(cfg, rts, name), nil
}

func dockerRuntimeOf(cfg daemonConfig, rts map[string]json.RawMessage, name string) DockerRuntime {
	raw, ok := rts[name]
	return DockerRuntime{Present: ok, Path: runtimePath(raw), Default: cfg.defaultRuntime() == name}
}
