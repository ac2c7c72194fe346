package podmanlabels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/karmor/karmor/internal/containerinfo"
)

// TestLabelsFromLibpodLayout: labels come back for containers with realistic configs (overflow
// pages) and small ones (inline buckets), among enough containers that the "ctr" bucket has
// branch pages; a container without labels is found with none; others are not found.
func TestLabelsFromLibpodLayout(t *testing.T) {
	path := dbPath(t)
	ctrs := manyCtrs(400)
	ctrs = append(ctrs, libpodCtr{id: ctrID(1000), specBytes: 11 << 10}) // no labels
	writeLibpodDB(t, path, ctrs)
	r, logs := newReader(t, path, nil)
	for _, i := range []int{0, 1, 2, 57, 200, 398, 399} {
		labels, ok := r.Labels(ctrID(i))
		if want := map[string]string{"app": fmt.Sprint("app-", i)}; !ok || !maps.Equal(labels, want) {
			t.Errorf("container %d: %v %v, want %v", i, labels, ok, want)
		}
	}
	if labels, ok := r.Labels(ctrID(1000)); !ok || labels != nil {
		t.Errorf("container without labels: %v %v, want nil true", labels, ok)
	}
	for _, id := range []string{ctrID(5000), "", strings.Repeat("a", maxIDBytes+1), ctrID(3)[:12]} {
		if labels, ok := r.Labels(id); ok || labels != nil {
			t.Errorf("%q: %v %v, want not found", id, labels, ok)
		}
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("warnings reading a good database:\n%s", logs)
	}
}

// TestFoundLabelsAreCached: a container's labels never change, so once read they are answered
// from the cache, even when the file has changed or gone since.
func TestFoundLabelsAreCached(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, manyCtrs(3))
	r, _ := newReader(t, path, always)
	if labels, ok := r.Labels(ctrID(0)); !ok || labels["app"] != "app-0" {
		t.Fatalf("first read: %v %v", labels, ok)
	}
	writeLibpodDB(t, path, []libpodCtr{{id: ctrID(0), labels: map[string]string{"app": "changed"}}})
	if labels, ok := r.Labels(ctrID(0)); !ok || labels["app"] != "app-0" {
		t.Errorf("after the file changed: %v %v, want the cached app-0", labels, ok)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if labels, ok := r.Labels(ctrID(0)); !ok || labels["app"] != "app-0" {
		t.Errorf("after the file went: %v %v, want the cached app-0", labels, ok)
	}
	// A container not read before is looked up in the file, which is gone.
	if _, ok := r.Labels(ctrID(1)); ok {
		t.Error("a container never read was found without a database")
	}
}

// TestAbsentIsBelievedForRetryAfter: a container not in the database is not looked up again
// until RetryAfter has passed.
func TestAbsentIsBelievedForRetryAfter(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, manyCtrs(1))
	late := libpodCtr{id: ctrID(7), labels: map[string]string{"app": "late"}}

	believing, _ := newReader(t, path, func(o *Options) { o.RetryAfter = time.Hour })
	rereading, _ := newReader(t, path, always)
	for _, r := range []*Reader{believing, rereading} {
		if _, ok := r.Labels(late.id); ok {
			t.Fatal("found before it was written")
		}
	}
	writeLibpodDB(t, path, append(manyCtrs(1), late))
	if _, ok := believing.Labels(late.id); ok {
		t.Error("RetryAfter 1h: the container's absence was not believed")
	}
	if labels, ok := rereading.Labels(late.id); !ok || labels["app"] != "late" {
		t.Errorf("RetryAfter 1ns: %v %v, want app=late", labels, ok)
	}
}

// TestCacheIsBounded: beyond CacheSize, the least recently used answer is forgotten and read
// again from the file.
func TestCacheIsBounded(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, manyCtrs(5))
	r, _ := newReader(t, path, func(o *Options) { o.CacheSize = 2 })
	for i := range 5 {
		if _, ok := r.Labels(ctrID(i)); !ok {
			t.Fatalf("container %d not found", i)
		}
		if n := r.cache.len(); n > 2 {
			t.Fatalf("cache holds %d entries, bound 2", n)
		}
	}
	r.Labels(ctrID(3)) // 3 becomes the most recently used, 4 the least
	changed := manyCtrs(5)
	for i := range changed {
		changed[i].labels = map[string]string{"app": "changed"}
	}
	writeLibpodDB(t, path, changed)
	if labels, _ := r.Labels(ctrID(3)); labels["app"] != "app-3" {
		t.Errorf("container 3 (cached): %v, want app-3", labels)
	}
	if labels, _ := r.Labels(ctrID(0)); labels["app"] != "changed" {
		t.Errorf("container 0 (evicted): %v, want the file's new labels", labels)
	}
	if labels, _ := r.Labels(ctrID(4)); labels["app"] != "changed" {
		t.Errorf("container 4 (evicted by 0): %v, want the file's new labels", labels)
	}
}

// TestLabelsAreBounded: labels beyond containerinfo's bounds are dropped whole, in key order.
func TestLabelsAreBounded(t *testing.T) {
	labels := map[string]string{
		"long-value": strings.Repeat("v", containerinfo.MaxLabelValueBytes+1),
		strings.Repeat("k", containerinfo.MaxKeyBytes+1): "long key",
		"": "empty key",
	}
	for i := range containerinfo.MaxLabels + 10 {
		labels[fmt.Sprintf("l%04d", i)] = "x"
	}
	path := dbPath(t)
	writeLibpodDB(t, path, []libpodCtr{{id: ctrID(0), labels: labels}})
	r, _ := newReader(t, path, nil)
	got, ok := r.Labels(ctrID(0))
	if !ok || len(got) != containerinfo.MaxLabels {
		t.Fatalf("%d labels (%v), want %d", len(got), ok, containerinfo.MaxLabels)
	}
	if _, kept := got[fmt.Sprintf("l%04d", containerinfo.MaxLabels-1)]; !kept {
		t.Error("the last label within the bound was dropped")
	}
	for _, k := range []string{"long-value", strings.Repeat("k", containerinfo.MaxKeyBytes+1), "", fmt.Sprintf("l%04d", containerinfo.MaxLabels)} {
		if _, kept := got[k]; kept {
			t.Errorf("label %.20q kept", k)
		}
	}
}

// TestUnusableRecords: a container whose record cannot be used is reported once and not read
// again; the database stays usable for the others.
func TestUnusableRecords(t *testing.T) {
	good := libpodCtr{id: ctrID(0), labels: map[string]string{"app": "web"}}
	cases := map[string]struct {
		ctr  libpodCtr
		edit func(*bolt.Tx) error
		want string
	}{
		"malformed JSON":  {ctr: libpodCtr{id: ctrID(1), config: []byte(`{"id":`)}, want: "malformed config record"},
		"labels not text": {ctr: libpodCtr{id: ctrID(1), config: []byte(`{"id":"` + ctrID(1) + `","labels":{"a":1}}`)}, want: "malformed config record"},
		"another's record": {ctr: libpodCtr{id: ctrID(1), config: configRecord(ctrID(2), map[string]string{"app": "web"}, 0)},
			want: "is container"},
		"oversized": {ctr: libpodCtr{id: ctrID(1), labels: map[string]string{"app": "web"}, specBytes: MaxConfigBytes}, want: "larger than"},
		"no config": {edit: func(tx *bolt.Tx) error {
			_, err := tx.Bucket(ctrBucket).CreateBucket([]byte(ctrID(1)))
			return err
		}, want: "has no config record"},
		"config is a bucket": {edit: func(tx *bolt.Tx) error {
			b, err := tx.Bucket(ctrBucket).CreateBucket([]byte(ctrID(1)))
			if err == nil {
				_, err = b.CreateBucket(configKey)
			}
			return err
		}, want: "is a bucket"},
		"container is a value": {edit: func(tx *bolt.Tx) error {
			return tx.Bucket(ctrBucket).Put([]byte(ctrID(1)), []byte("x"))
		}, want: "a value where a bucket belongs"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			ctrs := []libpodCtr{good}
			if tc.ctr.id != "" {
				ctrs = append(ctrs, tc.ctr)
			}
			var edits []func(*bolt.Tx) error
			if tc.edit != nil {
				edits = append(edits, tc.edit)
			}
			writeLibpodDB(t, path, ctrs, edits...)
			r, logs := newReader(t, path, always)
			for range 3 {
				if labels, ok := r.Labels(ctrID(1)); ok || labels != nil {
					t.Fatalf("%v %v, want not found", labels, ok)
				}
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Errorf("%d warnings, want 1 with %q:\n%s", n, tc.want, logs)
			}
			if labels, ok := r.Labels(good.id); !ok || labels["app"] != "web" {
				t.Errorf("the good container beside it: %v %v", labels, ok)
			}
		})
	}
}

// TestDamagedOrForeignDatabases: a file that is not libpod's BoltDB database gives no labels, a
// warning saying what the file is not, logged once however often it is read, and no crash or
// hang. A good database afterwards is read again and said so.
func TestDamagedOrForeignDatabases(t *testing.T) {
	good := manyCtrs(300) // branch pages in "ctr"
	cases := map[string]struct {
		make func(t *testing.T, path string)
		want string
	}{
		"garbage": {func(t *testing.T, path string) {
			writeFile(t, path, []byte(strings.Repeat("not a database\n", 5000)))
		}, "not a BoltDB database"},
		"empty file": {func(t *testing.T, path string) { writeFile(t, path, nil) }, "too small"},
		"SQLite (Podman 5)": {func(t *testing.T, path string) {
			writeFile(t, path, append([]byte("SQLite format 3\x00"), make([]byte, 8192)...))
		}, "Podman 5 defaults to SQLite"},
		"BoltDB without containers": {func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err }); err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "bucket of containers"},
		"both meta pages damaged": {func(t *testing.T, path string) {
			writeLibpodDB(t, path, good)
			patchFile(t, path, func(b []byte) {
				ps := pageSizeOf(t, b)
				b[pageHeaderSize+20] ^= 0xff
				b[ps+pageHeaderSize+20] ^= 0xff
			})
		}, "checksum mismatch"},
		"truncated": {func(t *testing.T, path string) {
			writeLibpodDB(t, path, good)
			st, _ := os.Stat(path)
			if err := os.Truncate(path, st.Size()/3); err != nil {
				t.Fatal(err)
			}
		}, "end of the file"},
		"page loop": {func(t *testing.T, path string) {
			writeLibpodDB(t, path, good)
			// Every branch page's children become the page itself: bbolt recurses until the
			// stack overflows and the process dies.
			patchFile(t, path, func(b []byte) { loopBranches(t, b) })
		}, "deeper than"},
		"directory": {func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
		"FIFO": {func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := dbPath(t)
			tc.make(t, path)
			r, logs := newReader(t, path, always)
			for i := range 4 {
				if labels, ok := r.Labels(ctrID(i)); ok || labels != nil {
					t.Fatalf("%v %v from a damaged database", labels, ok)
				}
			}
			if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("%d warnings, want 1 with %q:\n%s", n, tc.want, logs)
			}
			_ = os.RemoveAll(path)
			writeLibpodDB(t, path, good)
			if labels, ok := r.Labels(ctrID(0)); !ok || labels["app"] != "app-0" {
				t.Fatalf("after the database was repaired: %v %v", labels, ok)
			}
			if !strings.Contains(logs.String(), "readable again") {
				t.Errorf("the repair was not logged:\n%s", logs)
			}
		})
	}
}

// TestOneDamagedMetaPage: bbolt writes its two meta pages in turn, so a torn write damages one;
// the other still leads to the containers, whichever of the two it is.
func TestOneDamagedMetaPage(t *testing.T) {
	for _, meta := range []int{0, 1} {
		t.Run(fmt.Sprint("meta ", meta), func(t *testing.T) {
			path := dbPath(t)
			// A second transaction after the one that wrote the containers makes both meta pages
			// lead to them.
			writeLibpodDB(t, path, manyCtrs(50))
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("exec")).Put([]byte("k"), []byte("v")) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			patchFile(t, path, func(b []byte) {
				ps := pageSizeOf(t, b)
				clear(b[meta*ps : (meta+1)*ps]) // the whole page: its page size is unknown then
			})
			r, logs := newReader(t, path, nil)
			if labels, ok := r.Labels(ctrID(7)); !ok || labels["app"] != "app-7" {
				t.Errorf("%v %v, want app-7; log:\n%s", labels, ok, logs)
			}
		})
	}
}

// TestMissingDatabase: no database (Podman not installed, or rootless only) gives no labels and
// no warning; once it appears it is read.
func TestMissingDatabase(t *testing.T) {
	path := dbPath(t)
	r, logs := newReader(t, path, always)
	for i := range 3 {
		if _, ok := r.Labels(ctrID(i)); ok {
			t.Fatal("found without a database")
		}
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a missing database warned:\n%s", logs)
	}
	writeLibpodDB(t, path, manyCtrs(1))
	if labels, ok := r.Labels(ctrID(0)); !ok || labels["app"] != "app-0" {
		t.Errorf("after the database appeared: %v %v", labels, ok)
	}
}

// TestLockIsSharedAndShort: a lookup waits at most LockTimeout for a writer's exclusive lock,
// fails softly meanwhile, and reads once the writer is done; between lookups the Reader holds no
// lock, so a writer (Podman) never waits for it.
func TestLockIsSharedAndShort(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, manyCtrs(2))
	r, logs := newReader(t, path, func(o *Options) { o.LockTimeout = 20 * time.Millisecond; always(o) })

	if _, ok := r.Labels(ctrID(0)); !ok {
		t.Fatal("not found")
	}
	writer, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	// bbolt's read-write open takes this lock without blocking, as Podman's does.
	if err := syscall.Flock(int(writer.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatalf("the Reader still holds a lock after its lookup: %v", err)
	}
	if _, ok := r.Labels(ctrID(1)); ok {
		t.Fatal("read while a writer held the exclusive lock")
	}
	if !strings.Contains(logs.String(), "locked by another process") {
		t.Errorf("the lock timeout was not logged:\n%s", logs)
	}
	if err := syscall.Flock(int(writer.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	if labels, ok := r.Labels(ctrID(1)); !ok || labels["app"] != "app-1" {
		t.Errorf("after the writer let go: %v %v", labels, ok)
	}
}

// TestConcurrentLookups: many goroutines asking at once get the right answers (run with -race).
func TestConcurrentLookups(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, manyCtrs(64))
	r, _ := newReader(t, path, func(o *Options) { o.CacheSize = 16 })
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (i*7 + g) % 64
				if labels, ok := r.Labels(ctrID(n)); !ok || labels["app"] != fmt.Sprint("app-", n) {
					errs <- fmt.Errorf("container %d: %v %v", n, labels, ok)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	for name, opts := range map[string]Options{
		"no path":          {},
		"relative path":    {DBPath: "bolt_state.db"},
		"negative timeout": {DBPath: "/x/bolt_state.db", LockTimeout: -time.Second},
		"negative cache":   {DBPath: "/x/bolt_state.db", CacheSize: -1},
	} {
		if _, err := Open(opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	r, err := Open(Options{DBPath: "/x/../x/bolt_state.db"})
	if err != nil || r.path != "/x/bolt_state.db" || r.timeout != DefaultLockTimeout || r.retryAfter != DefaultRetryAfter || r.cache.max != DefaultCacheSize {
		t.Errorf("defaults: %+v, %v", r, err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// patchFile rewrites path with edit applied to its bytes.
func patchFile(t *testing.T, path string, edit func([]byte)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(b)
	writeFile(t, path, b)
}

// pageSizeOf reads the page size from a database's first meta page.
func pageSizeOf(t *testing.T, b []byte) int {
	t.Helper()
	m, err := readMeta(bytes.NewReader(b), 0)
	if err != nil {
		t.Fatal(err)
	}
	return int(m.pageSize)
}

// loopBranches points every child of every branch page at the page itself, and fails the test
// if there is none.
func loopBranches(t *testing.T, b []byte) {
	t.Helper()
	ps := pageSizeOf(t, b)
	n := 0
	for off := 2 * ps; off+ps <= len(b); off += ps {
		p := page(b[off : off+ps])
		if p.flags() != branchPageFlag || int(binary.NativeEndian.Uint64(p[0:])) != off/ps {
			continue
		}
		for i := range p.count() {
			binary.NativeEndian.PutUint64(p[pageHeaderSize+i*elementSize+8:], uint64(off/ps))
		}
		n++
	}
	if n == 0 {
		t.Fatal("the database has no branch page to loop")
	}
}
