package podmanlabels

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"sort"
)

// This file reads one value from a BoltDB file (bbolt's on-disk format, version 2) without
// go.etcd.io/bbolt. bbolt trusts its file: a page that points back at one of its ancestors sends
// its cursor into unbounded recursion, a fatal stack overflow that no recover() catches (measured
// with bbolt v1.5.0), and a page number beyond the end of the file faults in its mmap. Here every
// read is a bounded ReadAt, every offset is checked against the page it is in, and a lookup
// follows at most maxDepth pages per tree, so a corrupt or foreign file is an error, never a
// crash or a hang.
//
// The format, as bbolt writes it (native byte order; every page starts with a 16-byte header):
//
//	page header:    id u64, flags u16, count u16, overflow u32 (pages that follow this one)
//	meta (page 0, 1, after the header): magic u32, version u32, pageSize u32, flags u32,
//	                root bucket (root pgid u64, sequence u64), freelist pgid u64, high-water pgid u64,
//	                txid u64, checksum u64 (FNV-1a 64 of the meta fields before it)
//	branch element: pos u32, ksize u32, pgid u64          (key at element + pos)
//	leaf element:   flags u32, pos u32, ksize u32, vsize u32 (key at element + pos, then value)
//
// A leaf element with flag 1 is a nested bucket: its value is the bucket's root pgid and
// sequence, and when the root is 0 an inline leaf page follows in the value itself.

const (
	boltMagic   = 0xED0CDAED
	boltVersion = 2

	pageHeaderSize  = 16
	elementSize     = 16 // branch and leaf elements are both 16 bytes
	metaSize        = 64 // the meta fields after the page header, checksum included
	metaSummedBytes = 56 // the fields the checksum covers

	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01

	// bbolt accepts page sizes from 1 KiB; it looks for the second meta page up to 16 MiB, but
	// 64 KiB is the largest page size of any system Podman runs on.
	minPageSize = 1 << 10
	maxPageSize = 64 << 10

	// maxDepth bounds the pages followed from a tree's root to a leaf. bbolt splits pages at
	// half full, so even with 1 KiB pages 32 levels hold more keys than any disk.
	maxDepth = 32
)

// errNotFound is a key absent from its bucket.
var errNotFound = errors.New("not found")

// corruptError is a file that is not a BoltDB database, or a damaged one.
type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }

func corrupt(format string, args ...any) error {
	return &corruptError{msg: fmt.Sprintf(format, args...)}
}

// boltFile reads pages of an open BoltDB file. Its caller holds the file's shared lock.
type boltFile struct {
	f        io.ReaderAt
	size     int64
	pageSize int64
	hwm      uint64 // the meta's high-water mark: every page id is below it
	root     uint64 // the root bucket's page
	maxPage  int64  // a page larger than this (with its overflow) is refused
}

// openBoltFile reads and checks the meta pages of f (size bytes long) and returns a reader of
// the newest valid one, as bbolt does: a torn meta write leaves the other one in force.
func openBoltFile(f io.ReaderAt, size, maxPage int64) (*boltFile, error) {
	if size < 2*minPageSize {
		return nil, corrupt("%d bytes is too small for a BoltDB database", size)
	}
	m0, err0 := readMeta(f, 0)
	pageSize := int64(0)
	if err0 == nil {
		pageSize = int64(m0.pageSize)
	} else {
		// Page 0 is damaged: find page 1 by trying every page size, as bbolt does.
		for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
			if m, err := readMeta(f, ps); err == nil && int64(m.pageSize) == ps {
				pageSize = ps
				break
			}
		}
		if pageSize == 0 {
			return nil, fmt.Errorf("no valid meta page: %w", err0)
		}
	}
	m1, err1 := readMeta(f, pageSize)
	var m meta
	switch {
	case err0 == nil && err1 == nil && int64(m1.pageSize) == pageSize:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case err0 == nil:
		m = m0
	case err1 == nil:
		m = m1
	default:
		return nil, err0
	}
	if m.hwm < 2 || m.root < 2 || m.root >= m.hwm {
		return nil, corrupt("meta page: root page %d outside the %d pages in use", m.root, m.hwm)
	}
	return &boltFile{f: f, size: size, pageSize: pageSize, hwm: m.hwm, root: m.root, maxPage: maxPage}, nil
}

type meta struct {
	pageSize  uint32
	root, hwm uint64
	txid      uint64
}

// readMeta reads and checks the meta page at offset off.
func readMeta(f io.ReaderAt, off int64) (meta, error) {
	var b [pageHeaderSize + metaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return meta{}, corrupt("meta page at offset %d: %v", off, err)
	}
	ne := binary.NativeEndian
	body := b[pageHeaderSize:]
	if ne.Uint32(body[0:]) != boltMagic {
		return meta{}, corrupt("not a BoltDB database (no BoltDB magic number at offset %d)", off)
	}
	if v := ne.Uint32(body[4:]); v != boltVersion {
		return meta{}, corrupt("BoltDB format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(body[:metaSummedBytes])
	if h.Sum64() != ne.Uint64(body[metaSummedBytes:]) {
		return meta{}, corrupt("meta page at offset %d: checksum mismatch", off)
	}
	m := meta{pageSize: ne.Uint32(body[8:]), root: ne.Uint64(body[16:]), hwm: ne.Uint64(body[40:]), txid: ne.Uint64(body[48:])}
	if m.pageSize < minPageSize || m.pageSize > maxPageSize || m.pageSize&(m.pageSize-1) != 0 {
		return meta{}, corrupt("meta page at offset %d: page size %d", off, m.pageSize)
	}
	return m, nil
}

// page is a branch or leaf page's bytes, header included.
type page []byte

func (p page) flags() uint16 { return binary.NativeEndian.Uint16(p[8:]) }
func (p page) count() int    { return int(binary.NativeEndian.Uint16(p[10:])) }

// readPage reads page id with its overflow pages.
func (b *boltFile) readPage(id uint64) (page, error) {
	if id < 2 || id >= b.hwm {
		return nil, corrupt("page %d is outside the %d pages in use", id, b.hwm)
	}
	if id >= uint64(b.size/b.pageSize) {
		return nil, corrupt("page %d lies beyond the end of the file", id)
	}
	off := int64(id) * b.pageSize
	var head [pageHeaderSize]byte
	if _, err := b.f.ReadAt(head[:], off); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	ne := binary.NativeEndian
	if got := ne.Uint64(head[0:]); got != id {
		return nil, corrupt("page %d calls itself page %d", id, got)
	}
	n := (int64(ne.Uint32(head[12:])) + 1) * b.pageSize
	if n > b.maxPage {
		return nil, corrupt("page %d spans %d bytes, more than the %d allowed", id, n, b.maxPage)
	}
	if off+n > b.size {
		return nil, corrupt("page %d runs past the end of the file", id)
	}
	p := make(page, n)
	if _, err := b.f.ReadAt(p, off); err != nil {
		return nil, corrupt("page %d: %v", id, err)
	}
	return p, nil
}

// bucket is a bucket's tree: its root page, or its inline leaf page.
type bucket struct {
	root   uint64
	inline page
}

func (b *boltFile) rootBucket() bucket { return bucket{root: b.root} }

// leafEntry is a key's value in a leaf page, and whether it is a nested bucket.
type leafEntry struct {
	value    []byte
	isBucket bool
}

// get returns key's entry in bkt, or errNotFound.
func (b *boltFile) get(bkt bucket, key []byte) (leafEntry, error) {
	p := bkt.inline
	for depth := 0; ; depth++ {
		if p == nil {
			if depth >= maxDepth {
				return leafEntry{}, corrupt("a tree deeper than %d pages (a page loop?) under page %d", maxDepth, bkt.root)
			}
			var err error
			if p, err = b.readPage(bkt.root); err != nil {
				return leafEntry{}, err
			}
		}
		switch p.flags() {
		case leafPageFlag:
			return findLeaf(p, key)
		case branchPageFlag:
			if bkt.inline != nil {
				return leafEntry{}, corrupt("an inline bucket holds a branch page")
			}
			child, err := findBranch(p, key)
			if err != nil {
				return leafEntry{}, err
			}
			bkt.root, p = child, nil
		default:
			return leafEntry{}, corrupt("page of type %#x where a branch or leaf page belongs", p.flags())
		}
	}
}

// elements checks that p's header and its count elements fit in p.
func elements(p page) (int, error) {
	n := p.count()
	if pageHeaderSize+n*elementSize > len(p) {
		return 0, corrupt("a page of %d bytes claims %d elements", len(p), n)
	}
	return n, nil
}

// slice returns the n bytes of p at start, or an error when they leave the page.
func slice(p page, start int64, n uint32) ([]byte, error) {
	end := start + int64(n)
	if end > int64(len(p)) {
		return nil, corrupt("an element's key or value runs past its page")
	}
	return p[start:end], nil
}

// findBranch returns the child page of branch page p whose keys cover key: the last element
// whose key is not above it.
func findBranch(p page, key []byte) (uint64, error) {
	n, err := elements(p)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, corrupt("an empty branch page")
	}
	ne := binary.NativeEndian
	var keyErr error
	keyAt := func(i int) []byte {
		e := pageHeaderSize + i*elementSize
		k, err := slice(p, int64(e)+int64(ne.Uint32(p[e:])), ne.Uint32(p[e+4:]))
		if err != nil {
			keyErr = err
		}
		return k
	}
	i := sort.Search(n, func(i int) bool { return bytes.Compare(keyAt(i), key) > 0 })
	if keyErr != nil {
		return 0, keyErr
	}
	if i > 0 {
		i--
	}
	return ne.Uint64(p[pageHeaderSize+i*elementSize+8:]), nil
}

// findLeaf returns key's entry in leaf page p.
func findLeaf(p page, key []byte) (leafEntry, error) {
	n, err := elements(p)
	if err != nil {
		return leafEntry{}, err
	}
	ne := binary.NativeEndian
	for i := range n {
		e := pageHeaderSize + i*elementSize
		keyAt := int64(e) + int64(ne.Uint32(p[e+4:]))
		ksize, vsize := ne.Uint32(p[e+8:]), ne.Uint32(p[e+12:])
		k, err := slice(p, keyAt, ksize)
		if err != nil {
			return leafEntry{}, err
		}
		if !bytes.Equal(k, key) {
			continue
		}
		v, err := slice(p, keyAt+int64(ksize), vsize)
		if err != nil {
			return leafEntry{}, err
		}
		return leafEntry{value: v, isBucket: ne.Uint32(p[e:])&bucketLeafFlag != 0}, nil
	}
	return leafEntry{}, errNotFound
}

// bucketOf returns the nested bucket that entry describes.
func bucketOf(entry leafEntry) (bucket, error) {
	if !entry.isBucket {
		return bucket{}, corrupt("a value where a bucket belongs")
	}
	v := entry.value
	if len(v) < 16 {
		return bucket{}, corrupt("a bucket header of %d bytes", len(v))
	}
	root := binary.NativeEndian.Uint64(v)
	if root != 0 {
		return bucket{root: root}, nil
	}
	inline := page(v[16:])
	if len(inline) < pageHeaderSize || inline.flags() != leafPageFlag {
		return bucket{}, corrupt("an inline bucket without its leaf page")
	}
	return bucket{inline: inline}, nil
}

// statRegular returns the size of f, which must be a regular file: a FIFO or a device named
// by mistake is refused before anything waits on it.
func statRegular(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, corrupt("%s is not a regular file (%s)", f.Name(), st.Mode().Type())
	}
	return st.Size(), nil
}
