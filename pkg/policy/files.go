package policy

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ParseFiles parses and validates files and, recursively, the *.yaml and *.yml files in
// directories, in lexical order. Files named directly are read whatever their extension.
// The error is only for I/O problems, such as a path that does not exist; what is wrong inside
// a file is reported in its Documents.
func ParseFiles(paths []string, opts Options) ([]Document, error) {
	var docs []Document
	for _, p := range paths {
		files, err := policyFiles(p)
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

// policyFiles lists p itself when it is a file, or the policy files under it when it is a directory.
// Symbolic links to files are followed; links to directories are not, so a loop cannot trap the walk.
func policyFiles(p string) ([]string, error) {
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
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("cannot read policies: %w", err)
			}
			if target.IsDir() {
				return nil
			}
		}
		files = append(files, path)
		return nil
	})
	return files, err
}

// parseFile reads one file, refusing to read more than the size limit, and parses it.
func parseFile(name string, opts Options) ([]Document, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read policies: %w", err)
	}
	defer f.Close()
	limit := opts.maxFileSize()
	if info, err := f.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > limit {
		return []Document{fileTooBig(name, info.Size(), limit)}, nil
	}
	// Read one byte past the limit so that a file that grew, or a device, is caught too.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read policies: %s: %w", name, err)
	}
	if int64(len(data)) > limit {
		return []Document{fileTooBig(name, -1, limit)}, nil
	}
	return ParseBytes(name, data, opts), nil
}
