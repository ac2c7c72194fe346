package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFilesCreatesMissingDirectoryWhole(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "a", "policies")
	written, err := WriteFiles(dir, []File{{Name: "one.yaml", Data: []byte("1")}, {Name: "two.yaml", Data: []byte("2")}})
	if err != nil {
		t.Fatal(err)
	}
	if len(written) != 2 || written[0] != filepath.Join(dir, "one.yaml") {
		t.Errorf("written = %v", written)
	}
	if readFile(t, filepath.Join(dir, "one.yaml")) != "1" || readFile(t, filepath.Join(dir, "two.yaml")) != "2" {
		t.Error("content not written")
	}
	entries, _ := os.ReadDir(filepath.Join(parent, "a"))
	if len(entries) != 1 || entries[0].Name() != "policies" {
		t.Errorf("staging left beside the directory: %v", entries)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o755 {
		t.Errorf("directory mode %v, want 0755", info.Mode().Perm())
	}
}

func TestWriteFilesReplacesOnlyItsOwnNames(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "p")
	writeFile(t, filepath.Join(dir, "keep.txt"), []byte("mine"))
	writeFile(t, filepath.Join(dir, "one.yaml"), []byte("old"))
	outside := filepath.Join(parent, "outside.yaml")
	writeFile(t, outside, []byte("outside"))
	// A planted symlink with a policy's name must be replaced, not written through.
	if err := os.Symlink(outside, filepath.Join(dir, "two.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(dir, []File{{Name: "one.yaml", Data: []byte("new1")}, {Name: "two.yaml", Data: []byte("new2")}}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "one.yaml")); got != "new1" {
		t.Errorf("one.yaml = %q", got)
	}
	if got := readFile(t, filepath.Join(dir, "keep.txt")); got != "mine" {
		t.Errorf("keep.txt = %q", got)
	}
	if got := readFile(t, outside); got != "outside" {
		t.Errorf("the symlink was followed: outside.yaml = %q", got)
	}
	info, err := os.Lstat(filepath.Join(dir, "two.yaml"))
	if err != nil || !info.Mode().IsRegular() {
		t.Errorf("two.yaml should now be a regular file: %v %v", info, err)
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 2 {
		t.Errorf("parent holds %d entries, want p and outside.yaml only", len(entries))
	}
}

func TestWriteFilesFollowsSymlinkedDirectory(t *testing.T) {
	parent := t.TempDir()
	real := filepath.Join(parent, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(parent, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteFiles(link, []File{{Name: "a.yaml", Data: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(real, "a.yaml")) != "a" {
		t.Error("file not written into the directory the link names")
	}
	if info, _ := os.Lstat(link); info.Mode()&os.ModeSymlink == 0 {
		t.Error("the user's directory symlink was replaced")
	}
}

func TestWriteFilesRefusesDirectoryInTheWayWithoutChanges(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "p")
	writeFile(t, filepath.Join(dir, "a.yaml"), []byte("old a"))
	writeFile(t, filepath.Join(dir, "b.yaml", "inner"), []byte("x"))
	before := treeSnapshot(t, parent)
	_, err := WriteFiles(dir, []File{{Name: "a.yaml", Data: []byte("new a")}, {Name: "b.yaml", Data: []byte("b")}})
	if err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("err = %v, want 'is a directory'", err)
	}
	if after := treeSnapshot(t, parent); after != before {
		t.Errorf("tree changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestWriteFilesRejectsUnsafeNames(t *testing.T) {
	parent := t.TempDir()
	before := treeSnapshot(t, parent)
	for _, name := range []string{"../x", "/etc/x", "a/b", "..", "", "x\x00"} {
		if _, err := WriteFiles(filepath.Join(parent, "p"), []File{{Name: name, Data: []byte("x")}}); err == nil {
			t.Errorf("WriteFiles accepted %q", name)
		}
	}
	if after := treeSnapshot(t, parent); after != before {
		t.Errorf("tree changed:\n%s", after)
	}
}

// TestReplaceFilesRollsBack makes the second rename fail (its staged file is missing)
// and checks the first replacement was undone.
func TestReplaceFilesRollsBack(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "p")
	writeFile(t, filepath.Join(dir, "a.yaml"), []byte("old a"))
	staging := filepath.Join(parent, "staging")
	writeFile(t, filepath.Join(staging, "a.yaml"), []byte("new a"))
	writeFile(t, filepath.Join(staging, "c.yaml"), []byte("new c"))
	before := treeSnapshot(t, dir)
	files := []File{{Name: "a.yaml"}, {Name: "c.yaml"}, {Name: "missing.yaml"}}
	if err := replaceFiles(staging, dir, files); err == nil {
		t.Fatal("replaceFiles succeeded with a missing staged file")
	}
	if after := treeSnapshot(t, dir); after != before {
		t.Errorf("not rolled back:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
