package policy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

func policiesDir(t testing.TB, sub string) string {
	return filepath.Join(testutil.RepoRoot(t), "testdata", "policies", sub)
}

// TestValidTestdata: every document under testdata/policies/valid is valid, without warnings,
// strictly and leniently, and decodes into a typed Policy.
func TestValidTestdata(t *testing.T) {
	for _, lenient := range []bool{false, true} {
		docs, err := policy.ParseFiles([]string{policiesDir(t, "valid")}, policy.Options{Lenient: lenient})
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 7 {
			t.Errorf("lenient=%v: %d documents, want 7", lenient, len(docs))
		}
		for _, d := range docs {
			if !d.Valid() || len(d.Warnings) > 0 || d.Policy == nil {
				t.Errorf("lenient=%v: %s:%d: errors %v, warnings %v, policy %v", lenient, d.File, d.Index, d.Errors, d.Warnings, d.Policy != nil)
			}
		}
	}
}

// want is an error a testdata file declares it must produce, in a trailing comment:
// "# want DOC LINE:COLUMN PATH: MESSAGE-START" (PATH "-" for none).
type want struct {
	doc, line, column int
	path, message     string
}

var wantLine = regexp.MustCompile(`^# want (\d+) (\d+):(\d+) (\S+): (.+)$`)

func readWants(t *testing.T, file string) []want {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []want
	for _, l := range strings.Split(string(raw), "\n") {
		m := wantLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		w := want{path: m[4], message: m[5]}
		w.doc, _ = strconv.Atoi(m[1])
		w.line, _ = strconv.Atoi(m[2])
		w.column, _ = strconv.Atoi(m[3])
		if w.path == "-" {
			w.path = ""
		}
		out = append(out, w)
	}
	if len(out) == 0 {
		t.Fatalf("%s declares no expected errors", file)
	}
	return out
}

// TestInvalidTestdata: each file under testdata/policies/invalid produces exactly the errors it
// declares, at the declared document, line, column and path.
func TestInvalidTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(policiesDir(t, "invalid"), "*.yaml"))
	if err != nil || len(files) < 9 {
		t.Fatalf("found %d invalid testdata files (%v), want at least 9", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			wants := readWants(t, f)
			docs, err := policy.ParseFiles([]string{f}, policy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var got []policy.Issue
			var gotDoc []int
			for _, d := range docs {
				for _, e := range d.Errors {
					got = append(got, e)
					gotDoc = append(gotDoc, d.Index)
				}
			}
			used := make([]bool, len(got))
			for _, w := range wants {
				found := false
				for i, e := range got {
					if !used[i] && gotDoc[i] == w.doc && e.Line == w.line && e.Column == w.column && e.Path == w.path && strings.HasPrefix(e.Message, w.message) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("missing error: doc %d %d:%d %s: %s", w.doc, w.line, w.column, w.path, w.message)
				}
			}
			for i, e := range got {
				if !used[i] {
					t.Errorf("unexpected error in doc %d: %s", gotDoc[i], e)
				}
			}
		})
	}
}

// TestMixedTestdata: a manifest bundle is invalid as a whole unless other documents are ignored.
func TestMixedTestdata(t *testing.T) {
	dir := policiesDir(t, "mixed")
	docs, err := policy.ParseFiles([]string{dir}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Valid() || !docs[1].Valid() || docs[0].Kind != "Deployment" {
		t.Fatalf("strict: want an invalid Deployment then a valid policy, got %+v", docs)
	}
	docs, err = policy.ParseFiles([]string{dir}, policy.Options{IgnoreOther: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 || !docs[0].Valid() || docs[0].Index != 1 || docs[0].Name != "ksp-web" {
		t.Fatalf("IgnoreOther: want only the policy, document 1, got %+v", docs)
	}
	if err := policy.FirstError(docs); err != nil {
		t.Errorf("FirstError = %v, want nil", err)
	}
}
