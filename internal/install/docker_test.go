package install

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDockerRuntimeInDaemonJSON(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docker", "daemon.json")
	// No file yet: install creates it.
	if changed, err := SetDockerRuntime(path, "karmor", "/usr/local/bin/karmor-runc", false); err != nil || !changed {
		t.Fatalf("first set: %v %v", changed, err)
	}
	if rt, err := ReadDockerRuntime(path, "karmor"); err != nil || !rt.Present || rt.Default || rt.Path != "/usr/local/bin/karmor-runc" {
		t.Fatalf("read: %+v %v", rt, err)
	}

	// An operator's file: its keys and runtimes stay, its mode too.
	os.Remove(path)
	os.WriteFile(path, []byte(`{"live-restore": true, "runtimes": {"nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--x"]}}}`), 0o600)
	if changed, err := SetDockerRuntime(path, "karmor", "/usr/local/bin/karmor-runc", true); err != nil || !changed {
		t.Fatalf("set as default: %v %v", changed, err)
	}
	var got map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	rts, _ := got["runtimes"].(map[string]any)
	if got["live-restore"] != true || got["default-runtime"] != "karmor" || rts["nvidia"] == nil || rts["karmor"] == nil {
		t.Errorf("daemon.json: %s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the file's 0600", fi.Mode().Perm())
	}
	if changed, err := SetDockerRuntime(path, "karmor", "/usr/local/bin/karmor-runc", true); err != nil || changed {
		t.Errorf("second set changed the file: %v %v", changed, err)
	}

	was, err := RemoveDockerRuntime(path, "karmor")
	if err != nil || !was.Present || !was.Default {
		t.Fatalf("remove: %+v %v", was, err)
	}
	b, _ = os.ReadFile(path)
	if strings.Contains(string(b), "karmor") || !strings.Contains(string(b), "nvidia") || !strings.Contains(string(b), "live-restore") {
		t.Errorf("after remove: %s", b)
	}
	// A runtime of karmor's name that runs something else is not karmor's to remove.
	SetDockerRuntime(path, "karmor", "/usr/bin/other-runtime", false)
	if _, err := RemoveDockerRuntime(path, "karmor"); err == nil {
		t.Error("removed a runtime that does not run karmor-runc")
	}
}

func TestDaemonJSONRefusals(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "daemon.json")
	os.WriteFile(bad, []byte(`{"live-restore": tru`), 0o644)
	if _, err := SetDockerRuntime(bad, "karmor", "/usr/local/bin/karmor-runc", false); err == nil {
		t.Error("malformed daemon.json rewritten")
	}
	if b, _ := os.ReadFile(bad); string(b) != `{"live-restore": tru` {
		t.Errorf("malformed daemon.json changed: %s", b)
	}
	os.WriteFile(bad, []byte(`{"runtimes": []}`), 0o644)
	if _, err := SetDockerRuntime(bad, "karmor", "/usr/local/bin/karmor-runc", false); err == nil {
		t.Error("runtimes that is not an object accepted")
	}
	for _, name := range []string{"", "runc", "io.containerd.runc.v2"} {
		if _, err := SetDockerRuntime(filepath.Join(dir, "new.json"), name, "/usr/local/bin/karmor-runc", false); err == nil {
			t.Errorf("runtime name %q accepted", name)
		}
	}
	if _, err := SetDockerRuntime(filepath.Join(dir, "new.json"), "karmor", "karmor-runc", false); err == nil {
		t.Error("relative karmor-runc path accepted")
	}
	if _, err := ReadDockerRuntime(dir, "karmor"); err == nil {
		t.Error("a directory read as daemon.json")
	}
}
