package podmanlabels

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestBoltFileAgreesWithBbolt: for databases written by the real bbolt, with several page sizes,
// keys of every size, values from empty to many overflow pages, and nested buckets both inline
// and on their own pages, this package's reader finds exactly what bbolt finds.
func TestBoltFileAgreesWithBbolt(t *testing.T) {
	for _, pageSize := range []int{1024, 4096, 16384} {
		t.Run(fmt.Sprint("page size ", pageSize), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(pageSize), 7))
			path := dbPath(t)
			db, err := bolt.Open(path, 0o600, &bolt.Options{PageSize: pageSize})
			if err != nil {
				t.Fatal(err)
			}
			type kv struct {
				path [][]byte
				val  []byte
			}
			want := map[string]kv{} // by the path quoted: keys may hold any byte
			put := func(val []byte, path ...[]byte) { want[fmt.Sprintf("%q", path)] = kv{path, val} }
			randBytes := func(n int) []byte {
				b := make([]byte, n)
				for i := range b {
					b[i] = byte(rng.IntN(256))
				}
				return b
			}
			// Several transactions, so that pages are freed and reused as in a living database.
			for tx := range 4 {
				err := db.Update(func(btx *bolt.Tx) error {
					for bkt := range 3 {
						name := fmt.Sprint("b", bkt)
						b, err := btx.CreateBucketIfNotExists([]byte(name))
						if err != nil {
							return err
						}
						for range 150 {
							key := randBytes(1 + rng.IntN(80))
							var val []byte
							switch rng.IntN(4) {
							case 0:
								val = randBytes(rng.IntN(3 * pageSize)) // overflow pages
							case 1: // empty value
							default:
								val = randBytes(rng.IntN(100))
							}
							if err := b.Put(key, val); err != nil {
								return err
							}
							put(val, []byte(name), key)
						}
						// A nested bucket: small ones stay inline in their parent's page.
						sub, err := b.CreateBucketIfNotExists([]byte(fmt.Sprint("sub", tx)))
						if err != nil {
							return err
						}
						for k := range 1 + rng.IntN(40) {
							v := randBytes(rng.IntN(200))
							if err := sub.Put([]byte(fmt.Sprint("k", k)), v); err != nil {
								return err
							}
							put(v, []byte(name), []byte(fmt.Sprint("sub", tx)), []byte(fmt.Sprint("k", k)))
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			size, err := statRegular(f)
			if err != nil {
				t.Fatal(err)
			}
			bf, err := openBoltFile(f, size, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			if bf.pageSize != int64(pageSize) {
				t.Fatalf("page size %d, want %d", bf.pageSize, pageSize)
			}
			for name, w := range want {
				got, err := lookupPath(bf, w.path)
				if err != nil || !bytes.Equal(got, w.val) {
					t.Fatalf("%s: %d bytes, %v; want %d bytes", name, len(got), err, len(w.val))
				}
			}
			for _, absent := range [][][]byte{{[]byte("b0"), {}}, {[]byte("b1"), {0xff, 0xff, 0xff, 0xff}}, {[]byte("b2"), []byte("sub9"), []byte("k0")}, {[]byte("b3"), []byte("x")}} {
				if _, err := lookupPath(bf, absent); !errors.Is(err, errNotFound) {
					t.Errorf("%q: %v, want not found", absent, err)
				}
			}
		})
	}
}

// lookupPath follows buckets to the last element of path, a value.
func lookupPath(bf *boltFile, path [][]byte) ([]byte, error) {
	bkt := bf.rootBucket()
	for i, key := range path {
		e, err := bf.get(bkt, key)
		if err != nil {
			return nil, err
		}
		if i == len(path)-1 {
			if e.isBucket {
				return nil, fmt.Errorf("%q is a bucket", key)
			}
			return e.value, nil
		}
		if bkt, err = bucketOf(e); err != nil {
			return nil, err
		}
	}
	return nil, errNotFound
}

// TestPagesAreBounded: a page larger than the reader's bound is refused rather than read.
func TestPagesAreBounded(t *testing.T) {
	path := dbPath(t)
	writeLibpodDB(t, path, []libpodCtr{{id: ctrID(0), labels: map[string]string{"app": "web"}, specBytes: 64 << 10}})
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := statRegular(f)
	if _, err := lookupConfig(f, size, ctrID(0)); err != nil {
		t.Fatalf("within bounds: %v", err)
	}
	bf, err := openBoltFile(f, size, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lookupPath(bf, [][]byte{ctrBucket, []byte(ctrID(0)), configKey})
	var cerr *corruptError
	if !errors.As(err, &cerr) || !bytes.Contains([]byte(err.Error()), []byte("more than the 16384 allowed")) {
		t.Fatalf("a 64 KiB page under a 16 KiB bound: %v", err)
	}
}
