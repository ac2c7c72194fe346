package podmanlabels

import (
	"fmt"
	"testing"
)

// BenchmarkLabelsUncached is one lookup that reads the file: open, shared lock, the pages from
// the root to one container's config, close, decode. The lock is held for all but the decode.
// 1000 containers of a realistic size (about 12 KiB of config each).
func BenchmarkLabelsUncached(b *testing.B) {
	path := dbPath(b)
	const n = 1000
	ctrs := manyCtrs(n)
	for i := range ctrs {
		ctrs[i].specBytes = 11 << 10
	}
	writeLibpodDB(b, path, ctrs)
	r, _ := newReader(b, path, func(o *Options) { o.CacheSize = 1 })
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// CacheSize 1 and a new container each time: every lookup reads the file.
		if _, ok := r.Labels(ctrID(i % n)); !ok {
			b.Fatal(fmt.Sprint("container ", i%n, " not found"))
		}
		i++
	}
}

// BenchmarkLabelsCached is the answer for a container already read: what karmord pays per
// Podman container in each list after the first.
func BenchmarkLabelsCached(b *testing.B) {
	path := dbPath(b)
	writeLibpodDB(b, path, manyCtrs(10))
	r, _ := newReader(b, path, nil)
	r.Labels(ctrID(3))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := r.Labels(ctrID(3)); !ok {
			b.Fatal("not found")
		}
	}
}
