package policy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/testutil"
	"github.com/karmor/karmor/pkg/policy"
)

// corpusRow is one line of the corpus's expected.tsv: the verdicts the upstream CRD schema gave
// a document, leniently (schema) and with kubectl's strict checks (strict), and why.
type corpusRow struct {
	file, kind, schema, strict, why string
	doc                             int
}

func readCorpus(t testing.TB) (dir string, rows []corpusRow) {
	t.Helper()
	root := testutil.SharedDir(t, "corpus")
	raw, err := os.ReadFile(filepath.Join(root, "expected.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if lines[0] != "file\tdoc\tkind\tschema\tstrict\twhy" {
		t.Fatalf("expected.tsv has an unexpected header %q", lines[0])
	}
	for i, l := range lines[1:] {
		f := strings.Split(l, "\t")
		if len(f) != 6 {
			t.Fatalf("expected.tsv line %d has %d columns, want 6", i+2, len(f))
		}
		doc, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("expected.tsv line %d: doc %q: %v", i+2, f[1], err)
		}
		rows = append(rows, corpusRow{file: f[0], doc: doc, kind: f[2], schema: f[3], strict: f[4], why: f[5]})
	}
	return filepath.Join(root, "policy-templates"), rows
}

// TestCorpusConformance checks every corpus document against the verdicts of the upstream schema:
// strict mode must agree with the strict column and lenient mode with the schema column, and each
// strict error must point at the field or line the why column names.
func TestCorpusConformance(t *testing.T) {
	dir, rows := readCorpus(t)
	docs, err := policy.ParseFiles([]string{dir}, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lenientDocs, err := policy.ParseFiles([]string{dir}, policy.Options{Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	strict, lenient := index(docs), index(lenientDocs)
	if len(docs) != len(rows) || len(lenientDocs) != len(rows) {
		t.Errorf("parsed %d documents strictly and %d leniently; expected.tsv lists %d", len(docs), len(lenientDocs), len(rows))
	}

	strictAgree, lenientAgree, pointed, strictInvalid := 0, 0, 0, 0
	for _, r := range rows {
		key := r.file + ":" + strconv.Itoa(r.doc)
		sd, ld := strict[key], lenient[key]
		if sd == nil || ld == nil {
			t.Errorf("%s: no such document parsed", key)
			continue
		}
		if sd.Kind != r.kind {
			t.Errorf("%s: kind %q, expected.tsv says %q", key, sd.Kind, r.kind)
		}
		if verdict(sd) == r.strict {
			strictAgree++
		} else {
			t.Errorf("%s: strict verdict %s, expected %s (%s); errors: %v", key, verdict(sd), r.strict, r.why, sd.Errors)
		}
		if verdict(ld) == r.schema {
			lenientAgree++
		} else {
			t.Errorf("%s: lenient verdict %s, expected %s (%s); errors: %v", key, verdict(ld), r.schema, r.why, ld.Errors)
		}
		if r.strict == "VALID" && sd.Policy == nil {
			t.Errorf("%s: valid but no typed Policy", key)
		}
		if r.strict != "INVALID" {
			continue
		}
		strictInvalid++
		if r.schema == "VALID" && len(ld.Warnings) == 0 {
			t.Errorf("%s: lenient mode accepted it without a warning about what strict mode refuses (%s)", key, r.why)
		}
		expectations := whyExpectations(r.why)
		if len(expectations) == 0 {
			t.Errorf("%s: cannot read the why column %q", key, r.why)
			continue
		}
		ok := true
		for _, e := range expectations {
			if !e.foundIn(sd.Errors) {
				t.Errorf("%s: no error %s; errors: %v", key, e, sd.Errors)
				ok = false
			}
		}
		if ok {
			pointed++
		}
	}
	t.Logf("strict agrees with the CRD schema + kubectl strict verdicts on %d/%d documents", strictAgree, len(rows))
	t.Logf("lenient agrees with the CRD schema verdicts on %d/%d documents", lenientAgree, len(rows))
	t.Logf("errors point at the field or line named by the why column in %d/%d strict-invalid documents", pointed, strictInvalid)
}

func index(docs []policy.Document) map[string]*policy.Document {
	m := make(map[string]*policy.Document, len(docs))
	for i := range docs {
		m[filepath.Base(docs[i].File)+":"+strconv.Itoa(docs[i].Index)] = &docs[i]
	}
	return m
}

func verdict(d *policy.Document) string {
	if d.Valid() {
		return "VALID"
	}
	return "INVALID"
}

// expectation is an error the why column says a document has.
type expectation struct {
	path    string // the field path, exactly
	message string // a word the message must contain
	line    int    // for duplicate keys: the line, within one (see foundIn)
}

func (e expectation) String() string {
	if e.line > 0 {
		return fmt.Sprintf("about %q at line %d±1 with %q", e.path, e.line, e.message)
	}
	return fmt.Sprintf("at %q with %q", e.path, e.message)
}

// foundIn reports whether an error matches. A duplicate key matches by key name and line: the
// YAML reader that produced the why column reports the line of a key that follows a block
// collection one off (the collection's last line, or the value's first), so ±1 is allowed.
func (e expectation) foundIn(errs []policy.Issue) bool {
	for _, is := range errs {
		if !strings.Contains(is.Message, e.message) {
			continue
		}
		if e.line > 0 {
			last := is.Path[strings.LastIndex(is.Path, ".")+1:]
			if last == e.path && is.Line >= e.line-1 && is.Line <= e.line+1 {
				return true
			}
			continue
		}
		if is.Path == e.path {
			return true
		}
	}
	return false
}

var (
	whyUnknown   = regexp.MustCompile(`^unknown field (.+)$`)
	whyDuplicate = regexp.MustCompile(`line (\d+): key "([^"]+)" already set in map`)
	whySchema    = regexp.MustCompile(`at '([^']*)': (.+?)(?: \| -|$)`)
	whyMissing   = regexp.MustCompile(`^missing property '([^']+)'$`)
)

// whyExpectations reads the why column of expected.tsv.
func whyExpectations(why string) []expectation {
	var out []expectation
	if m := whyUnknown.FindStringSubmatch(why); m != nil {
		for _, p := range strings.Split(m[1], ", ") {
			out = append(out, expectation{path: p, message: "unknown field"})
		}
		return out
	}
	for _, m := range whyDuplicate.FindAllStringSubmatch(why, -1) {
		line, _ := strconv.Atoi(m[1])
		out = append(out, expectation{path: m[2], message: "duplicate key", line: line})
	}
	for _, m := range whySchema.FindAllStringSubmatch(why, -1) {
		path := pointerToPath(m[1])
		if mm := whyMissing.FindStringSubmatch(m[2]); mm != nil {
			out = append(out, expectation{path: path + "." + mm[1], message: "missing"})
		} else if strings.HasPrefix(m[2], "value must be one of") {
			out = append(out, expectation{path: path, message: "must be one of"})
		}
	}
	return out
}

// pointerToPath turns a JSON pointer (/spec/file/matchPatterns/0) into our path notation
// (spec.file.matchPatterns[0]).
func pointerToPath(ptr string) string {
	var b strings.Builder
	for _, seg := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteString(".")
		}
		b.WriteString(seg)
	}
	return b.String()
}

// BenchmarkParseCorpus measures parsing and validating the whole corpus from memory.
func BenchmarkParseCorpus(b *testing.B) {
	dir, _ := readCorpus(b)
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	type file struct {
		name string
		data []byte
	}
	var files []file
	size := 0
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, file{e.Name(), data})
		size += len(data)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	docs := 0
	for b.Loop() {
		docs = 0
		for _, f := range files {
			docs += len(policy.ParseBytes(f.name, f.data, policy.Options{}))
		}
	}
	if docs != len(files) {
		b.Fatalf("parsed %d documents from %d files", docs, len(files))
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(docs), "µs/doc")
}
