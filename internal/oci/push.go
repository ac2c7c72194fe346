package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
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

// Push validates the policy files (unless opts.SkipValidate) and uploads them as one
// artifact, one layer per file in order, tagged with ref's tag. The blobs are uploaded
// while the files are validated; the manifest, and so the tag, only once every file
// passed: when a file is invalid no manifest is sent and the tag is untouched.
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
	// Ask for push rights from the first request, so a token registry issues one token.
	ctx = auth.AppendRepositoryScope(ctx, repo.Reference, auth.ActionPull, auth.ActionPush)

	// Validation runs while the blobs go up: a blob no manifest names is invisible to
	// pullers and the registry's garbage collector removes it, so only the manifest, which
	// makes the files a tagged artifact, has to wait for the verdict. Invalid files stop
	// the uploads and are reported; the manifest is never sent.
	blobCtx, cancelBlobs := context.WithCancelCause(ctx)
	defer cancelBlobs(nil)
	validated := make(chan error, 1)
	if opts.SkipValidate {
		validated <- nil
	} else {
		go func() {
			err := ValidateFiles(files)
			if err != nil {
				cancelBlobs(errInvalid)
			}
			validated <- err
		}()
	}
	plan := planBlobs(blobCtx, repo, ref)
	uploaded, blobErr := pushBlobs(blobCtx, repo, blobs, plan, opts.Concurrency)
	if err := <-validated; err != nil {
		return nil, fmt.Errorf("invalid policies, no manifest was pushed (--skip-validate pushes them anyway):\n%w", err)
	}
	if blobErr != nil {
		return nil, registryError(blobErr, ref, "push")
	}
	err = repo.PushReference(ctx, manifestDesc, bytes.NewReader(manifest), ref.Tag)
	if err != nil && plan.trusted() && !isAuthError(err) {
		// The plan trusted what the registry showed; it may have dropped a blob since.
		slog.Debug("manifest push failed; retrying with every blob checked", "ref", ref, "err", err)
		more, blobErr := pushBlobs(ctx, repo, blobs, blobPlan{check: true}, opts.Concurrency)
		if blobErr != nil {
			return nil, registryError(blobErr, ref, "push")
		}
		uploaded += more
		err = repo.PushReference(ctx, manifestDesc, bytes.NewReader(manifest), ref.Tag)
	}
	if err != nil {
		return nil, registryError(fmt.Errorf("push manifest: %w", err), ref, "push")
	}
	return &PushResult{Reference: ref.Pinned(manifestDesc.Digest), Manifest: manifestDesc, Layers: layers, Uploaded: uploaded}, nil
}

// blobPlan says which blobs to send and how. Blobs are tiny (policy files), so requests
// are what a push costs: an upload takes two, an existence check one.
type blobPlan struct {
	// present are blobs a manifest in the repository names, so the registry holds them
	// (it refuses a manifest whose blobs it lacks): no request.
	present map[digest.Digest]bool
	// check asks before uploading each other blob; without it they are uploaded.
	check bool
}

// trusted reports whether the plan skips blobs on the registry's word, which a retry
// with every blob checked corrects should the registry have dropped one since.
func (p blobPlan) trusted() bool { return len(p.present) > 0 || !p.check }

// planBlobs chooses the cheapest safe way to push. When the tag exists, its manifest
// names the blobs already there and the rest are most likely new: pushing a changed
// policy set sends only what changed. When the tag is new but the repository has
// another, that tag's manifest names blobs already there (in CI, most of them: a new
// tag of the same policies) and the rest are checked, as ORAS checks every blob. When
// the repository has no tags, nothing is there to find.
func planBlobs(ctx context.Context, repo *remote.Repository, ref Reference) blobPlan {
	present, err := manifestBlobs(ctx, repo, ref)
	switch {
	case err == nil:
		return blobPlan{present: present}
	case !errors.Is(err, errdef.ErrNotFound):
		slog.Debug("cannot read the manifest at the tag; checking every blob", "ref", ref, "err", err)
		return blobPlan{check: true}
	}
	tag, hasTags := firstTag(ctx, repo)
	if !hasTags {
		return blobPlan{}
	}
	if tag == "" {
		return blobPlan{check: true}
	}
	other := ref
	other.Tag = tag
	present, err = manifestBlobs(ctx, repo, other)
	if err != nil {
		slog.Debug("cannot read the manifest of another tag; checking every blob", "ref", other, "err", err)
		present = nil
	}
	return blobPlan{present: present, check: true}
}

// manifestBlobs returns the config and layer digests of the image manifest ref names;
// errdef.ErrNotFound when there is none, another error when it is not an image manifest.
func manifestBlobs(ctx context.Context, repo *remote.Repository, ref Reference) (map[digest.Digest]bool, error) {
	desc, data, err := fetchManifest(ctx, repo, ref, DefaultMaxManifestSize)
	if err != nil {
		return nil, err
	}
	var doc manifestDoc
	if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != mediaTypeDockerManifest {
		return nil, fmt.Errorf("%s is a %s, not an image manifest", ref, desc.MediaType)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	present := map[digest.Digest]bool{}
	if doc.Config != nil {
		present[doc.Config.Digest] = true
	}
	for _, l := range doc.Layers {
		present[l.Digest] = true
	}
	return present, nil
}

// errInvalid cancels blob uploads once validation has failed.
var errInvalid = errors.New("invalid policies")

// errFirstPage stops a tag listing after its first page.
var errFirstPage = errors.New("first page read")

// firstTag returns one tag of the repository and whether it has any; hasTags is true
// with an empty tag when unsure.
func firstTag(ctx context.Context, repo *remote.Repository) (tag string, hasTags bool) {
	repo.TagListPageSize = 1 // one tag answers the question
	hasTags = true
	err := repo.Tags(ctx, "", func(tags []string) error {
		hasTags = len(tags) > 0
		if hasTags {
			tag = tags[0]
		}
		return errFirstPage
	})
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, errFirstPage):
		if (registry.Reference{Reference: tag}).ValidateReferenceAsTag() != nil {
			tag = "" // not a tag this client can ask for
		}
		return tag, hasTags
	case errors.Is(err, errdef.ErrNotFound), errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound:
		return "", false // the repository does not exist yet
	default:
		return "", true
	}
}

func isAuthError(err error) bool {
	var resp *errcode.ErrorResponse
	return errors.As(err, &resp) && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden)
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

// pushBlobs uploads the blobs plan does not know to be present, a few at a time, and
// returns how many it sent.
func pushBlobs(ctx context.Context, repo *remote.Repository, blobs map[digest.Digest][]byte, plan blobPlan, concurrency int) (int, error) {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	group, gctx := errgroup.WithContext(ctx)
	group.SetLimit(concurrency)
	var uploaded atomic.Int64
	for d, data := range blobs {
		if plan.present[d] {
			continue
		}
		desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: d, Size: int64(len(data))}
		group.Go(func() error {
			if plan.check {
				exists, err := repo.Blobs().Exists(gctx, desc)
				if err != nil {
					return fmt.Errorf("check blob %s: %w", d, err)
				}
				if exists {
					return nil
				}
			}
			if err := repo.Blobs().Push(gctx, desc, bytes.NewReader(data)); err != nil {
				return fmt.Errorf("upload blob %s: %w", d, err)
			}
			uploaded.Add(1)
			return nil
		})
	}
	err := group.Wait()
	return int(uploaded.Load()), err
}
