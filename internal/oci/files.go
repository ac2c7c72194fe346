package oci

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

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
		data, err := readFileLimited(path, maxFileSize)
		if errors.Is(err, errFileTooBig) {
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
		found, err := policyFilesIn(root)
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

// policyFilesIn lists the *.yaml and *.yml regular files under dir, following symlinks
// to files but not to directories (so a loop cannot trap the walk).
func policyFilesIn(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !policy.IsPolicyFileName(d.Name()) {
			return nil
		}
		info, err := os.Stat(path) // follows a symlink to see what it names
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			found = append(found, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", dir, err)
	}
	return found, nil
}

var errFileTooBig = errors.New("file is bigger than the limit")

// readFileLimited reads a whole file, refusing one bigger than limit bytes.
func readFileLimited(path string, limit int64) ([]byte, error) {
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
		return nil, fmt.Errorf("%s: %w of %d bytes", path, errFileTooBig, limit)
	}
	return data, nil
}
