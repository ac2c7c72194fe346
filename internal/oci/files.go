package oci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/karmor/karmor/internal/readlimit"
	"github.com/karmor/karmor/pkg/policy"
)

// File is one policy file: its layer title (base name) and content.
type File struct {
	Name string
	// Path is where the file was read from, for messages; empty for in-memory files.
	Path string
	Data []byte
}

// LoadFiles reads the policy files to push. A path that is a file is taken whatever its
// name; a directory is walked recursively for *.yaml and *.yml files in lexical order,
// the files `karmor policy validate DIR` reads. Two different files with the same base name are an
// error, since the base name is the layer title; a file bigger than maxFileSize is an
// error, since pull would refuse it.
func LoadFiles(paths []string, maxFileSize int64) ([]File, error) {
	if len(paths) == 0 {
		return nil, errors.New("no policy file given: pass -f FILE or -f DIR")
	}
	if maxFileSize <= 0 {
		maxFileSize = DefaultMaxLayerSize
	}
	var files []File
	byName := map[string]string{} // title -> path that claimed it
	seen := map[string]bool{}     // cleaned absolute paths already read
	add := func(path string) error {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		if seen[abs] {
			return nil
		}
		seen[abs] = true
		name := filepath.Base(path)
		if err := ValidateTitle(name); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if other, dup := byName[name]; dup {
			return fmt.Errorf("two files are named %s (%s and %s): layer titles must be unique, rename one", name, other, path)
		}
		data, err := readlimit.File(path, maxFileSize)
		if errors.Is(err, readlimit.ErrTooLarge) {
			return fmt.Errorf("%w: pull refuses bigger layers unless given a higher --max-layer-size", err)
		}
		if err != nil {
			return err
		}
		byName[name] = path
		files = append(files, File{Name: name, Path: path, Data: data})
		return nil
	}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("policy file: %w", err)
		}
		if !info.IsDir() {
			if !info.Mode().IsRegular() {
				return nil, fmt.Errorf("%s is not a regular file", root)
			}
			if err := add(root); err != nil {
				return nil, err
			}
			continue
		}
		found, err := policy.FindFiles(root)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("directory %s holds no *.yaml or *.yml file", root)
		}
		for _, path := range found {
			if err := add(path); err != nil {
				return nil, err
			}
		}
	}
	return files, nil
}
