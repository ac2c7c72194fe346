package runcwrap

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/install"
)

// harness runs Main with a real file system: a real runc-named executable on PATH, real bundles,
// real config files. Only the final exec is recorded instead of replacing the test process.
type harness struct {
	t         *testing.T
	dir       string
	runc      string
	env       map[string]string
	stderr    bytes.Buffer
	execPath  string
	execArgv  []string
	execCalls int
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, dir: t.TempDir()}
	h.runc = filepath.Join(h.dir, "bin", "runc")
	writeExe(t, h.runc, "")
	h.env = map[string]string{"PATH": filepath.Join(h.dir, "bin"), EnvConfig: filepath.Join(h.dir, "karmor-runc.json")}
	return h
}

func (h *harness) run(cwd string, args ...string) int {
	h.stderr.Reset()
	return Main(Env{
		Args:   append([]string{"karmor-runc"}, args...),
		Getenv: func(k string) string { return h.env[k] },
		Getwd:  func() (string, error) { return cwd, nil },
		Stderr: &h.stderr,
		Self:   filepath.Join(h.dir, "self-does-not-exist"),
		Exec: func(path string, argv, _ []string) error {
			h.execCalls++
			h.execPath, h.execArgv = path, argv
			return nil
		},
	})
}

func (h *harness) writeConfig(c Config) {
	b, err := json.Marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(h.env[EnvConfig], b, 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// bundle writes a minimal config.json with one foreign hook and returns the bundle dir.
func (h *harness) bundle(name string) string {
	dir := filepath.Join(h.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	spec := rspec.Spec{Version: "1.0.2", Process: &rspec.Process{Args: []string{"sh"}, Cwd: "/"}, Root: &rspec.Root{Path: "rootfs"},
		Hooks: &rspec.Hooks{CreateRuntime: []rspec.Hook{{Path: "/usr/bin/other-hook"}}}}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		h.t.Fatal(err)
	}
	return dir
}

func readSpec(t *testing.T, bundle string) rspec.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s rspec.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

var testConfig = Config{HookPath: "/opt/karmor/karmor-hook", Socket: "/run/test/karmor.sock", SpoolDir: "/var/test/spool", Timeout: "1s"}

func TestCreateInjectsThenExecsRunc(t *testing.T) {
	h := newHarness(t)
	h.writeConfig(testConfig)
	bundle := h.bundle("b1")
	args := []string{"--root", "/run/x", "--log", filepath.Join(h.dir, "log.json"), "--log-format", "json", "create", "--bundle", bundle, "--pid-file", "/run/x/pid", "ctr1"}
	h.run("/", args...)
	if h.execCalls != 1 || h.execPath != h.runc || !slices.Equal(h.execArgv, append([]string{h.runc}, args...)) {
		t.Fatalf("exec %q %q (%d calls); want runc with the same arguments", h.execPath, h.execArgv, h.execCalls)
	}
	spec := readSpec(t, bundle)
	hc, _ := testConfig.HookConfig()
	cr, ps := spec.Hooks.CreateRuntime, spec.Hooks.Poststop
	if len(cr) != 2 || cr[0].Path != "/usr/bin/other-hook" || cr[1].Path != hc.Path || !slices.Equal(cr[1].Args, hc.Args("createRuntime")) {
		t.Fatalf("createRuntime hooks %+v", cr)
	}
	if len(ps) != 1 || !slices.Equal(ps[0].Args, hc.Args("poststop")) {
		t.Fatalf("poststop hooks %+v", ps)
	}
	if fi, _ := os.Stat(filepath.Join(bundle, "config.json")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json mode changed to %v", fi.Mode().Perm())
	}
	// Once: a second create of the same bundle changes nothing.
	before, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	h.run("/", args...)
	after, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if !bytes.Equal(before, after) {
		t.Fatal("a second injection rewrote config.json")
	}
	if h.stderr.Len() != 0 {
		t.Fatalf("wrote to stderr on success: %q", h.stderr.String())
	}
}

func TestRunUsesCwdBundleAndRelativeBundle(t *testing.T) {
	h := newHarness(t)
	h.writeConfig(testConfig)
	cwdBundle := h.bundle("cwd")
	h.run(cwdBundle, "run", "-d", "id1")
	if len(readSpec(t, cwdBundle).Hooks.Poststop) != 1 {
		t.Fatal("bundle in the working directory not injected")
	}
	rel := h.bundle("rel")
	h.run(h.dir, "run", "id2", "-b", "rel")
	if len(readSpec(t, rel).Hooks.Poststop) != 1 {
		t.Fatal("relative -b bundle not injected")
	}
}

func TestPassThroughTouchesNothing(t *testing.T) {
	h := newHarness(t)
	// A broken config must not matter for other commands when KARMOR_RUNC names the runtime:
	// it is not even read.
	if err := os.WriteFile(h.env[EnvConfig], []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.env[EnvRuntime] = h.runc
	bundle := h.bundle("b")
	before, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	for _, args := range [][]string{{"state", "x"}, {"--root", "/r", "delete", "-f", "x"}, {"exec", "-b", bundle, "x", "sh"}, {"--version"}, {}} {
		h.run(bundle, args...)
		if h.execPath != h.runc || !slices.Equal(h.execArgv, append([]string{h.runc}, args...)) || h.stderr.Len() != 0 {
			t.Fatalf("%q: exec %q %q stderr %q", args, h.execPath, h.execArgv, h.stderr.String())
		}
	}
	after, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if !bytes.Equal(before, after) {
		t.Fatal("a pass-through command changed config.json")
	}
}

func TestInjectionFailureFailsOpen(t *testing.T) {
	h := newHarness(t)
	h.writeConfig(testConfig)
	logPath := filepath.Join(h.dir, "runc-log.json")

	broken := filepath.Join(h.dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "config.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.run("/", "--log", logPath, "--log-format", "json", "create", "-b", broken, "c1")
	if h.execCalls != 1 || h.execPath != h.runc {
		t.Fatal("runc not exec'd after a failed injection")
	}
	if h.stderr.Len() != 0 {
		t.Fatalf("with --log the warning must not go to stderr (the container's stdio for create): %q", h.stderr.String())
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var line struct{ Level, Msg, Err string }
	if err := json.Unmarshal(bytes.TrimSpace(b), &line); err != nil || line.Level != "WARN" || !strings.Contains(line.Msg, "not added") || !strings.Contains(line.Err, "broken") {
		t.Fatalf("log line %q (%v)", b, err)
	}

	// A bundle without config.json is runc's to refuse, in its own words: no warning of ours.
	h.run("/", "run", "-b", filepath.Join(h.dir, "missing"), "c2")
	if h.execCalls != 2 || h.stderr.Len() != 0 {
		t.Fatalf("missing bundle: exec calls %d, stderr %q", h.execCalls, h.stderr.String())
	}
	// Without --log the warning goes to stderr; a bad configuration fails open too.
	if err := os.WriteFile(h.env[EnvConfig], []byte(`{"sockett": "/x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	good := h.bundle("good")
	h.run("/", "run", "-b", good, "c3")
	if h.execCalls != 3 || !strings.Contains(h.stderr.String(), "sockett") {
		t.Fatalf("bad configuration: exec calls %d, stderr %q", h.execCalls, h.stderr.String())
	}
	if readSpec(t, good).Hooks.Poststop != nil {
		t.Fatal("hooks injected from a configuration that does not parse")
	}
}

func TestRuntimeChoice(t *testing.T) {
	h := newHarness(t)
	other := filepath.Join(h.dir, "other", "runc-real")
	writeExe(t, other, "")
	h.writeConfig(Config{Runtime: other})
	h.run("/", "state", "x")
	if h.execPath != other {
		t.Fatalf("config runtime: exec %q, want %q", h.execPath, other)
	}
	h.env[EnvRuntime] = h.runc
	h.run("/", "state", "x")
	if h.execPath != h.runc {
		t.Fatalf("KARMOR_RUNC must win over the config: exec %q", h.execPath)
	}
	h.env[EnvRuntime] = filepath.Join(h.dir, "nothing")
	if code := h.run("/", "state", "x"); code != 127 || h.execCalls != 2 || !strings.Contains(h.stderr.String(), "cannot find the real runc") {
		t.Fatalf("missing runtime: exit %d, exec calls %d, stderr %q", code, h.execCalls, h.stderr.String())
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	if c, err := LoadConfig(filepath.Join(dir, "absent.json")); err != nil || c.Runtime != "" {
		t.Fatalf("absent file: %+v %v", c, err)
	}
	for name, body := range map[string]string{
		"unknown field": `{"runtimee": "x"}`,
		"trailing":      `{} {}`,
		"not json":      `runtime: x`,
		"too large":     `{"runtime": "` + strings.Repeat("x", maxConfigBytes) + `"}`,
	} {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if c, err := LoadConfig(p); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
	if _, err := (Config{Timeout: "soon"}).HookConfig(); err == nil {
		t.Error("bad timeout accepted")
	}
	if _, err := (Config{HookPath: "relative"}).HookConfig(); err == nil {
		t.Error("relative hook path accepted")
	}
	want := install.HookConfig{Path: "/a/karmor-hook", Socket: "/s", SpoolDir: "/d", Timeout: 1500e6, FailClosed: true, AllowNamespaces: []string{"n"}}
	got, err := ConfigFromHook(want, "/usr/sbin/runc").HookConfig()
	if err != nil || got.Path != want.Path || got.Socket != want.Socket || got.Timeout != want.Timeout || !got.FailClosed || !slices.Equal(got.AllowNamespaces, want.AllowNamespaces) {
		t.Fatalf("round trip %+v %v", got, err)
	}
}

func FuzzLoadConfig(f *testing.F) {
	f.Add([]byte(`{"runtime":"/usr/sbin/runc","socket":"/s","timeout":"2s"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(p)
		if err != nil {
			return
		}
		if h, err := c.HookConfig(); err == nil && h.Check() != nil {
			t.Fatalf("HookConfig returned an unchecked configuration %+v", h)
		}
	})
}

func TestExecFailureIsReported(t *testing.T) {
	h := newHarness(t)
	var stderr bytes.Buffer
	code := Main(Env{
		Args:   []string{"karmor-runc", "state", "x"},
		Getenv: func(k string) string { return h.env[k] },
		Getwd:  os.Getwd,
		Stderr: &stderr,
		Self:   "/proc/self/exe",
		Exec:   func(string, []string, []string) error { return os.ErrPermission },
	})
	if code != 127 || !strings.Contains(stderr.String(), "permission denied") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
