package policysource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/karmor/karmor/internal/readlimit"
	"github.com/karmor/karmor/pkg/policy"
)

// Defaults of DirOptions.
const (
	DefaultPollInterval = 250 * time.Millisecond
	DefaultMaxFiles     = 10000
	DefaultMaxTotalSize = 64 << 20
)

// DirOptions configures a directory source.
type DirOptions struct {
	// Path is the directory. Its *.yaml and *.yml files are read, recursively; names starting
	// with "." are skipped (editors' and atomic writers' temporary files, Kubernetes' ..data).
	// Symbolic links to files are followed (a mounted ConfigMap is links), links to
	// directories are not.
	Path string
	// PollInterval is how often the files' names, sizes, times and inodes are compared
	// (default 250 ms). A change is loaded once it has held still for one interval, so it is
	// in force within about two intervals.
	PollInterval time.Duration
	// MaxFileSize, MaxFiles and MaxTotalSize bound what is read (defaults: the policy
	// parser's 4 MiB, 10,000 files, 64 MiB).
	MaxFileSize  int64
	MaxFiles     int
	MaxTotalSize int64
}

// Dir is a watched directory of policy files.
type Dir struct {
	opts DirOptions

	// Follow's memory: the listing whose content is in force, the listing that last failed
	// to load, and the listing seen at the previous poll.
	inForce, failed, previous listing
	inForceDigest             string
}

// NewDir returns a directory source. The directory need not exist yet: until it does, the
// source reports the error and provides no policies.
func NewDir(opts DirOptions) (*Dir, error) {
	if opts.Path == "" {
		return nil, errors.New("policy directory: no path given")
	}
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("policy directory %s: %w", opts.Path, err)
	}
	opts.Path = abs
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = policy.DefaultMaxFileSize
	}
	if opts.MaxFiles <= 0 {
		opts.MaxFiles = DefaultMaxFiles
	}
	if opts.MaxTotalSize <= 0 {
		opts.MaxTotalSize = DefaultMaxTotalSize
	}
	return &Dir{opts: opts}, nil
}

// Name returns "dir:" and the absolute path.
func (d *Dir) Name() string { return "dir:" + d.opts.Path }

// Kind returns KindDir.
func (d *Dir) Kind() Kind { return KindDir }

// Location returns the absolute path.
func (d *Dir) Location() string { return d.opts.Path }

// Load reads and validates the directory as it is now.
func (d *Dir) Load(context.Context) (*Content, error) {
	l, err := d.list()
	if err != nil {
		return nil, err
	}
	d.previous = l
	content, err := d.load(l)
	if err != nil {
		d.failed = l
		return nil, err
	}
	d.inForce, d.inForceDigest = l, content.Digest
	return content, nil
}

// Follow polls the directory until ctx ends.
func (d *Dir) Follow(ctx context.Context, report func(Result)) {
	ticker := time.NewTicker(d.opts.PollInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if r, ok := d.poll(); ok {
			report(r)
		}
	}
}

// poll compares the directory with what it saw before and loads it when it changed and then
// held still for one interval; ok is false when there is nothing to report.
func (d *Dir) poll() (r Result, ok bool) {
	l, err := d.list()
	if err != nil {
		d.previous = nil
		return Result{Err: err, At: time.Now()}, true
	}
	stable := l.equal(d.previous)
	d.previous = l
	switch {
	case l.equal(d.inForce) && d.inForce != nil:
		return Result{At: time.Now()}, true
	case l.equal(d.failed) && d.failed != nil:
		return Result{}, false // the same broken files: already reported
	case !stable:
		return Result{}, false // still changing: wait for it to settle
	}
	content, err := d.load(l)
	if err != nil {
		d.failed = l
		return Result{Err: err, At: time.Now()}, true
	}
	if now, err := d.list(); err != nil || !now.equal(l) {
		d.previous = now
		return Result{}, false // changed while being read: read it again once it settles
	}
	d.failed = nil
	d.inForce = l
	if content.Digest == d.inForceDigest {
		return Result{At: time.Now()}, true // touched, not changed
	}
	d.inForceDigest = content.Digest
	return Result{Content: content, At: time.Now()}, true
}

// fileStamp is what tells that a file changed without reading it.
type fileStamp struct {
	path                 string
	size                 int64
	modNanos, ctimeNanos int64
	dev, ino             uint64
}

// listing is the directory's policy files, in lexical order of their paths.
type listing []fileStamp

func (l listing) equal(o listing) bool { return slices.Equal(l, o) }

// list walks the directory for policy files, following links to files but not to directories.
func (d *Dir) list() (listing, error) {
	info, err := os.Stat(d.opts.Path)
	if err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("policy directory: %s is not a directory", d.opts.Path)
	}
	l := listing{}
	err = filepath.WalkDir(d.opts.Path, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("policy directory: %w", err)
		}
		if path != d.opts.Path && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if e.IsDir() || !policy.IsPolicyFileName(e.Name()) {
			return nil
		}
		info, err := os.Stat(path) // follows a link
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile, or a dangling link: not a policy file
			}
			return fmt.Errorf("policy directory: %w", err)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		if len(l) == d.opts.MaxFiles {
			return fmt.Errorf("policy directory %s: more than %d policy files", d.opts.Path, d.opts.MaxFiles)
		}
		l = append(l, stamp(path, info))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func stamp(path string, info fs.FileInfo) fileStamp {
	s := fileStamp{path: path, size: info.Size(), modNanos: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctimeNanos = st.Ctim.Nano()
	}
	return s
}

// load reads and validates the files of l. Every file must be valid, or none is used.
func (d *Dir) load(l listing) (*Content, error) {
	var docs []policy.Document
	var total int64
	sum := sha256.New()
	for _, f := range l {
		data, err := readlimit.File(f.path, d.opts.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("policy directory: %w", err)
		}
		if total += int64(len(data)); total > d.opts.MaxTotalSize {
			return nil, fmt.Errorf("policy directory %s: policy files larger than %d bytes together", d.opts.Path, d.opts.MaxTotalSize)
		}
		fileSum := sha256.Sum256(data)
		fmt.Fprintf(sum, "%s\x00%x\n", f.path, fileSum)
		docs = append(docs, policy.ParseBytes(f.path, data, policy.Options{MaxFileSize: d.opts.MaxFileSize})...)
	}
	if err := policy.FirstError(docs); err != nil {
		return nil, fmt.Errorf("policy directory %s holds invalid policies, so none of its changes are in force: %w", d.opts.Path, err)
	}
	return &Content{
		Digest:    "sha256:" + hex.EncodeToString(sum.Sum(nil)),
		Location:  d.opts.Path,
		Documents: docs,
	}, nil
}
