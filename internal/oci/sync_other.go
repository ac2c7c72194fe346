//go:build !linux

package oci

// syncStaged flushes each staged file to disk.
func syncStaged(staging string, files []File) error { return syncEach(staging, files) }
