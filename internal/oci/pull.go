package oci

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/readlimit"
)

// PullOptions configures Pull.
type PullOptions struct {
	Transport TransportOptions
	Fetch     FetchOptions
	// SkipValidate writes the policies without parsing them.
	SkipValidate bool
	// Verify, when set, is called with the manifest the reference resolves to before any layer
	// is fetched; an error stops the pull, nothing written. Exactly that digest is then pulled.
	Verify func(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor) error
}

// PullResult describes what Pull did.
type PullResult struct {
	// Reference is the reference pulled, pinned to the manifest digest.
	Reference Reference
	Manifest  ocispec.Descriptor
	Files     []PulledFile
}

// PulledFile is one policy file of a pull.
type PulledFile struct {
	Name   string
	Path   string
	Digest digest.Digest
	Size   int64
	// Unchanged is true when dir already held this exact file: it was neither
	// downloaded nor written.
	Unchanged bool
}

// Pull fetches the policy artifact ref names, verifies and validates every file, and
// writes the files into dir (see WriteFiles): all of them or, on any failure, none.
// Files dir already holds with the layer's size and digest are not downloaded again.
func Pull(ctx context.Context, ref Reference, dir string, opts PullOptions) (*PullResult, error) {
	if dir == "" {
		dir = "."
	}
	repo, err := NewRepository(ref, opts.Transport)
	if err != nil {
		return nil, err
	}
	if opts.Verify != nil {
		desc, err := ResolveDigest(ctx, repo, ref)
		if err != nil {
			return nil, err
		}
		if err := opts.Verify(ctx, repo, desc); err != nil {
			return nil, fmt.Errorf("%s: nothing was written: %w", ref.Pinned(desc.Digest), err)
		}
		ref = ref.Pinned(desc.Digest)
	}
	fetch := opts.Fetch
	fetch.Cached = existingFile(dir, fetch.withDefaults().MaxLayerSize)
	fetch.parse = !opts.SkipValidate
	set, err := FetchPolicySet(ctx, repo, ref, fetch)
	if err != nil {
		return nil, err
	}
	if !opts.SkipValidate {
		if err := set.Validate(); err != nil {
			return nil, fmt.Errorf("%s holds invalid policies, nothing was written (--skip-validate writes them anyway):\n%w", set.Reference, err)
		}
	}
	result := &PullResult{Reference: set.Reference, Manifest: set.Manifest}
	var changed []File
	for _, p := range set.Policies {
		result.Files = append(result.Files, PulledFile{
			Name: p.Name, Path: filepath.Join(dir, p.Name),
			Digest: p.Layer.Digest, Size: p.Layer.Size, Unchanged: p.Cached,
		})
		if !p.Cached {
			changed = append(changed, File{Name: p.Name, Data: p.Data})
		}
	}
	if _, err := WriteFiles(dir, changed); err != nil {
		return nil, fmt.Errorf("write policies into %s: %w", dir, err)
	}
	return result, nil
}

// existingFile returns the content of dir/name when it is a regular file (not a
// symlink, which pull replaces rather than follows) of the layer's size. The caller
// compares digests.
func existingFile(dir string, limit int64) func(string, ocispec.Descriptor) ([]byte, bool) {
	return func(name string, layer ocispec.Descriptor) ([]byte, bool) {
		path := filepath.Join(dir, name)
		info, err := os.Lstat(path)
		if err != nil || !info.Mode().IsRegular() || info.Size() != layer.Size {
			return nil, false
		}
		data, err := readlimit.File(path, limit)
		if err != nil {
			return nil, false
		}
		return data, true
	}
}
