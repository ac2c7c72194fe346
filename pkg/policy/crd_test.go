package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestSchemasMatchCRDs compares the schemas built in crd.go with testdata/crd/<Kind>.schema, a
// flattened copy of the upstream CRDs' openAPIV3Schema (one line per field: path, type and every
// constraint). A difference means we enforce more or less than the API server does.
func TestSchemasMatchCRDs(t *testing.T) {
	for _, kind := range Kinds {
		t.Run(kind, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", "crd", kind+".schema"))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				if !strings.HasPrefix(l, "#") {
					want = append(want, l)
				}
			}
			var got []string
			flatten(kindSchemas[kind], "", &got)
			wantSet, gotSet := toSet(want), toSet(got)
			for _, l := range want {
				if !gotSet[l] {
					t.Errorf("CRD has, we lack:  %s", shorten(l))
				}
			}
			for _, l := range got {
				if !wantSet[l] {
					t.Errorf("we have, CRD lacks: %s", shorten(l))
				}
			}
			if len(got) != len(want) {
				t.Errorf("%d schema lines, CRD has %d", len(got), len(want))
			}
		})
	}
}

func toSet(lines []string) map[string]bool {
	m := make(map[string]bool, len(lines))
	for _, l := range lines {
		m[l] = true
	}
	return m
}

func shorten(s string) string { return truncate(s, 300) }

// flatten writes s in the format of testdata/crd/*.schema. Metadata is printed as the CRD has it,
// "type: object": what we check inside it is Kubernetes' ObjectMeta, not part of the CRD.
func flatten(s *schema, path string, out *[]string) {
	name := path
	if name == "" {
		name = "."
	}
	parts := []string{name, "type=" + s.typ.String()}
	if len(s.required) > 0 {
		r := append([]string(nil), s.required...)
		sort.Strings(r)
		parts = append(parts, "required="+strings.Join(r, ","))
	}
	if s.enum != nil {
		parts = append(parts, "enum="+strings.Join(s.enum, "|"))
	}
	if s.pattern != nil {
		parts = append(parts, "pattern="+s.pattern.String())
	}
	if s.maxLength > 0 {
		parts = append(parts, fmt.Sprintf("maxLength=%d", s.maxLength))
	}
	if s.min != nil {
		parts = append(parts, fmt.Sprintf("minimum=%d", *s.min))
	}
	if s.max != nil {
		parts = append(parts, fmt.Sprintf("maximum=%d", *s.max))
	}
	if s.maxItems > 0 {
		parts = append(parts, fmt.Sprintf("maxItems=%d", s.maxItems))
	}
	if s.int32 {
		parts = append(parts, "format=int32")
	}
	if s.values != nil {
		parts = append(parts, "additionalProperties="+s.values.typ.String())
	}
	if len(s.rules) > 0 {
		var msgs []string
		for _, r := range s.rules {
			msgs = append(msgs, r.message)
		}
		parts = append(parts, "validations="+strings.Join(msgs, "|"))
	}
	*out = append(*out, strings.Join(parts, " "))
	if path == ".metadata" {
		return
	}
	names := make([]string, 0, len(s.props))
	for n := range s.props {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		flatten(s.props[n], path+"."+n, out)
	}
	if s.items != nil {
		flatten(s.items, path+"[]", out)
	}
}
