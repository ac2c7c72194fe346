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
	var docs []policy.Document
	var empty []string
	for _, f := range files {
		parsed := parseFile(f)
		if len(parsed) == 0 {
			empty = append(empty, f.Name)
		}
		docs = append(docs, parsed...)
	}
	err := policy.FirstError(docs)
	if len(empty) > 0 {
		err = errors.Join(err, fmt.Errorf("no policy in %s", strings.Join(empty, ", ")))
	}
	return err
}

// Validate parses the set's policies strictly, as ValidateFiles does.
func (s *PolicySet) Validate() error {
	files := make([]File, len(s.Policies))
	for i, p := range s.Policies {
		files[i] = File{Name: p.Name, Data: p.Data}
	}
	return ValidateFiles(files)
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
