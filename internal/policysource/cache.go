package policysource

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/readlimit"
	"github.com/karmor/karmor/internal/signing"
)

// cacheVersion is the format of cache files; a file of another version is ignored.
const cacheVersion = 1

// cacheRecord is the last good content of one OCI source, as stored on disk.
type cacheRecord struct {
	Version   int         `json:"version"`
	Reference string      `json:"reference"` // as the source follows it (REF, not pinned)
	Digest    string      `json:"digest"`    // the manifest digest
	SavedAt   time.Time   `json:"savedAt"`
	Files     []cacheFile `json:"files"`
	// Signature is the signature that verified the content when it was put in force (none when
	// the source verifies nothing): at start the cache is put in force only if it still verifies
	// under the trust then configured.
	Signature *signing.Evidence `json:"signature,omitempty"`
}

type cacheFile struct {
	Name string `json:"name"`
	// Digest is the layer digest (sha256:hex of Data), checked when the cache is read.
	Digest string `json:"digest"`
	Data   []byte `json:"data"`
}

// cachePath names the cache file of a reference: one file per reference, named by a hash
// of it so that any reference makes a plain file name.
func cachePath(dir, ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(dir, "oci-"+hex.EncodeToString(sum[:12])+".json")
}

// readCache reads and verifies the cache file of ref; it returns nil, nil when there is none.
// The record's size is bounded by maxSize (all files, before JSON's base64 inflates them).
func readCache(dir, ref string, maxSize int64) (*cacheRecord, error) {
	path := cachePath(dir, ref)
	// base64 turns 3 bytes into 4; allow that plus room for names and digests.
	data, err := readlimit.File(path, maxSize/3*4+(1<<20))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy cache: %w", err)
	}
	var rec cacheRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("policy cache %s is corrupt (%v); it is ignored and will be rewritten after the next successful pull", path, err)
	}
	if rec.Version != cacheVersion || rec.Reference != ref {
		return nil, fmt.Errorf("policy cache %s holds version %d of %q, not version %d of %q; it is ignored", path, rec.Version, rec.Reference, cacheVersion, ref)
	}
	if err := digest.Digest(rec.Digest).Validate(); err != nil {
		return nil, fmt.Errorf("policy cache %s: bad manifest digest %q; it is ignored", path, rec.Digest)
	}
	seen := map[string]bool{}
	for _, f := range rec.Files {
		if err := oci.ValidateTitle(f.Name); err != nil || seen[f.Name] {
			return nil, fmt.Errorf("policy cache %s: bad or repeated file name %q; it is ignored", path, f.Name)
		}
		seen[f.Name] = true
		if sum := sha256.Sum256(f.Data); f.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
			return nil, fmt.Errorf("policy cache %s: %s does not match its digest (the file is damaged); it is ignored", path, f.Name)
		}
	}
	return &rec, nil
}

// writeCache stores rec atomically: a temporary file in dir, synced, renamed over the old one.
func writeCache(dir string, rec *cacheRecord) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".oci-*.tmp")
	if err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("policy cache: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("policy cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), cachePath(dir, rec.Reference)); err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("policy cache: %w", err)
	}
	return nil
}
