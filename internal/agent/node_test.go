package agent

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseNodeLabels(t *testing.T) {
	got, err := ParseNodeLabels([]string{"zone=eu-1", " tier = edge ", "zone=eu-2", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"zone": "eu-2", "tier": "edge", "empty": ""}; !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range [][]string{{"novalue"}, {"=v"}, {"a b=c"}, {"k=\x01"}, {strings.Repeat("k", 400) + "=v"}} {
		if _, err := ParseNodeLabels(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadNodeLabelsFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for name, c := range map[string]struct {
		content string
		want    map[string]string
	}{
		"lines":  {"# node labels\nzone=eu-1\n\n  kubernetes.io/os = linux \n", map[string]string{"zone": "eu-1", "kubernetes.io/os": "linux"}},
		"quoted": {`topology.kubernetes.io/zone="eu-1"` + "\n", map[string]string{"topology.kubernetes.io/zone": "eu-1"}},
		"json":   {` {"zone": "eu-1", "rack": "r7"} `, map[string]string{"zone": "eu-1", "rack": "r7"}},
		"empty":  {"", map[string]string{}},
	} {
		got, err := ReadNodeLabelsFile(write(name, c.content))
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, c.want)
		}
	}
	var many strings.Builder
	for i := range maxNodeLabels + 1 {
		fmt.Fprintf(&many, "k%d=v\n", i)
	}
	for name, content := range map[string]string{
		"not k=v":       "zone eu-1\n",
		"json non-text": `{"zone": 1}`,
		"json trailing": `{"zone": "a"} {}`,
		"json broken":   `{"zone": `,
		"too many":      many.String(),
		"too large":     strings.Repeat("#", maxNodeLabelsFileSize+1),
	} {
		if got, err := ReadNodeLabelsFile(write(name, content)); err == nil {
			t.Errorf("%s: accepted %v", name, got)
		} else if !strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("%s: the error does not name the file: %v", name, err)
		}
	}
	if _, err := ReadNodeLabelsFile(filepath.Join(dir, "absent")); err == nil {
		t.Error("a missing file was accepted")
	}
}

// FuzzNodeLabelsFile: whatever a labels file holds, parsing never panics, and what it accepts
// is within the bounds every selector relies on.
func FuzzNodeLabelsFile(f *testing.F) {
	f.Add([]byte("zone=eu-1\n# c\nrack=\"r7\"\n"))
	f.Add([]byte(`{"zone":"eu-1"}`))
	f.Add([]byte("{\"a\":\"\\u0000\"}"))
	f.Add([]byte("=\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		labels, err := parseNodeLabelsFile(data)
		if err != nil {
			return
		}
		if err := checkNodeLabels(labels); err != nil {
			t.Fatalf("accepted labels that fail the check: %v", err)
		}
	})
}
