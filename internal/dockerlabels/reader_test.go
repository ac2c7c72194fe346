package dockerlabels

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/karmor/karmor/internal/containerinfo"
)

func dockerID(n int) string { return fmt.Sprintf("%064x", n+0xabc) }

// writeRecord writes a config.v2.json shaped like dockerd 20.10's (the fields around the ones
// read included, so that they are skipped as in real files).
func writeRecord(t testing.TB, root, id, name string, labels map[string]string) {
	t.Helper()
	rec := map[string]any{
		"StreamConfig": map[string]any{},
		"State":        map[string]any{"Running": true, "Pid": 4242},
		"ID":           id,
		"Created":      "2026-12-01T10:00:00Z",
		"Path":         "/bin/sh",
		"Args":         []string{"-c", "sleep 1000"},
		"Config":       map[string]any{"Hostname": id[:12], "Env": []string{"PATH=/bin"}, "Image": "busybox:karmor", "Labels": labels},
		"Image":        "sha256:" + strings.Repeat("1", 64),
		"Name":         "/" + name,
		"Driver":       "vfs",
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "containers", id, "config.v2.json"), data)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func open(t testing.TB, opts Options) *Reader {
	t.Helper()
	r, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLookupReadsNameImageAndLabels(t *testing.T) {
	root := t.TempDir()
	id := dockerID(1)
	writeRecord(t, root, id, "web", map[string]string{"app": "web", "tier": "front"})
	r := open(t, Options{Root: root})
	c, ok := r.Lookup(id)
	if !ok || c.Name != "web" || c.Image != "busybox:karmor" || !maps.Equal(c.Labels, map[string]string{"app": "web", "tier": "front"}) {
		t.Fatalf("lookup: %+v %v", c, ok)
	}
	// Cached: the record is read once per container.
	os.RemoveAll(filepath.Join(root, "containers", id))
	if c2, ok := r.Lookup(id); !ok || c2.Name != "web" {
		t.Errorf("second lookup: %+v %v", c2, ok)
	}

	bare := dockerID(2)
	writeRecord(t, root, bare, "plain", nil)
	if c, ok := r.Lookup(bare); !ok || c.Name != "plain" || c.Labels != nil {
		t.Errorf("container without labels: %+v %v", c, ok)
	}
}

// TestMissingRecordIsAskedAgain: a record not there yet (or a container that is not Docker's)
// is believed missing for RetryAfter, then read again.
func TestMissingRecordIsAskedAgain(t *testing.T) {
	root := t.TempDir()
	id := dockerID(3)
	r := open(t, Options{Root: root, RetryAfter: time.Hour})
	if _, ok := r.Lookup(id); ok {
		t.Fatal("found a container with no record")
	}
	writeRecord(t, root, id, "late", nil)
	if _, ok := r.Lookup(id); ok {
		t.Error("missing was not believed for RetryAfter")
	}
	r2 := open(t, Options{Root: root, RetryAfter: time.Nanosecond})
	r2.Lookup(dockerID(4))
	writeRecord(t, root, dockerID(4), "later", nil)
	time.Sleep(time.Millisecond)
	if c, ok := r2.Lookup(dockerID(4)); !ok || c.Name != "later" {
		t.Errorf("after RetryAfter: %+v %v", c, ok)
	}
}

// TestUnusableRecords: what is not a Docker ID never becomes a path; records that lie about
// their container, do not decode, are too big or are not files are refused; labels are bounded.
func TestUnusableRecords(t *testing.T) {
	root := t.TempDir()
	r := open(t, Options{Root: root, RetryAfter: time.Nanosecond})
	for _, id := range []string{"", "../../etc", strings.Repeat("A", 64), dockerID(1)[:63], dockerID(1) + "0", strings.Repeat("g", 64)} {
		if IsContainerID(id) {
			t.Errorf("%q taken for a Docker ID", id)
		}
		if _, ok := r.Lookup(id); ok {
			t.Errorf("lookup of %q succeeded", id)
		}
	}

	other := dockerID(10)
	writeRecord(t, root, dockerID(11), "other", nil)
	writeFile(t, filepath.Join(root, "containers", other, "config.v2.json"),
		mustRead(t, filepath.Join(root, "containers", dockerID(11), "config.v2.json")))
	malformed := dockerID(12)
	writeFile(t, filepath.Join(root, "containers", malformed, "config.v2.json"), []byte(`{"ID":"`+malformed+`","Name":`))
	big := dockerID(13)
	writeFile(t, filepath.Join(root, "containers", big, "config.v2.json"), []byte(`{"ID":"`+big+`","Pad":"`+strings.Repeat("x", MaxConfigBytes)+`"}`))
	dir := dockerID(14)
	if err := os.MkdirAll(filepath.Join(root, "containers", dir, "config.v2.json"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, id := range map[string]string{"another container's record": other, "malformed": malformed, "too big": big, "a directory": dir} {
		if c, ok := r.Lookup(id); ok {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}

	many := map[string]string{"ok": "yes", "long": strings.Repeat("v", containerinfo.MaxLabelValueBytes+1)}
	for i := range containerinfo.MaxLabels + 10 {
		many[fmt.Sprintf("k%04d", i)] = "v"
	}
	bounded := dockerID(15)
	writeRecord(t, root, bounded, "bounded", many)
	c, ok := r.Lookup(bounded)
	if !ok || len(c.Labels) != containerinfo.MaxLabels || c.Labels["long"] != "" {
		t.Errorf("labels not bounded: %d labels, ok %v", len(c.Labels), ok)
	}
}

func TestCacheIsBounded(t *testing.T) {
	root := t.TempDir()
	r := open(t, Options{Root: root, CacheSize: 3})
	for i := range 10 {
		writeRecord(t, root, dockerID(i), fmt.Sprint("c", i), nil)
		if c, ok := r.Lookup(dockerID(i)); !ok || c.Name != fmt.Sprint("c", i) {
			t.Fatalf("lookup %d: %+v %v", i, c, ok)
		}
	}
	if n := len(r.cache.items); n != 3 {
		t.Errorf("cache holds %d answers, want 3", n)
	}
	if _, ok := r.cache.get(dockerID(9)); !ok {
		t.Error("the newest answer was forgotten")
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{{Root: "relative/docker"}, {Root: "/x", CacheSize: -1}, {Root: "/x", RetryAfter: -time.Second}} {
		if _, err := Open(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
