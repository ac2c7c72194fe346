package podmanlabels

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/karmor/karmor/internal/testutil"
)

// libpodCtr is a container as libpod 4 stores it in bolt_state.db.
type libpodCtr struct {
	id     string
	labels map[string]string
	// specBytes pads the config's OCI spec: a plain `podman run` has about 11 KiB of it, so its
	// container's bucket spans overflow pages; a small one makes the bucket inline.
	specBytes int
	// config, when set, is stored as the config record instead of the generated one.
	config []byte
}

// ctrID is a Podman-shaped container ID (64 hex digits) for n.
func ctrID(n int) string {
	sum := sha256.Sum256([]byte(fmt.Sprint("ctr-", n)))
	return hex.EncodeToString(sum[:])
}

// configRecord is a config record shaped like libpod's (see doc.go for what was verified).
func configRecord(id string, labels map[string]string, specBytes int) []byte {
	rec := map[string]any{
		"spec": map[string]any{
			"ociVersion": "1.0.2-dev",
			"process":    map[string]any{"args": []string{"sleep", "60"}, "env": []string{strings.Repeat("P", specBytes)}},
		},
		"id":            id,
		"name":          "ctr-" + id[:12],
		"labels":        labels,
		"createdTime":   "2026-11-26T00:40:01.659937858Z",
		"stopSignal":    15,
		"rootfsImageID": strings.Repeat("b", 64),
	}
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err)
	}
	return b
}

// writeLibpodDB writes, with the real bbolt, a database laid out as libpod 4.3 lays out its
// state (the buckets seen in a real bolt_state.db), and moves it to path atomically, so that a
// Reader never sees it half-written. Extra edits run in the same transaction.
func writeLibpodDB(t testing.TB, path string, ctrs []libpodCtr, edits ...func(tx *bolt.Tx) error) {
	t.Helper()
	writePagedLibpodDB(t, path, 0, ctrs, edits...)
}

// writePagedLibpodDB is writeLibpodDB with pages of pageSize bytes (0: the OS page size, as Podman).
func writePagedLibpodDB(t testing.TB, path string, pageSize int, ctrs []libpodCtr, edits ...func(tx *bolt.Tx) error) {
	t.Helper()
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, PageSize: pageSize})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		top := map[string]*bolt.Bucket{}
		for _, name := range []string{"all-ctrs", "allPods", "allVolumes", "ctr", "exec", "exit-code", "exit-code-time-stamp",
			"id-registry", "name-registry", "ns-registry", "pod", "runtime-config", "vol", "volume-ctrs"} {
			b, err := tx.CreateBucket([]byte(name))
			if err != nil {
				return err
			}
			top[name] = b
		}
		if err := top["runtime-config"].Put([]byte("graph-root"), []byte("/var/lib/containers/storage")); err != nil {
			return err
		}
		for _, c := range ctrs {
			b, err := top["ctr"].CreateBucket([]byte(c.id))
			if err != nil {
				return err
			}
			config := c.config
			if config == nil {
				config = configRecord(c.id, c.labels, c.specBytes)
			}
			state := fmt.Sprintf(`{"state":3,"configPath":"/var/lib/containers/storage/overlay-containers/%s/userdata/config.json","mounted":true}`, c.id)
			if err := b.Put(configKey, config); err != nil {
				return err
			}
			if err := b.Put([]byte("state"), []byte(state)); err != nil {
				return err
			}
			if _, err := b.CreateBucket([]byte("dependencies")); err != nil {
				return err
			}
			for _, reg := range []string{"all-ctrs", "id-registry"} {
				if err := top[reg].Put([]byte(c.id), []byte("ctr-"+c.id[:12])); err != nil {
					return err
				}
			}
			if err := top["name-registry"].Put([]byte("ctr-"+c.id[:12]), []byte(c.id)); err != nil {
				return err
			}
		}
		for _, edit := range edits {
			if err := edit(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// manyCtrs returns n containers with labels app=app-<i>, the first ones with realistic configs
// (overflow pages), the others small (inline buckets); n in the hundreds gives the "ctr" bucket
// branch pages.
func manyCtrs(n int) []libpodCtr {
	ctrs := make([]libpodCtr, n)
	for i := range ctrs {
		spec := 11 << 10
		if i%2 == 1 {
			spec = 10
		}
		ctrs[i] = libpodCtr{id: ctrID(i), labels: map[string]string{"app": fmt.Sprint("app-", i)}, specBytes: spec}
	}
	return ctrs
}

// newReader returns a Reader of path logging into the returned buffer.
func newReader(t testing.TB, path string, edit func(*Options)) (*Reader, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	opts := Options{DBPath: path, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if edit != nil {
		edit(&opts)
	}
	r, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, logs
}

// dbPath is a database path in a new directory of the test.
func dbPath(t testing.TB) string {
	return filepath.Join(t.TempDir(), "bolt_state.db")
}

// always makes a Reader read the file again at every lookup it could not answer.
func always(o *Options) { o.RetryAfter = time.Nanosecond }
