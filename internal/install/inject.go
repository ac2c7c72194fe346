package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/karmor/karmor/internal/containerinfo"
)

// injectStage puts want into list once: it replaces the first karmor hook found and drops any
// further ones, or appends want when there is none.
func injectStage(list []rspec.Hook, want rspec.Hook, h HookConfig) ([]rspec.Hook, bool) {
	out := make([]rspec.Hook, 0, len(list)+1)
	placed, changed := false, false
	for _, hk := range list {
		if !isKarmorHook(hk, h) {
			out = append(out, hk)
			continue
		}
		if placed {
			changed = true // a duplicate karmor hook: drop it
			continue
		}
		placed = true
		if !sameHook(hk, want) {
			changed = true
		}
		out = append(out, want)
	}
	if !placed {
		out = append(out, want)
		changed = true
	}
	return out, changed
}

// InjectConfigJSON adds karmor's hooks to a config.json document. Only the hook stages karmor
// uses are decoded and re-encoded; every other field, including ones this program's spec types
// do not know, is kept as it was. It returns the new document and whether anything changed
// (the input unchanged when not).
func InjectConfigJSON(raw []byte, h HookConfig) ([]byte, bool, error) {
	if _, err := containerinfo.DecodeSpec(raw); err != nil {
		return nil, false, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return nil, false, fmt.Errorf("OCI config is not a JSON object: %v", err)
	}
	stages := map[string]json.RawMessage{}
	if rawHooks, ok := top["hooks"]; ok && !bytes.Equal(bytes.TrimSpace(rawHooks), []byte("null")) {
		if err := json.Unmarshal(rawHooks, &stages); err != nil {
			return nil, false, fmt.Errorf("OCI config's hooks are not an object: %w", err)
		}
	}
	changed := false
	for _, stage := range Stages {
		var list []rspec.Hook
		if r, ok := stages[stage]; ok {
			if err := json.Unmarshal(r, &list); err != nil {
				return nil, false, fmt.Errorf("OCI config's %s hooks: %w", stage, err)
			}
		}
		list, ok := injectStage(list, h.OCIHook(stage), h)
		if !ok {
			continue
		}
		changed = true
		enc, err := json.Marshal(list)
		if err != nil {
			return nil, false, err
		}
		stages[stage] = enc
	}
	if !changed {
		return raw, false, nil
	}
	enc, err := json.Marshal(stages)
	if err != nil {
		return nil, false, err
	}
	top["hooks"] = enc
	out, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return nil, false, err
	}
	return append(out, '\n'), true, nil
}

// InjectBundle adds karmor's hooks to <bundle>/config.json in place, atomically, keeping the
// file's mode. It does not write when nothing changes, and reports whether it did.
func InjectBundle(bundle string, h HookConfig) (bool, error) {
	if err := h.Check(); err != nil {
		return false, err
	}
	abs, err := filepath.Abs(bundle)
	if err != nil {
		return false, err
	}
	path := filepath.Join(abs, "config.json")
	raw, err := containerinfo.ReadRegularFile(path, containerinfo.MaxSpecBytes)
	if err != nil {
		return false, fmt.Errorf("read bundle config: %w", err)
	}
	out, changed, err := InjectConfigJSON(raw, h)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	if !changed {
		return false, nil
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return false, err
	}
	if err := WriteFileAtomic(path, out, fi.Mode().Perm()); err != nil {
		return false, err
	}
	return true, nil
}
