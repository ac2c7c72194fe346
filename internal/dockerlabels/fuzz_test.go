package dockerlabels

import (
	"testing"
	"unicode/utf8"

	"github.com/karmor/karmor/internal/containerinfo"
)

// FuzzDecode: any config.v2.json content decodes to a bounded answer for the right container or
// an error, never a panic.
func FuzzDecode(f *testing.F) {
	id := dockerID(1)
	f.Add([]byte(`{"ID":"` + id + `","Name":"/web","Config":{"Image":"busybox","Labels":{"app":"web"}}}`))
	f.Add([]byte(`{"ID":"` + id + `","Config":null}`))
	f.Add([]byte(`{"ID":"other"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decode(data, id)
		if err != nil {
			return
		}
		if len(c.Labels) > containerinfo.MaxLabels || len(c.Name) > containerinfo.MaxValueBytes || len(c.Image) > containerinfo.MaxValueBytes {
			t.Fatalf("unbounded answer: %d labels, name %d bytes, image %d bytes", len(c.Labels), len(c.Name), len(c.Image))
		}
		if !utf8.ValidString(c.Name) {
			t.Fatalf("name %q is not UTF-8", c.Name)
		}
	})
}
