// Package readlimit reads whole files that come from outside (policy files, configs, caches)
// without trusting their size: a file bigger than the limit, or a device that never ends, is an
// error, never a large allocation.
package readlimit

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is wrapped by File's error for a file over the limit.
var ErrTooLarge = errors.New("larger than the limit")

// File reads the whole file at path, refusing one larger than limit bytes. It reads one byte past
// the limit rather than trusting Stat, so a file that grows, or a device, is caught too.
func File(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is %w of %d bytes", path, ErrTooLarge, limit)
	}
	return data, nil
}
