package oci

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateTitle(t *testing.T) {
	accept := []string{"policy.yaml", "a.yml", "ksp-block-sa.yaml", ".hidden.yaml", "名前.yaml", "with space.yaml", "x"}
	for _, title := range accept {
		if err := ValidateTitle(title); err != nil {
			t.Errorf("ValidateTitle(%q) = %v, want nil", title, err)
		}
	}
	reject := map[string]string{
		"":                       "empty",
		".":                      "directory",
		"..":                     "..",
		"../x":                   "separator",
		"/etc/x":                 "absolute",
		"a/b":                    "separator",
		`a\b`:                    "separator",
		"x..y":                   "..",
		"nul\x00.yaml":           "NUL",
		"line\nbreak.yaml":       "control",
		"\xff.yaml":              "UTF-8",
		strings.Repeat("a", 256): "longer",
	}
	for title, want := range reject {
		err := ValidateTitle(title)
		if err == nil {
			t.Errorf("ValidateTitle(%q) = nil, want an error about %s", title, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateTitle(%q) = %q, want it to mention %q", title, err, want)
		}
	}
}

// FuzzValidateTitle checks the property pull relies on: an accepted title, joined to a
// directory, names a file directly inside that directory.
func FuzzValidateTitle(f *testing.F) {
	for _, s := range []string{"a.yaml", "../x", "/etc/passwd", "a/b", "..", ".", "x\x00y", "...", "a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, title string) {
		if ValidateTitle(title) != nil {
			return
		}
		dir := "/srv/policies"
		joined := filepath.Join(dir, title)
		if filepath.Dir(joined) != dir || filepath.Base(joined) != title {
			t.Fatalf("accepted title %q escapes or is rewritten: %q", title, joined)
		}
	})
}
