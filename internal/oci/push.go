package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/registry/remote"
)

// PushOptions configures Push.
type PushOptions struct {
	Transport TransportOptions
	// Annotations are added to the manifest. Source, Revision and Version set the
	// org.opencontainers.image.source, .revision and .version annotations.
	Annotations map[string]string
	Source      string
	Revision    string
	Version     string
	// Created is the org.opencontainers.image.created time; zero means now. A fixed
	// value makes pushes of the same files reproducible (same digest).
	Created time.Time
	// SkipValidate pushes files without parsing them as policies.
	SkipValidate bool
	// Concurrency is the number of blobs uploaded at once (default DefaultConcurrency).
	Concurrency int
}

// PushResult describes a pushed artifact.
type PushResult struct {
	// Reference is the reference pushed, pinned to the manifest digest.
	Reference Reference
	Manifest  ocispec.Descriptor
	Layers    []ocispec.Descriptor
	// Uploaded counts the blobs sent; blobs the registry already had are skipped.
	Uploaded int
}

// Push validates the policy files (unless opts.SkipValidate), then uploads them as one
// artifact, one layer per file in order, and tags it with ref's tag. Nothing is sent
// when a file is invalid.
func Push(ctx context.Context, ref Reference, files []File, opts PushOptions) (*PushResult, error) {
	if ref.Digest != "" {
		return nil, fmt.Errorf("cannot push to %s: give a tag, not a digest (the digest is computed from the content)", ref)
	}
	if len(files) == 0 {
		return nil, errors.New("no policy file to push")
	}
	seen := map[string]bool{}
	for _, f := range files {
		if err := ValidateTitle(f.Name); err != nil {
			return nil, err
		}
		if seen[f.Name] {
			return nil, fmt.Errorf("two files are named %s: layer titles must be unique, rename one", f.Name)
		}
		seen[f.Name] = true
	}
	if !opts.SkipValidate {
		if err := ValidateFiles(files); err != nil {
			return nil, fmt.Errorf("invalid policies, nothing was pushed (--skip-validate pushes them anyway):\n%w", err)
		}
	}

	blobs := map[digest.Digest][]byte{configDescriptor().Digest: ConfigData}
	layers := make([]ocispec.Descriptor, len(files))
	for i, f := range files {
		layers[i] = ocispec.Descriptor{
			MediaType:   MediaTypePolicyLayer,
			Digest:      digest.FromBytes(f.Data),
			Size:        int64(len(f.Data)),
			Annotations: map[string]string{AnnotationTitle: f.Name},
		}
		blobs[layers[i].Digest] = f.Data
	}
	manifest, manifestDesc, err := newManifest(layers, opts.manifestAnnotations())
	if err != nil {
		return nil, err
	}

	repo, err := NewRepository(ref, opts.Transport)
	if err != nil {
		return nil, err
	}
	uploaded, err := pushBlobs(ctx, repo, blobs, opts.Concurrency)
	if err != nil {
		return nil, registryError(err, ref, "push")
	}
	if err := repo.PushReference(ctx, manifestDesc, bytes.NewReader(manifest), ref.Tag); err != nil {
		return nil, registryError(fmt.Errorf("push manifest: %w", err), ref, "push")
	}
	return &PushResult{Reference: ref.Pinned(manifestDesc.Digest), Manifest: manifestDesc, Layers: layers, Uploaded: uploaded}, nil
}

func (o PushOptions) manifestAnnotations() map[string]string {
	annotations := maps.Clone(o.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	for key, value := range map[string]string{AnnotationSource: o.Source, AnnotationRevision: o.Revision, AnnotationVersion: o.Version} {
		if value != "" {
			annotations[key] = value
		}
	}
	created := o.Created
	if created.IsZero() {
		created = time.Now()
	}
	annotations[AnnotationCreated] = created.UTC().Format(time.RFC3339)
	return annotations
}

// pushBlobs uploads the blobs the registry does not have yet, a few at a time.
func pushBlobs(ctx context.Context, repo *remote.Repository, blobs map[digest.Digest][]byte, concurrency int) (int, error) {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	group, gctx := errgroup.WithContext(ctx)
	group.SetLimit(concurrency)
	uploaded := make(chan struct{}, len(blobs))
	for d, data := range blobs {
		desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(data))}
		group.Go(func() error {
			exists, err := repo.Blobs().Exists(gctx, desc)
			if err != nil {
				return fmt.Errorf("check blob %s: %w", d, err)
			}
			if exists {
				return nil
			}
			if err := repo.Blobs().Push(gctx, desc, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("upload blob %s: %w", d, err)
			}
			uploaded <- struct{}{}
			return nil
		})
	}
	err := group.Wait()
	return len(uploaded), err
}
