package policy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/pkg/policy"
)

// FuzzParseBytes feeds arbitrary bytes to the parser. It must never panic (a recovered panic shows
// up as an "internal error" issue and fails too), and its verdicts must be consistent: lenient mode
// never refuses what strict mode accepts, and a valid policy always comes with its typed form.
func FuzzParseBytes(f *testing.F) {
	for _, dir := range []string{"valid", "invalid", "mixed"} {
		files, _ := filepath.Glob(filepath.Join(policiesDir(f, dir), "*"))
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	for _, c := range ruleCases {
		f.Add([]byte(doc(c.kind, c.spec)))
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("<<: {a: 1}\n"))
	f.Add([]byte("--- !!map\n? [a]\n: b\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		strict := policy.ParseBytes("fuzz.yaml", data, policy.Options{MaxFileSize: 1 << 16})
		lenient := policy.ParseBytes("fuzz.yaml", data, policy.Options{MaxFileSize: 1 << 16, Lenient: true})
		if len(strict) != len(lenient) {
			t.Fatalf("%d documents strictly, %d leniently", len(strict), len(lenient))
		}
		for i := range strict {
			s, l := &strict[i], &lenient[i]
			for _, d := range []*policy.Document{s, l} {
				if d.File != "fuzz.yaml" {
					t.Fatalf("File = %q", d.File)
				}
				for _, is := range append(append([]policy.Issue(nil), d.Errors...), d.Warnings...) {
					if strings.Contains(is.Message, "internal error") {
						t.Fatalf("internal error: %s", is)
					}
					if is.Line < 0 || is.Column < 0 {
						t.Fatalf("negative position: %+v", is)
					}
				}
				if d.Valid() && policy.IsKind(d.Kind) && (d.Policy == nil || d.Policy.Kind != d.Kind) {
					t.Fatalf("valid %s without a typed policy of its kind: %+v", d.Kind, d.Policy)
				}
			}
			if s.Index != l.Index {
				t.Fatalf("document %d: index %d strictly, %d leniently", i, s.Index, l.Index)
			}
			if s.Valid() && !l.Valid() {
				t.Fatalf("document %d valid strictly but not leniently: %v", i, l.Errors)
			}
		}
	})
}
