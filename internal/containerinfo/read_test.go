package containerinfo

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func TestReadState(t *testing.T) {
	st, err := ReadState(strings.NewReader(`{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b","annotations":{"k":"v"},"future":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.ID != "abc" || st.Pid != 42 || st.Bundle != "/b" || st.Status != "creating" || st.Annotations["k"] != "v" {
		t.Fatalf("decoded %+v", st)
	}
	bad := map[string]string{
		"empty":      ``,
		"not json":   `{"id":`,
		"no id":      `{"status":"creating","pid":1}`,
		"neg pid":    `{"id":"x","pid":-3}`,
		"trailing":   `{"id":"x"} {"id":"y"}`,
		"garbage":    `{"id":"x"}xyz`,
		"wrong type": `{"id":5}`,
		"array":      `[]`,
	}
	for name, in := range bad {
		if st, err := ReadState(strings.NewReader(in)); err == nil {
			t.Errorf("%s: accepted %+v", name, st)
		}
	}
}

func TestReadStateCap(t *testing.T) {
	pad := strings.Repeat("a", MaxStateBytes)
	_, err := ReadState(strings.NewReader(`{"id":"x","bundle":"` + pad + `"}`))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized state: got %v, want ErrTooLarge", err)
	}
	// Just under the cap still decodes.
	body := `{"id":"x","bundle":"` + strings.Repeat("a", MaxStateBytes-40) + `"}`
	if _, err := ReadState(strings.NewReader(body)); err != nil {
		t.Fatalf("state of %d bytes rejected: %v", len(body), err)
	}
}

func TestReadSpec(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), `{"ociVersion":"1.0.2","process":{"args":["sh"],"apparmorProfile":"p"},"annotations":{"a":"b"}}`)
	spec, err := ReadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Process.ApparmorProfile != "p" || spec.Annotations["a"] != "b" {
		t.Fatalf("decoded %+v", spec)
	}

	if _, err := ReadSpec("relative/bundle"); err == nil {
		t.Error("relative bundle accepted")
	}
	if _, err := ReadSpec(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing config: got %v, want not-exist", err)
	}

	// A config.json that is a symlink is refused, even to a valid config.
	link := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "config.json"), filepath.Join(link, "config.json")); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSpec(link); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("symlinked config: got %v, want a symlink refusal", err)
	}

	// A FIFO must not block the reader.
	fifo := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(fifo, "config.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSpec(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO config: got %v, want not a regular file", err)
	}

	big := t.TempDir()
	writeFile(t, filepath.Join(big, "config.json"), `{"hostname":"`+strings.Repeat("h", MaxSpecBytes)+`"}`)
	if _, err := ReadSpec(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized config: got %v, want ErrTooLarge", err)
	}

	malformed := t.TempDir()
	writeFile(t, filepath.Join(malformed, "config.json"), `{"process":{"args":"sh"}}`)
	if _, err := ReadSpec(malformed); err == nil {
		t.Error("config with args as a string accepted")
	}
}

func TestReadSpecSummary(t *testing.T) {
	dir := t.TempDir()
	all := capNames[:]
	writeFile(t, filepath.Join(dir, "config.json"), mustJSON(t, map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{"args": []string{"sh"}, "apparmorProfile": "p", "env": []string{"A=1"},
			"capabilities": map[string]any{"bounding": all, "effective": all}},
		"linux": map[string]any{"cgroupsPath": "/k/c", "namespaces": []map[string]string{{"type": "pid"}}},
		"annotations": map[string]string{"io.container.manager": "cri-o", "io.kubernetes.cri-o.ContainerID": "x",
			"io.kubernetes.pod.name": "p1", "io.kubernetes.cri-o.Labels": `{"a":"b"}`},
		"mounts": []map[string]any{{"destination": "/proc", "type": "proc"}},
	}))
	full, err := ReadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := ReadSpecSummary(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := &rspec.State{ID: "x"}
	cf, cs := FromOCI(st, full), FromOCI(st, sum)
	if !reflect.DeepEqual(cf, cs) {
		t.Fatalf("summary gives %+v, full spec %+v", cs, cf)
	}
	if cs.Pod != "p1" || cs.AppArmor != "p" || cs.CgroupPath != "/k/c" || cs.Labels["a"] != "b" || cs.Privileged != (HostCapLastCap() < len(capNames)) {
		t.Errorf("summary container %+v", cs)
	}
	if _, err := ReadSpecSummary("rel"); err == nil {
		t.Error("relative bundle accepted")
	}
	if _, err := DecodeSpecSummary([]byte(`{"annotations":{"a":1}}`)); err == nil {
		t.Error("annotation of the wrong type accepted")
	}
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","id":"abc","status":"creating","pid":42,"bundle":"/b","annotations":{"k":"v"}}`))
	f.Add([]byte(`{"id":"x","pid":-1}`))
	f.Add([]byte(`{"id":"x"} x`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			return
		}
		if st.ID == "" || st.Pid < 0 {
			t.Fatalf("accepted an invalid state: %+v", st)
		}
		// Whatever is accepted must give a container without panicking, bounded.
		c := FromOCI(st, nil)
		if c.ID != st.ID || len(c.Annotations) > MaxAnnotations || len(c.Labels) > MaxLabels {
			t.Fatalf("container %+v from state %+v", c, st)
		}
	})
}

func FuzzDecodeSpec(f *testing.F) {
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"capabilities":{"bounding":["CAP_KILL"]}},"annotations":{"io.kubernetes.cri-o.Labels":"{\"a\":\"b\"}"},"linux":{"cgroupsPath":"/x"}}`))
	f.Add([]byte(`{"annotations":{"karmor.io/pod-labels":"{\"app\":\"web\"}","io.kubernetes.pod.name":"p"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		spec, err := DecodeSpec(b)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) && !bytes.HasPrefix(bytes.TrimSpace(b), []byte("null")) {
			t.Fatalf("accepted a non-object config %q", b)
		}
		c := FromOCI(nil, spec)
		if len(c.Annotations) > MaxAnnotations || len(c.Labels) > MaxLabels {
			t.Fatalf("unbounded container %+v", c)
		}
		// The hook's summary decoder must see what the full decoder sees.
		sum, err := DecodeSpecSummary(b)
		if err != nil {
			t.Fatalf("full decode accepted what the summary refused: %v", err)
		}
		if cs := FromOCI(nil, sum); !reflect.DeepEqual(cs, c) {
			t.Fatalf("summary gives %+v, full spec %+v", cs, c)
		}
		total := 0
		for k, v := range c.Annotations {
			total += len(k) + len(v)
		}
		if total > MaxAnnotationBytes {
			t.Fatalf("annotations hold %d bytes, over %d", total, MaxAnnotationBytes)
		}
	})
}
