package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFilesWalksDirectoriesInOrder(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "b.yaml"), []byte("b"))
	writeFile(t, filepath.Join(root, "a.YML"), []byte("a"))
	writeFile(t, filepath.Join(root, "sub", "c.yml"), []byte("c"))
	writeFile(t, filepath.Join(root, "README.md"), []byte("not a policy"))
	writeFile(t, filepath.Join(root, "..", "linked-target.yaml"), []byte("via link"))
	if err := os.Symlink(filepath.Join(root, "..", "linked-target.yaml"), filepath.Join(root, "d.yaml")); err != nil {
		t.Fatal(err)
	}
	extra := filepath.Join(t.TempDir(), "explicit.txt")
	writeFile(t, extra, []byte("named directly"))

	files, err := LoadFiles([]string{root, extra, filepath.Join(root, "b.yaml")}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name+"="+string(f.Data))
	}
	want := "a.YML=a b.yaml=b d.yaml=via link c.yml=c explicit.txt=named directly"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("files = %s\nwant    %s", got, want)
	}
}

func TestLoadFilesRefuses(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "one", "p.yaml"), []byte("1"))
	writeFile(t, filepath.Join(root, "two", "p.yaml"), []byte("2"))
	writeFile(t, filepath.Join(root, "big.yaml"), make([]byte, 11))
	if err := os.Mkdir(filepath.Join(root, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		paths []string
		want  string
	}{
		{nil, "no policy file given"},
		{[]string{root + "/one", root + "/two"}, "two files are named p.yaml"},
		{[]string{root + "/big.yaml"}, "larger than the limit"},
		{[]string{root + "/empty"}, "holds no *.yaml"},
		{[]string{root + "/missing.yaml"}, "no such file"},
	}
	for _, tt := range tests {
		_, err := LoadFiles(tt.paths, 10)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadFiles(%v) = %v, want an error with %q", tt.paths, err, tt.want)
		}
	}
}
