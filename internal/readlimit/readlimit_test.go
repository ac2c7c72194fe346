package readlimit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("12345"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := File(p, 5); err != nil || string(b) != "12345" {
		t.Fatalf("at the limit: %q, %v", b, err)
	}
	if b, err := File(p, 4); !errors.Is(err, ErrTooLarge) || b != nil {
		t.Fatalf("over the limit: %q, %v; want ErrTooLarge", b, err)
	}
	// A device that never ends is cut at the limit, not read into memory.
	if _, err := File("/dev/zero", 1<<10); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("/dev/zero: %v, want ErrTooLarge", err)
	}
	if _, err := File(filepath.Join(dir, "missing"), 5); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
