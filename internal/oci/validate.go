package oci

import (
	"errors"
	"fmt"
	"strings"

	"github.com/karmor/karmor/pkg/policy"
)

// ValidateFiles parses every file strictly (unknown fields and duplicate keys are
// errors). It returns nil when every file holds at least one policy and every policy
// is valid, and otherwise an error listing each problem.
func ValidateFiles(files []File) error {
	parsed := make([][]policy.Document, len(files))
	names := make([]string, len(files))
	for i, f := range files {
		names[i], parsed[i] = f.Name, parseFile(f)
	}
	return validationError(names, parsed)
}

// validationError reports the problems of files already parsed (names[i] parsed into
// parsed[i]), as ValidateFiles does.
func validationError(names []string, parsed [][]policy.Document) error {
	var docs []policy.Document
	var empty []string
	for i, p := range parsed {
		if len(p) == 0 {
			empty = append(empty, names[i])
		}
		docs = append(docs, p...)
	}
	err := policy.FirstError(docs)
	if len(empty) > 0 {
		err = errors.Join(err, fmt.Errorf("no policy in %s", strings.Join(empty, ", ")))
	}
	return err
}

// Validate parses the set's policies strictly, as ValidateFiles does; files parsed while
// they were fetched (FetchOptions.parse) are not parsed again.
func (s *PolicySet) Validate() error {
	names := make([]string, len(s.Policies))
	parsed := make([][]policy.Document, len(s.Policies))
	for i, p := range s.Policies {
		names[i], parsed[i] = p.Name, p.documents
		if !p.parsed {
			parsed[i] = parseFile(File{Name: p.Name, Data: p.Data})
		}
	}
	return validationError(names, parsed)
}

// parseFile parses one file with the default (strict) options; the size limit is
// ours (--max-layer-size), already enforced, so the parser's own is lifted to match.
func parseFile(f File) []policy.Document {
	opts := policy.Options{}
	if int64(len(f.Data)) > policy.DefaultMaxFileSize {
		opts.MaxFileSize = int64(len(f.Data))
	}
	return policy.ParseBytes(f.Name, f.Data, opts)
}
