package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/karmor/karmor/internal/readlimit"
)

// ParseFiles parses and validates files and, recursively, the *.yaml and *.yml files in
// directories, in lexical order. Files named directly are read whatever their extension.
// The error is only for I/O problems, such as a path that does not exist; what is wrong inside
// a file is reported in its Documents.
func ParseFiles(paths []string, opts Options) ([]Document, error) {
	var docs []Document
	for _, p := range paths {
		files, err := FindFiles(p)
		if err != nil {
			return docs, err
		}
		for _, f := range files {
			d, err := parseFile(f, opts)
			if err != nil {
				return docs, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}

// IsPolicyFileName reports whether a file found under a directory is read as a policy file.
func IsPolicyFileName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// FindFiles lists p itself when it is a file, or the regular *.yaml and *.yml files under it,
// recursively and in lexical order, when it is a directory: the files `karmor policy validate`,
// `karmor oci push` and karmord's directory source read. Symbolic links to files are followed;
// links to directories are not, so a loop cannot trap the walk.
func FindFiles(p string) ([]string, error) {
	info, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read policies: %w", err)
	}
	if !info.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cannot read policies: %w", err)
		}
		if d.IsDir() || !IsPolicyFileName(d.Name()) {
			return nil
		}
		target, err := os.Stat(path) // follows a symlink to see what it names
		if err != nil {
			return fmt.Errorf("cannot read policies: %w", err)
		}
		if target.Mode().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

// parseFile reads one file, refusing to read more than the size limit, and parses it.
func parseFile(name string, opts Options) ([]Document, error) {
	limit := opts.maxFileSize()
	if info, err := os.Stat(name); err == nil && info.Mode().IsRegular() && info.Size() > limit {
		return []Document{fileTooBig(name, info.Size(), limit)}, nil
	}
	data, err := readlimit.File(name, limit)
	if errors.Is(err, readlimit.ErrTooLarge) {
		return []Document{fileTooBig(name, -1, limit)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read policies: %w", err)
	}
	return ParseBytes(name, data, opts), nil
}
