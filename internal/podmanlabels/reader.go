package podmanlabels

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/karmor/karmor/internal/containerinfo"
)

// DefaultDBPath is rootful Podman's state database, <graphroot>/libpod/bolt_state.db with the
// default graph root (`podman info --format '{{.Store.GraphRoot}}'`).
const DefaultDBPath = "/var/lib/containers/storage/libpod/bolt_state.db"

// Defaults for Options' zero fields.
const (
	// DefaultLockTimeout bounds the wait for the database's lock. Podman holds it for about
	// 0.2-2 ms per operation (measured with Podman 4.3), so a longer wait means something else
	// keeps the file locked.
	DefaultLockTimeout = 250 * time.Millisecond
	// DefaultCacheSize is how many containers' answers are remembered.
	DefaultCacheSize = 4096
	// DefaultRetryAfter is how long a container absent from the database, or a database that
	// could not be read, is believed before the file is read again.
	DefaultRetryAfter = 5 * time.Second
)

// Bounds on what one lookup reads.
const (
	// MaxConfigBytes bounds a container's config record (about 12 KiB for a plain `podman run`,
	// most of it the OCI spec).
	MaxConfigBytes = 1 << 20
	// maxPageBytes bounds one database page with its overflow: a container's bucket keeps its
	// config and its state record on one page.
	maxPageBytes = 2 * MaxConfigBytes
	// maxIDBytes bounds the container IDs looked up; Podman's are 64 hex digits.
	maxIDBytes = 256
	// lockPoll is the pause between attempts to take the database's shared lock.
	lockPoll = 5 * time.Millisecond
)

// libpod's layout (Podman 4.x, verified with 4.3.1): the top-level bucket "ctr" holds one
// bucket per container, named by its full ID, whose "config" key is the container's config as
// JSON; its "labels" object holds `podman run --label` (and the image's labels).
var (
	ctrBucket = []byte("ctr")
	configKey = []byte("config")
)

// Options configure a Reader.
type Options struct {
	// DBPath is libpod's BoltDB state database (DefaultDBPath for rootful Podman).
	DBPath string
	// LockTimeout bounds each wait for the database's shared lock (DefaultLockTimeout).
	LockTimeout time.Duration
	// CacheSize is how many containers' answers are kept, least recently used first out
	// (DefaultCacheSize).
	CacheSize int
	// RetryAfter is how long "not in the database" and "the database cannot be read" stand
	// before the file is read again for the containers they concern (DefaultRetryAfter).
	RetryAfter time.Duration
	// Logger receives one line per problem, not one per lookup; slog.Default() when nil.
	Logger *slog.Logger
}

// Reader answers the labels of Podman containers from libpod's state database, read-only. It
// opens the file for each lookup it cannot answer from its cache, takes a shared lock for at most
// LockTimeout, reads one container's config record and closes the file at once: Podman opens the
// database read-write with no timeout for each operation, so any lock held here for long would
// stall every podman command. A Reader is safe for concurrent use.
type Reader struct {
	path       string
	timeout    time.Duration
	retryAfter time.Duration
	log        *slog.Logger

	// readMu lets one lookup at a time read the file, so that concurrent answers for many new
	// containers add up to one short lock at a time rather than overlapping ones.
	readMu sync.Mutex

	mu       sync.Mutex
	cache    *lru
	failedAt time.Time // the last failure to read the database; zero after a good read
	reported string    // the database problem last logged; "" once the database reads fine
}

// Open prepares a Reader of opts.DBPath. The file is not opened now but at each lookup, so
// karmord may start before Podman has created it.
func Open(opts Options) (*Reader, error) {
	if opts.DBPath == "" {
		return nil, errors.New("podman labels: no database path given")
	}
	if !filepath.IsAbs(opts.DBPath) {
		return nil, fmt.Errorf("podman database %q must be an absolute path", opts.DBPath)
	}
	if opts.LockTimeout < 0 || opts.RetryAfter < 0 || opts.CacheSize < 0 {
		return nil, fmt.Errorf("podman labels: lock timeout %v, retry interval %v and cache size %d must not be negative",
			opts.LockTimeout, opts.RetryAfter, opts.CacheSize)
	}
	r := &Reader{
		path:       filepath.Clean(opts.DBPath),
		timeout:    orDefault(opts.LockTimeout, DefaultLockTimeout),
		retryAfter: orDefault(opts.RetryAfter, DefaultRetryAfter),
		log:        opts.Logger,
		cache:      newLRU(orDefault(opts.CacheSize, DefaultCacheSize)),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Labels returns the labels of the Podman container with this full ID, bounded like the labels
// karmor takes from annotations. ok is false when the container is not in the database, the
// database cannot be read, or the container's record is unusable; the reason is logged once.
// A container in the database without labels gives (nil, true). The map is shared with the
// cache: callers must not modify it.
func (r *Reader) Labels(containerID string) (labels map[string]string, ok bool) {
	if containerID == "" || len(containerID) > maxIDBytes {
		return nil, false
	}
	if labels, ok, known := r.cached(containerID); known {
		return labels, ok
	}
	r.readMu.Lock()
	defer r.readMu.Unlock()
	// Another lookup may have read it, or failed to read the database, while this one waited.
	if labels, ok, known := r.cached(containerID); known {
		return labels, ok
	}
	labels, err := r.read(containerID)
	return r.record(containerID, labels, err)
}

type entryState uint8

const (
	found  entryState = iota // labels are the container's, for its whole life
	absent                   // not in the database at seenAt
	broken                   // in the database with a record that cannot be used; logged
)

type entry struct {
	labels map[string]string
	state  entryState
	seenAt time.Time
}

// cached answers from the cache or a recent failure; known is false when the file must be read.
func (r *Reader) cached(id string) (labels map[string]string, ok, known bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, hit := r.cache.get(id); hit {
		switch e.state {
		case found:
			return e.labels, true, true
		case broken:
			return nil, false, true
		case absent:
			if time.Since(e.seenAt) < r.retryAfter {
				return nil, false, true
			}
		}
	}
	if !r.failedAt.IsZero() && time.Since(r.failedAt) < r.retryAfter {
		return nil, false, true
	}
	return nil, false, false
}

// record caches the outcome of reading id and logs what is new.
func (r *Reader) record(id string, labels map[string]string, err error) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var recErr *recordError
	switch {
	case err == nil:
		r.readable()
		r.cache.put(id, entry{labels: labels, state: found})
		return labels, true
	case errors.Is(err, errNotFound):
		r.readable()
		r.cache.put(id, entry{state: absent, seenAt: time.Now()})
	case errors.As(err, &recErr):
		r.readable()
		r.cache.put(id, entry{state: broken})
		r.log.Warn("podman container's record in libpod's database is unusable; policies see it without its labels",
			"container", id, "db", r.path, "err", err)
	default:
		r.failedAt = time.Now()
		if msg := err.Error(); msg != r.reported {
			r.reported = msg
			if errors.Is(err, fs.ErrNotExist) {
				r.log.Debug("no podman database; Podman containers get no labels from it", "db", r.path)
			} else {
				r.log.Warn("cannot read podman's database; Podman containers are matched without their labels until it can be read",
					"db", r.path, "err", err, "retry_after", r.retryAfter)
			}
		}
	}
	return nil, false
}

// readable notes a good read of the database, after a logged problem if there was one.
func (r *Reader) readable() {
	if r.reported != "" {
		r.log.Info("podman database readable again", "db", r.path)
	}
	r.reported, r.failedAt = "", time.Time{}
}

// recordError is one container's record that cannot be used; the database itself is fine.
type recordError struct{ err error }

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }

func recordErrorf(format string, args ...any) error {
	return &recordError{err: fmt.Errorf(format, args...)}
}

// read returns the labels of container id from the database: errNotFound when it is not there,
// a *recordError when its record is unusable, any other error when the database is.
func (r *Reader) read(id string) (map[string]string, error) {
	config, err := r.readConfig(id)
	if err != nil {
		return nil, err
	}
	return decodeLabels(config, id)
}

// decodeLabels returns the bounded labels of container id's config record.
func decodeLabels(config []byte, id string) (map[string]string, error) {
	var rec struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(config, &rec); err != nil {
		return nil, recordErrorf("container %s: malformed config record: %v", id, err)
	}
	if rec.ID != id {
		return nil, recordErrorf("container %s: the config record under its ID is container %.80q's", id, rec.ID)
	}
	return boundLabels(rec.Labels), nil
}

// readConfig returns container id's config record, holding the database's lock only while it
// reads the file.
func (r *Reader) readConfig(id string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO left at the path must not wait for a writer.
	f, err := os.OpenFile(r.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close() // closing the file releases its lock
	size, err := statRegular(f)
	if err != nil {
		return nil, err
	}
	if err := lockShared(f, r.timeout); err != nil {
		return nil, fmt.Errorf("podman database %s: %w", r.path, err)
	}
	config, err := lookupConfig(f, size, id)
	var cerr *corruptError
	if errors.As(err, &cerr) {
		return nil, fmt.Errorf("%s is not a libpod BoltDB state database, or it is damaged: %w "+
			"(Podman 4 keeps its state in BoltDB; Podman 5 defaults to SQLite, db.sql, which karmor does not read)", r.path, err)
	}
	return config, err
}

// lookupConfig finds container id's config record in the BoltDB file f of size bytes.
func lookupConfig(f io.ReaderAt, size int64, id string) ([]byte, error) {
	db, err := openBoltFile(f, size, maxPageBytes)
	if err != nil {
		return nil, err
	}
	ctrs, err := db.get(db.rootBucket(), ctrBucket)
	if errors.Is(err, errNotFound) {
		return nil, corrupt("no %q bucket of containers", ctrBucket)
	}
	if err != nil {
		return nil, err
	}
	ctrsBkt, err := bucketOf(ctrs)
	if err != nil {
		return nil, err
	}
	ctr, err := db.get(ctrsBkt, []byte(id))
	if err != nil {
		return nil, err // errNotFound: not Podman's container, or removed since
	}
	// From here on, damage concerns this container's record only.
	ctrBkt, err := bucketOf(ctr)
	if err != nil {
		return nil, recordErrorf("container %s: %v", id, err)
	}
	config, err := db.get(ctrBkt, configKey)
	switch {
	case errors.Is(err, errNotFound):
		return nil, recordErrorf("container %s has no config record", id)
	case err != nil:
		return nil, recordErrorf("container %s: %v", id, err)
	case config.isBucket:
		return nil, recordErrorf("container %s: its config is a bucket, not a record", id)
	case len(config.value) > MaxConfigBytes:
		return nil, recordErrorf("container %s: config record of %d bytes is larger than the %d read", id, len(config.value), MaxConfigBytes)
	}
	return config.value, nil
}

// errLockTimeout is a database locked for longer than the lock timeout.
var errLockTimeout = errors.New("locked by another process for longer than the lock timeout " +
	"(Podman locks it for milliseconds per operation: is another program keeping it open?)")

// lockShared takes f's shared flock, as bbolt's read-only mode does, polling for up to timeout:
// a blocking flock could wait forever on a writer that never lets go.
func lockShared(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock: %w", err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return errLockTimeout
		}
		time.Sleep(min(lockPoll, left))
	}
}

// boundLabels keeps, in key order, the labels whose key and value fit containerinfo's label
// bounds, up to containerinfo.MaxLabels: what the hook keeps of labels from annotations.
func boundLabels(m map[string]string) map[string]string {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if k != "" && len(k) <= containerinfo.MaxKeyBytes && len(v) <= containerinfo.MaxLabelValueBytes {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.Strings(keys)
	keys = keys[:min(len(keys), containerinfo.MaxLabels)]
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}
