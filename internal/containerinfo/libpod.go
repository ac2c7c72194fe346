package containerinfo

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/karmor/karmor/pkg/agentapi"
)

// MaxStorageIndexBytes bounds containers/storage's container index read for Podman's names: about
// ten thousand containers' records.
const MaxStorageIndexBytes = 8 << 20

// ReadLibpodIdentity fills c.Name and c.Image (when unset) for a Podman container. Podman 4 puts
// neither in the OCI config or state: they live in containers/storage's index,
// <graphroot>/<driver>-containers/containers.json (or volatile-containers.json), beside the
// container's bundle <graphroot>/<driver>-containers/<id>/userdata. It does nothing for
// containers that are not Podman's (see DetectRuntime), and refuses any bundle not
// laid out that way, so that it never reads an arbitrary file.
func ReadLibpodIdentity(c *agentapi.Container) error {
	if RuntimeOf(c) != RuntimePodman || c.Name != "" && c.Image != "" {
		return nil
	}
	if !filepath.IsAbs(c.Bundle) || filepath.Clean(c.Bundle) != c.Bundle ||
		filepath.Base(c.Bundle) != "userdata" || filepath.Base(filepath.Dir(c.Bundle)) != c.ID {
		return fmt.Errorf("podman container %s: bundle %q is not <storage>/<id>/userdata; cannot find its name", c.ID, c.Bundle)
	}
	store := filepath.Dir(filepath.Dir(c.Bundle))
	var errs []error
	for _, index := range []string{"containers.json", "volatile-containers.json"} {
		rec, err := findStorageRecord(filepath.Join(store, index), c.ID)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		if rec == nil {
			continue
		}
		if c.Name == "" {
			c.Name = rec.name()
		}
		if c.Image == "" {
			c.Image = rec.meta.ImageName
		}
		return nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("podman container %s: %w", c.ID, errors.Join(errs...))
	}
	return fmt.Errorf("podman container %s: not found in %s's container index", c.ID, store)
}

// storageRecord is the part of a containers/storage container record karmor reads.
type storageRecord struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Metadata string   `json:"metadata"`
	meta     struct {
		Name      string `json:"name"`
		ImageName string `json:"image-name"`
	}
}

func (r *storageRecord) name() string {
	if len(r.Names) > 0 && r.Names[0] != "" {
		return r.Names[0]
	}
	return r.meta.Name
}

// findStorageRecord returns id's record from a containers/storage index, nil when absent.
func findStorageRecord(path, id string) (*storageRecord, error) {
	body, err := ReadRegularFile(path, MaxStorageIndexBytes)
	if err != nil {
		return nil, err
	}
	var recs []storageRecord
	if err := json.Unmarshal(body, &recs); err != nil {
		return nil, fmt.Errorf("%s: malformed container index: %w", path, err)
	}
	for i := range recs {
		if recs[i].ID != id {
			continue
		}
		r := &recs[i]
		if r.Metadata != "" && len(r.Metadata) <= MaxValueBytes {
			// Metadata is optional; a malformed one leaves the names list as the only source.
			_ = json.Unmarshal([]byte(r.Metadata), &r.meta)
		}
		if len(r.name()) > MaxValueBytes || len(r.meta.ImageName) > MaxValueBytes {
			return nil, fmt.Errorf("%s: oversized name or image for %s", path, id)
		}
		return r, nil
	}
	return nil, nil
}
