package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFiles puts files into dir as one change: they are written into a staging
// directory beside dir (on the same file system) and renamed into place only when all
// are on disk, so a failure leaves dir as it was. A file of the same name in dir is
// replaced (a symlink of that name is replaced itself, never followed); other files in
// dir are left alone. dir is created when missing. Names must pass ValidateTitle.
// It returns the paths written.
func WriteFiles(dir string, files []File) ([]string, error) {
	for _, f := range files {
		if err := ValidateTitle(f.Name); err != nil {
			return nil, fmt.Errorf("refusing to write %q: %w", f.Name, err)
		}
	}
	if len(files) == 0 {
		return nil, nil
	}
	target, exists, err := resolveDir(dir)
	if err != nil {
		return nil, err
	}
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", parent, err)
	}
	if exists {
		// Refuse before writing anything when a name is taken by a directory: a rename
		// cannot replace it, and failing halfway through would leave a partial update.
		for _, f := range files {
			if info, err := os.Lstat(filepath.Join(target, f.Name)); err == nil && info.IsDir() {
				return nil, fmt.Errorf("%s is a directory: remove it or pull into another directory", filepath.Join(dir, f.Name))
			}
		}
	}
	staging, err := os.MkdirTemp(parent, "."+filepath.Base(target)+".karmor-pull-")
	if err != nil {
		return nil, fmt.Errorf("create staging directory beside %s: %w", dir, err)
	}
	defer os.RemoveAll(staging)
	for _, f := range files {
		if err := writeNew(filepath.Join(staging, f.Name), f.Data); err != nil {
			return nil, err
		}
	}
	// On disk before any rename, so a crash never leaves a renamed but empty file.
	if err := syncStaged(staging, files); err != nil {
		return nil, err
	}
	written := make([]string, len(files))
	for i, f := range files {
		written[i] = filepath.Join(dir, f.Name)
	}
	if !exists {
		// A new directory appears whole, with one rename.
		if err := os.Chmod(staging, 0o755); err != nil {
			return nil, err
		}
		if err := syncDir(staging); err != nil {
			return nil, err
		}
		if err := os.Rename(staging, target); err != nil {
			return nil, fmt.Errorf("move %s into place: %w", dir, err)
		}
		return written, syncDir(parent)
	}
	if err := replaceFiles(staging, target, files); err != nil {
		return nil, err
	}
	return written, syncDir(target)
}

// resolveDir returns dir's real path (a symlinked dir is followed, so staging lands on
// its file system) and whether it exists.
func resolveDir(dir string) (string, bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false, err
	}
	info, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return abs, false, nil
	}
	if err != nil {
		return "", false, err
	}
	if !info.IsDir() {
		return "", false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false, err
	}
	return real, true, nil
}

// replaceFiles renames each staged file over its target. The previous targets are kept
// as hard links in staging first, so that a failed rename puts every one back.
func replaceFiles(staging, target string, files []File) error {
	backups := filepath.Join(staging, ".previous")
	if err := os.Mkdir(backups, 0o700); err != nil {
		return err
	}
	type undo struct {
		path    string
		existed bool
		backup  string // empty when there was nothing to keep, or it could not be linked
	}
	var done []undo
	rollback := func() {
		for i := len(done) - 1; i >= 0; i-- {
			switch {
			case done[i].backup != "":
				_ = os.Rename(done[i].backup, done[i].path)
			case !done[i].existed:
				_ = os.Remove(done[i].path)
			}
		}
	}
	for _, f := range files {
		dst := filepath.Join(target, f.Name)
		u := undo{path: dst}
		if _, err := os.Lstat(dst); err == nil {
			u.existed = true
			// os.Link does not follow a symlink: the link itself is kept.
			backup := filepath.Join(backups, f.Name)
			if err := os.Link(dst, backup); err == nil {
				u.backup = backup
			}
		}
		if err := os.Rename(filepath.Join(staging, f.Name), dst); err != nil {
			rollback()
			return fmt.Errorf("move %s into place (the directory was left as it was): %w", f.Name, err)
		}
		done = append(done, u)
	}
	return nil
}

// writeNew creates path, which must not exist, with data.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// syncEach flushes each staged file to disk.
func syncEach(staging string, files []File) error {
	for _, f := range files {
		file, err := os.Open(filepath.Join(staging, f.Name))
		if err != nil {
			return err
		}
		err = file.Sync()
		file.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", f.Name, err)
		}
	}
	return nil
}

// syncDir flushes a directory's entries, so renames survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
