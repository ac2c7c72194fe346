package oci

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxTitleLength is NAME_MAX on Linux file systems.
const maxTitleLength = 255

// ValidateTitle accepts a layer title only if it is a plain file name that stays in the
// directory it is written to: not empty, ".", absolute, or containing a path separator,
// "..", NUL or other control characters, and valid UTF-8 of at most 255 bytes.
func ValidateTitle(title string) error {
	switch {
	case title == "":
		return fmt.Errorf("empty file name")
	case title == ".":
		return fmt.Errorf("file name %q is a directory", title)
	case len(title) > maxTitleLength:
		return fmt.Errorf("file name %.40q... is longer than %d bytes", title, maxTitleLength)
	case !utf8.ValidString(title):
		return fmt.Errorf("file name %q is not valid UTF-8", title)
	case strings.ContainsRune(title, 0):
		return fmt.Errorf("file name %q contains NUL", title)
	case filepath.IsAbs(title) || strings.HasPrefix(title, "/"):
		return fmt.Errorf("file name %q is an absolute path", title)
	case strings.ContainsAny(title, `/\`):
		return fmt.Errorf("file name %q contains a path separator", title)
	case strings.Contains(title, ".."):
		return fmt.Errorf("file name %q contains \"..\"", title)
	case strings.IndexFunc(title, unicode.IsControl) >= 0:
		return fmt.Errorf("file name %q contains a control character", title)
	case !filepath.IsLocal(title) || filepath.Base(title) != title:
		return fmt.Errorf("file name %q is not a plain file name", title)
	}
	return nil
}
