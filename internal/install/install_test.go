package install

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeHookBinary is an executable that answers --version like karmor-hook.
func fakeHookBinary(t *testing.T, version string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "karmor-hook")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho karmor-hook "+version+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func testHook(dir string) HookConfig {
	h := DefaultHookConfig()
	h.Path = filepath.Join(dir, "bin", "karmor-hook")
	h.Socket = "/run/test/karmor.sock"
	h.SpoolDir = "/var/lib/test/spool"
	h.Timeout = 1500 * time.Millisecond
	return h
}

func TestInstallUninstallStatus(t *testing.T) {
	root := t.TempDir()
	hooksDir := filepath.Join(root, "hooks.d")
	src := fakeHookBinary(t, "1.2.3")
	h := testHook(root)
	h.FailClosed = true
	h.AllowNamespaces = []string{"karmor"}
	h.AllowAnnotations = []string{"karmor.io/agent=true"}
	ctx := context.Background()

	rep, err := Status(ctx, RuntimePodman, hooksDir, h.Path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Installed() || rep.Files[0].Present || rep.Binaries[0].Present {
		t.Fatalf("status before install: %+v", rep)
	}

	res, err := Install(Options{Runtime: RuntimePodman, HooksDir: hooksDir, HookBinary: src, Hook: h})
	if err != nil {
		t.Fatal(err)
	}
	if !res.BinaryCopied || res.Binary != h.Path || len(res.Files) != 2 {
		t.Fatalf("installed %+v", res)
	}
	want, _ := os.ReadFile(src)
	got, err := os.ReadFile(h.Path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed binary differs: %v", err)
	}
	if fi, _ := os.Stat(h.Path); fi.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %v", fi.Mode().Perm())
	}
	for _, stage := range Stages {
		var f HooksFile
		body, err := os.ReadFile(filepath.Join(hooksDir, HooksFileName(stage)))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(body, &f); err != nil {
			t.Fatal(err)
		}
		args := f.Hook.Args
		if f.Version != "1.0.0" || f.When.Always == nil || !*f.When.Always || !slices.Equal(f.Stages, []string{stage}) ||
			f.Hook.Path != h.Path || args[0] != "karmor-hook" || args[len(args)-1] != stage ||
			f.Hook.Timeout == nil || *f.Hook.Timeout != 5 {
			t.Errorf("%s file: %s", stage, body)
		}
		joined := strings.Join(args, " ")
		for _, part := range []string{"--socket /run/test/karmor.sock", "--spool-dir /var/lib/test/spool", "--timeout 1.5s", "--fail-closed", "--allow-namespace karmor", "--allow-annotation karmor.io/agent=true"} {
			if !strings.Contains(joined, part) {
				t.Errorf("%s args %q lack %q", stage, joined, part)
			}
		}
	}
	assertNoTemp(t, hooksDir)
	assertNoTemp(t, filepath.Dir(h.Path))

	rep, err = Status(ctx, RuntimePodman, hooksDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Installed() || rep.Socket != h.Socket || len(rep.Binaries) != 1 || rep.Binaries[0].Version != "1.2.3" {
		t.Fatalf("status after install: %+v", rep)
	}

	// Installing again over itself copies nothing and keeps working.
	res, err = Install(Options{Runtime: RuntimePodman, HooksDir: hooksDir, HookBinary: h.Path, Hook: h})
	if err != nil || res.BinaryCopied {
		t.Fatalf("reinstall from the installed binary: %+v %v", res, err)
	}

	// A broken hooks file shows in status.
	if err := os.WriteFile(filepath.Join(hooksDir, HooksFileName("poststop")), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, _ = Status(ctx, RuntimePodman, hooksDir, "")
	if rep.Installed() || rep.Files[1].Err == nil {
		t.Errorf("broken file not reported: %+v", rep.Files[1])
	}

	rm, err := Uninstall(RuntimePodman, hooksDir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Files) != 2 || rm.Binary != h.Path {
		t.Errorf("removed %+v", rm)
	}
	for _, p := range append(rm.Files, h.Path) {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	// Nothing left to remove is not an error.
	if rm, err := Uninstall(RuntimePodman, hooksDir, h.Path); err != nil || len(rm.Files) != 0 || rm.Binary != "" {
		t.Errorf("second uninstall: %+v %v", rm, err)
	}
	// The source binary is untouched.
	if _, err := os.Stat(src); err != nil {
		t.Error(err)
	}
}

func TestInstallRejects(t *testing.T) {
	root := t.TempDir()
	src := fakeHookBinary(t, "1")
	h := testHook(root)
	bad := map[string]Options{
		"unknown runtime": {Runtime: "docker", HookBinary: src, Hook: h},
		"no binary":       {HooksDir: root, Hook: h},
		"missing binary":  {HooksDir: root, HookBinary: filepath.Join(root, "nope"), Hook: h},
		"dir as binary":   {HooksDir: root, HookBinary: root, Hook: h},
		"relative path":   {HooksDir: root, HookBinary: src, Hook: func() HookConfig { h := h; h.Path = "karmor-hook"; return h }()},
		"zero timeout":    {HooksDir: root, HookBinary: src, Hook: func() HookConfig { h := h; h.Timeout = 0; return h }()},
	}
	for name, opts := range bad {
		if res, err := Install(opts); err == nil {
			t.Errorf("%s: installed %+v", name, res)
		}
	}
	if dir, err := DefaultHooksDirFor(RuntimeCRIO); err != nil || dir != "/usr/share/containers/oci/hooks.d" {
		t.Errorf("cri-o hooks dir %q %v", dir, err)
	}
}

func TestRuntimeTimeout(t *testing.T) {
	for d, want := range map[time.Duration]int{time.Millisecond: 5, 2 * time.Second: 5, 2500 * time.Millisecond: 6, 10 * time.Second: 13} {
		h := DefaultHookConfig()
		h.Timeout = d
		if got := h.RuntimeTimeout(); got != want {
			t.Errorf("timeout %v: runtime timeout %d, want %d", d, got, want)
		}
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left in %s: %s", dir, e.Name())
		}
	}
}

// injectSpec injects h into spec through InjectConfigJSON, the path every caller takes, and
// reports whether anything changed.
func injectSpec(t *testing.T, spec *rspec.Spec, h HookConfig) bool {
	t.Helper()
	raw, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	out, changed, err := InjectConfigJSON(raw, h)
	if err != nil {
		t.Fatal(err)
	}
	*spec = rspec.Spec{}
	if err := json.Unmarshal(out, spec); err != nil {
		t.Fatal(err)
	}
	return changed
}

func TestInjectHooks(t *testing.T) {
	h := testHook("/opt")
	other := rspec.Hook{Path: "/usr/bin/other", Args: []string{"other"}}
	spec := &rspec.Spec{Hooks: &rspec.Hooks{CreateRuntime: []rspec.Hook{other}, StartContainer: []rspec.Hook{other}}}
	if !injectSpec(t, spec, h) {
		t.Fatal("first injection changed nothing")
	}
	if len(spec.Hooks.CreateRuntime) != 2 || spec.Hooks.CreateRuntime[0].Path != other.Path || spec.Hooks.CreateRuntime[1].Path != h.Path ||
		len(spec.Hooks.Poststop) != 1 || len(spec.Hooks.StartContainer) != 1 {
		t.Fatalf("hooks after injection: %+v", spec.Hooks)
	}
	if got := spec.Hooks.Poststop[0].Args; got[len(got)-1] != "poststop" {
		t.Errorf("poststop args %q", got)
	}
	if injectSpec(t, spec, h) {
		t.Error("second injection changed something")
	}
	if len(spec.Hooks.CreateRuntime) != 2 || len(spec.Hooks.Poststop) != 1 {
		t.Errorf("second injection added hooks: %+v", spec.Hooks)
	}
	// A changed configuration replaces karmor's hook in place.
	h2 := h
	h2.Socket = "/run/other.sock"
	if !injectSpec(t, spec, h2) || len(spec.Hooks.CreateRuntime) != 2 || !slices.Contains(spec.Hooks.CreateRuntime[1].Args, "/run/other.sock") {
		t.Errorf("reconfigured injection: %+v", spec.Hooks.CreateRuntime)
	}
	// Duplicates left by hand are folded into one.
	spec.Hooks.Poststop = append(spec.Hooks.Poststop, spec.Hooks.Poststop[0])
	if !injectSpec(t, spec, h2) || len(spec.Hooks.Poststop) != 1 {
		t.Errorf("duplicates kept: %+v", spec.Hooks.Poststop)
	}
	// A spec without hooks gets them.
	empty := &rspec.Spec{}
	if !injectSpec(t, empty, h) || len(empty.Hooks.CreateRuntime) != 1 {
		t.Errorf("empty spec: %+v", empty.Hooks)
	}
}

func TestInjectConfigJSONKeepsUnknownFields(t *testing.T) {
	in := []byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"x-process-extra":7},"x-vendor":{"a":[1,2]},
		"hooks":{"prestart":[{"path":"/p"}],"futureStage":[{"path":"/f","args":["f"]}],"poststop":[{"path":"/keep"}]}}`)
	h := testHook("/opt")
	out, changed, err := InjectConfigJSON(in, h)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	hooks := doc["hooks"].(map[string]any)
	if doc["x-vendor"] == nil || doc["process"].(map[string]any)["x-process-extra"] != 7.0 || hooks["futureStage"] == nil || hooks["prestart"] == nil {
		t.Errorf("unknown fields lost: %s", out)
	}
	if ps := hooks["poststop"].([]any); len(ps) != 2 || ps[0].(map[string]any)["path"] != "/keep" {
		t.Errorf("poststop %v", ps)
	}
	again, changed, err := InjectConfigJSON(out, h)
	if err != nil || changed || !bytes.Equal(again, out) {
		t.Errorf("second injection: changed=%v err=%v", changed, err)
	}
	for name, bad := range map[string]string{
		"not json":       `{`,
		"hooks string":   `{"hooks":"x"}`,
		"stage object":   `{"hooks":{"poststop":{"path":"/x"}}}`,
		"array document": `[]`,
		"null document":  `null`,
	} {
		if _, _, err := InjectConfigJSON([]byte(bad), h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// "hooks": null is the same as no hooks.
	if out, changed, err := InjectConfigJSON([]byte(`{"ociVersion":"1.0.2","hooks":null}`), h); err != nil || !changed || !bytes.Contains(out, []byte("createRuntime")) {
		t.Errorf("null hooks: %v %v %s", changed, err, out)
	}
}

func TestInjectBundle(t *testing.T) {
	bundle := t.TempDir()
	cfg := filepath.Join(bundle, "config.json")
	if err := os.WriteFile(cfg, []byte(`{"ociVersion":"1.0.2","process":{"args":["sh"]}}`), 0o640); err != nil {
		t.Fatal(err)
	}
	h := testHook("/opt")
	changed, err := InjectBundle(bundle, h)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	fi, _ := os.Stat(cfg)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(cfg)
	if changed, err := InjectBundle(bundle, h); err != nil || changed {
		t.Errorf("second injection: changed=%v err=%v", changed, err)
	}
	after, _ := os.ReadFile(cfg)
	if !bytes.Equal(before, after) {
		t.Error("second injection rewrote the file")
	}
	assertNoTemp(t, bundle)

	// A symlinked config.json is refused, and its target untouched.
	target := filepath.Join(t.TempDir(), "real.json")
	os.WriteFile(target, []byte(`{"ociVersion":"1.0.2"}`), 0o644)
	linked := t.TempDir()
	os.Symlink(target, filepath.Join(linked, "config.json"))
	if _, err := InjectBundle(linked, h); err == nil {
		t.Error("symlinked config accepted")
	}
	if b, _ := os.ReadFile(target); string(b) != `{"ociVersion":"1.0.2"}` {
		t.Errorf("symlink target changed: %s", b)
	}
	if _, err := InjectBundle(t.TempDir(), h); err == nil {
		t.Error("bundle without config accepted")
	}
}

// FuzzInjectConfigJSON checks, for any config.json, that injection never panics, that what it
// accepts comes out as a valid config holding karmor's hooks, and that a second injection
// changes nothing.
func FuzzInjectConfigJSON(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":["sh"]}}`))
	f.Add([]byte(`{"hooks":{"poststop":[{"path":"/usr/local/bin/karmor-hook","args":["karmor-hook","x"]},{"path":"/x"}],"prestart":[]},"x":1}`))
	f.Add([]byte(`{"hooks":null}`))
	h := testHook("/opt")
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, _, err := InjectConfigJSON(raw, h)
		if err != nil {
			return
		}
		var spec rspec.Spec
		if err := json.Unmarshal(out, &spec); err != nil {
			t.Fatalf("injected config does not decode: %v\n%s", err, out)
		}
		if spec.Hooks == nil || len(spec.Hooks.CreateRuntime) == 0 || len(spec.Hooks.Poststop) == 0 {
			t.Fatalf("injected config lacks karmor's hooks: %s", out)
		}
		again, changed, err := InjectConfigJSON(out, h)
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("second injection: changed=%v err=%v\n%s", changed, err, out)
		}
	})
}
