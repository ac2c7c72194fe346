package policy

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// FindFiles lists regular policy files only: a FIFO named like a policy would block a reader
// forever, and a link to a directory could loop.
func TestFindFilesRegularOnly(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.yaml")
	b := write("sub/b.yml")
	write("notes.txt")
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "loop.yaml")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	got, err := FindFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{a, link, b}; !slices.Equal(got, want) {
		t.Fatalf("FindFiles = %v, want %v", got, want)
	}
	if got, err := FindFiles(a); err != nil || !slices.Equal(got, []string{a}) {
		t.Fatalf("FindFiles(file) = %v, %v", got, err)
	}
	if _, err := FindFiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing path gave no error")
	}
}
