package policysource

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// FuzzReadCache feeds arbitrary bytes to the cache reader: it must never panic, and whatever
// it accepts must be a record of the right reference whose every file has a plain name and
// matches its digest.
func FuzzReadCache(f *testing.F) {
	const ref = "registry.example/policies:prod"
	zero := "sha256:" + strings.Repeat("0", 64)
	f.Add([]byte(`{"version":1,"reference":"` + ref + `","digest":"` + zero + `","files":[]}`))
	f.Add([]byte(`{"version":1,"reference":"` + ref + `","digest":"` + zero + `","files":[{"name":"a.yaml","digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","data":"eA=="}]}`))
	f.Add([]byte(`{"version":1,"reference":"` + ref + `","digest":"` + zero + `","files":[{"name":"../a","digest":"","data":null}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte("\x00\xff{"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(cachePath(dir, ref), data, 0o600); err != nil {
			t.Fatal(err)
		}
		rec, err := readCache(dir, ref, 1<<20)
		if err != nil || rec == nil {
			return
		}
		if rec.Reference != ref || rec.Version != cacheVersion {
			t.Fatalf("accepted a record of %q version %d", rec.Reference, rec.Version)
		}
		seen := map[string]bool{}
		for _, file := range rec.Files {
			if file.Name == "" || strings.ContainsAny(file.Name, "/\x00") || file.Name == ".." || seen[file.Name] {
				t.Fatalf("accepted file name %q", file.Name)
			}
			seen[file.Name] = true
			sum := sha256.Sum256(file.Data)
			if file.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
				t.Fatalf("accepted %s with a wrong digest", file.Name)
			}
		}
	})
}
