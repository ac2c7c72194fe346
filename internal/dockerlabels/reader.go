// Package dockerlabels gives karmord the name and labels of Docker containers, which dockerd keeps
// out of the OCI config and out of the state its runtime's hooks receive: `docker run --name web
// --label app=web` lives in dockerd's own record of the container,
// <data-root>/containers/<id>/config.v2.json (data-root is /var/lib/docker by default), as "Name"
// ("/web") and "Config.Labels". Verified with Debian's docker.io 20.10.
//
// dockerd replaces that file atomically (temporary file and rename), so reading it needs no lock.
// A Reader reads it read-only and bounded, once per container: names and labels do not change
// during a container's life (`docker rename` aside, which is rare and only renames). Answers are
// cached; a container without a record yet is asked again after a pause.
package dockerlabels

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/karmor/karmor/internal/containerinfo"
)

// DefaultRoot is dockerd's default --data-root.
const DefaultRoot = "/var/lib/docker"

// Defaults for Options' zero fields, and bounds.
const (
	// DefaultCacheSize is how many containers' answers are remembered.
	DefaultCacheSize = 4096
	// DefaultRetryAfter is how long "no record for this container" stands before the file is
	// read again: the hook reports a container before dockerd may have written its record.
	DefaultRetryAfter = 2 * time.Second
	// MaxConfigBytes bounds one config.v2.json (a few KiB for a plain `docker run`; the
	// environment and labels make it grow).
	MaxConfigBytes = 4 << 20
)

// Container is what dockerd's record says of a container.
type Container struct {
	// Name is the container's name without Docker's leading "/".
	Name string
	// Image is the image as the user named it (Config.Image).
	Image string
	// Labels are the container's labels, bounded like labels from annotations; nil for none.
	Labels map[string]string
}

// Options configure a Reader.
type Options struct {
	// Root is dockerd's data root (DefaultRoot).
	Root string
	// CacheSize bounds the answers kept (DefaultCacheSize); the oldest go first.
	CacheSize int
	// RetryAfter is how long a missing or unreadable record stands (DefaultRetryAfter).
	RetryAfter time.Duration
	// Logger receives one line per problem, not one per lookup; slog.Default() when nil.
	Logger *slog.Logger
}

// Reader answers Docker containers' names and labels from dockerd's records. It is safe for
// concurrent use.
type Reader struct {
	root       string
	retryAfter time.Duration
	log        *slog.Logger

	mu    sync.Mutex
	cache *cache
	// reported is the last problem logged for the data root, so that a missing or unreadable
	// root is said once, not at every lookup.
	reported string
}

// Open prepares a Reader of opts.Root. Nothing is read now, so karmord may start before dockerd.
func Open(opts Options) (*Reader, error) {
	if opts.Root == "" {
		opts.Root = DefaultRoot
	}
	if !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("docker data root %q must be an absolute path", opts.Root)
	}
	if opts.CacheSize < 0 || opts.RetryAfter < 0 {
		return nil, fmt.Errorf("docker labels: cache size %d and retry interval %v must not be negative", opts.CacheSize, opts.RetryAfter)
	}
	r := &Reader{root: filepath.Clean(opts.Root), retryAfter: opts.RetryAfter, log: opts.Logger}
	if r.retryAfter == 0 {
		r.retryAfter = DefaultRetryAfter
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	r.cache = newCache(size)
	if r.log == nil {
		r.log = slog.Default()
	}
	return r, nil
}

// IsContainerID reports whether id has the shape of a Docker container ID: 64 lower-case hex
// digits. Anything else is not looked up (and so never becomes a path).
func IsContainerID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Lookup returns dockerd's record of the container with this full ID. ok is false when id is not
// a Docker container ID, dockerd has no record of it, or the record is unusable (logged once).
func (r *Reader) Lookup(id string) (Container, bool) {
	if !IsContainerID(id) {
		return Container{}, false
	}
	r.mu.Lock()
	e, cached := r.cache.get(id)
	r.mu.Unlock()
	if cached && (e.found || time.Since(e.missingAt) < r.retryAfter) {
		return e.c, e.found
	}
	c, err := r.read(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.cache.put(id, entry{c: c, found: true})
		return c, true
	}
	r.cache.put(id, entry{missingAt: time.Now()})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Not a Docker container, or dockerd has not written its record yet.
		if _, rootErr := os.Stat(r.root); rootErr != nil && r.reported != rootErr.Error() {
			r.reported = rootErr.Error()
			r.log.Debug("no docker data root; Docker containers get no name or labels from it", "root", r.root)
		}
	default:
		r.log.Warn("docker container's record is unusable; policies see it without its name and labels", "container", id, "err", err)
	}
	return Container{}, false
}

// record is the part of config.v2.json karmord uses.
type record struct {
	ID     string `json:"ID"`
	Name   string `json:"Name"`
	Config *struct {
		Image  string            `json:"Image"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func (r *Reader) read(id string) (Container, error) {
	path := filepath.Join(r.root, "containers", id, "config.v2.json")
	data, err := readBounded(path, MaxConfigBytes)
	if err != nil {
		return Container{}, err
	}
	return decode(data, id)
}

// decode turns a config.v2.json into a Container, checking that it is container id's.
func decode(data []byte, id string) (Container, error) {
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Container{}, fmt.Errorf("container %s: malformed config.v2.json: %v", id, err)
	}
	if rec.ID != id {
		return Container{}, fmt.Errorf("container %s: its config.v2.json is container %.80q's", id, rec.ID)
	}
	c := Container{Name: strings.TrimPrefix(rec.Name, "/")}
	if len(c.Name) > containerinfo.MaxValueBytes {
		return Container{}, fmt.Errorf("container %s: name of %d bytes", id, len(c.Name))
	}
	if rec.Config != nil {
		if len(rec.Config.Image) <= containerinfo.MaxValueBytes {
			c.Image = rec.Config.Image
		}
		c.Labels = containerinfo.BoundLabels(rec.Config.Labels)
	}
	return c, nil
}

// readBounded reads a regular file of at most limit bytes, refusing anything else.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// entry is one cached answer: a record found, or the time it was found missing.
type entry struct {
	c         Container
	found     bool
	missingAt time.Time
}

// cache keeps at most max answers, forgetting the oldest put first: containers come and go, and
// it must not grow with every one ever seen. Its caller serializes access.
type cache struct {
	max   int
	items map[string]entry
	order []string // ids in the order they were first put; a ring once full
	next  int      // the slot of order the next new id replaces, once full
}

func newCache(max int) *cache { return &cache{max: max, items: make(map[string]entry)} }

func (c *cache) get(id string) (entry, bool) {
	e, ok := c.items[id]
	return e, ok
}

func (c *cache) put(id string, e entry) {
	if _, ok := c.items[id]; !ok {
		if len(c.order) < c.max {
			c.order = append(c.order, id)
		} else {
			delete(c.items, c.order[c.next])
			c.order[c.next] = id
			c.next = (c.next + 1) % c.max
		}
	}
	c.items[id] = e
}
