package podmanlabels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
)

// FuzzLookup: any file, read as a libpod database, gives labels or an error: never a panic, a
// hang or an unbounded allocation. The seeds are real databases written by bbolt with 1 KiB
// pages, small enough for the fuzzer to mutate quickly: two containers (one inline, one on
// overflow pages) and a dozen small ones (branch pages in "ctr").
func FuzzLookup(f *testing.F) {
	small := manyCtrs(12)
	for i := range small {
		small[i].specBytes = 0
	}
	big := manyCtrs(2)
	big[0].specBytes = 2 << 10
	for _, ctrs := range [][]libpodCtr{big, small} {
		path := dbPath(f)
		writePagedLibpodDB(f, path, 1024, ctrs)
		seed, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		// bbolt grows its file ahead of use; the pages past the high-water mark are never read.
		bf, err := openBoltFile(bytes.NewReader(seed), int64(len(seed)), maxPageBytes)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(seed[:min(int64(len(seed)), int64(bf.hwm)*bf.pageSize)], uint8(0))
	}
	f.Add([]byte("SQLite format 3\x00"), uint8(0))
	f.Fuzz(func(t *testing.T, file []byte, which uint8) {
		id := ctrID(int(which) % 16)
		config, err := lookupConfig(bytes.NewReader(file), int64(len(file)), id)
		if err != nil {
			var cerr *corruptError
			var rerr *recordError
			if !errors.Is(err, errNotFound) && !errors.As(err, &cerr) && !errors.As(err, &rerr) {
				t.Fatalf("an error of no known kind: %v", err)
			}
			return
		}
		if len(config) > MaxConfigBytes {
			t.Fatalf("a config of %d bytes passed the %d bound", len(config), MaxConfigBytes)
		}
		labels, err := decodeLabels(config, id)
		if err == nil && len(labels) > 256 {
			t.Fatalf("%d labels passed the bound", len(labels))
		}
	})
}

// FuzzBoltPage: one page of any content, as the root of a bucket, never crashes the search.
func FuzzBoltPage(f *testing.F) {
	leaf := make([]byte, 64)
	binary.NativeEndian.PutUint16(leaf[8:], leafPageFlag)
	binary.NativeEndian.PutUint16(leaf[10:], 1)
	f.Add(leaf, []byte("k"))
	branch := bytes.Clone(leaf)
	binary.NativeEndian.PutUint16(branch[8:], branchPageFlag)
	f.Add(branch, []byte("k"))
	f.Fuzz(func(t *testing.T, p []byte, key []byte) {
		if len(p) < pageHeaderSize {
			return
		}
		_, _ = findLeaf(page(p), key)
		_, _ = findBranch(page(p), key)
		_, _ = bucketOf(leafEntry{value: p, isBucket: true})
	})
}
