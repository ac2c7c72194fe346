package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sequence numbers stay unique across restarts, so that a watcher resuming with a number from a
// previous run is told its events are gone instead of silently receiving other events under the
// same numbers. The agent reserves numbers in blocks: the state file holds a ceiling no number
// has passed; at start the agent continues above it, and it raises the ceiling (one small atomic
// write) each time the numbers reach it.

const (
	seqFileName  = "seq"
	seqBlock     = 1 << 16
	seqFileLimit = 64
)

type seqStore struct {
	path    string
	ceiling uint64
}

// openSeqStore reads the reservation in dir and returns the store and the last sequence number
// that must be treated as used (the next event gets base+1).
func openSeqStore(dir string) (*seqStore, uint64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("create state dir %s (set --state-dir to a writable directory): %w", dir, err)
	}
	s := &seqStore{path: filepath.Join(dir, seqFileName)}
	base, err := readCeiling(s.path)
	if err != nil {
		// A damaged file must not keep the agent down. Microseconds since the epoch exceed any
		// count of events a node has seen, so numbers stay above the lost ceiling.
		base = uint64(time.Now().UnixMicro())
		err = fmt.Errorf("sequence reservation %s unreadable, continuing above %d: %w", s.path, base, err)
	}
	if werr := s.reserve(base + seqBlock); werr != nil {
		return nil, 0, werr
	}
	return s, base, err
}

func readCeiling(path string) (uint64, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, seqFileLimit+1))
	if err != nil {
		return 0, err
	}
	if len(b) > seqFileLimit {
		return 0, fmt.Errorf("longer than %d bytes", seqFileLimit)
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// ensure raises the ceiling when seq reaches it.
func (s *seqStore) ensure(seq uint64) error {
	if seq < s.ceiling {
		return nil
	}
	return s.reserve(seq + seqBlock)
}

// reserve writes a new ceiling atomically (temp file, fsync, rename).
func (s *seqStore) reserve(ceiling uint64) error {
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, ".seq-*")
	if err != nil {
		return fmt.Errorf("reserve sequence numbers in %s (set --state-dir to a writable directory): %w", dir, err)
	}
	tmp := f.Name()
	_, err = f.WriteString(strconv.FormatUint(ceiling, 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("reserve sequence numbers in %s: %w", s.path, err)
	}
	s.ceiling = ceiling
	return nil
}
