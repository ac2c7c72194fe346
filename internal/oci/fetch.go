package oci

import (
	"bytes"
	"context"
	_ "crypto/sha256" // registers the digest algorithms go-digest verifies with
	_ "crypto/sha512"
	"errors"
	"fmt"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/pkg/policy"
)

// FetchOptions bounds what is read from a registry.
type FetchOptions struct {
	// MaxManifestSize, MaxLayerSize and MaxTotalSize (all policy layers together)
	// default to DefaultMaxManifestSize, DefaultMaxLayerSize and DefaultMaxTotalSize.
	MaxManifestSize int64
	MaxLayerSize    int64
	MaxTotalSize    int64
	// Concurrency is the number of layers fetched at once (default DefaultConcurrency).
	Concurrency int
	// Cached returns content the caller already holds for a policy layer, if any. It is
	// used, without fetching the layer, only when its size and digest match the layer's.
	Cached func(name string, layer ocispec.Descriptor) ([]byte, bool)
	// parse parses each policy file as soon as it is fetched, while other layers are
	// still on the way, for PolicySet.Validate.
	parse bool
}

func (o FetchOptions) withDefaults() FetchOptions {
	if o.MaxManifestSize <= 0 {
		o.MaxManifestSize = DefaultMaxManifestSize
	}
	if o.MaxLayerSize <= 0 {
		o.MaxLayerSize = DefaultMaxLayerSize
	}
	if o.MaxTotalSize <= 0 {
		o.MaxTotalSize = DefaultMaxTotalSize
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxTotalSize < o.MaxLayerSize {
		o.MaxTotalSize = o.MaxLayerSize // a raised layer limit is not undone by the total
	}
	return o
}

// PolicySet is the verified content of one policy artifact.
type PolicySet struct {
	// Reference is the reference fetched, pinned to the manifest's digest.
	Reference    Reference
	Manifest     ocispec.Descriptor
	ArtifactType string
	Annotations  map[string]string
	Created      time.Time
	// Policies are the policy layers in manifest order, each verified.
	Policies []Policy
	// OtherLayers counts layers of other media types, which are not fetched.
	OtherLayers int
}

// Policy is one verified policy file of an artifact.
type Policy struct {
	Name  string
	Layer ocispec.Descriptor
	Data  []byte
	// Cached is true when Data came from FetchOptions.Cached rather than the registry.
	Cached bool
	// documents are Data parsed, when parsed (see FetchOptions.parse).
	documents []policy.Document
	parsed    bool
}

// Files returns the set as file name -> content.
func (s *PolicySet) Files() map[string][]byte {
	files := make(map[string][]byte, len(s.Policies))
	for _, p := range s.Policies {
		files[p.Name] = p.Data
	}
	return files
}

// ResolveDigest asks the registry for the manifest descriptor ref names (one HEAD
// request), e.g. to notice that a tag moved without fetching anything.
func ResolveDigest(ctx context.Context, repo *remote.Repository, ref Reference) (ocispec.Descriptor, error) {
	desc, err := repo.Resolve(ctx, ref.Target())
	if err != nil {
		return ocispec.Descriptor{}, registryError(err, ref, "pull")
	}
	if err := desc.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: registry returned an invalid digest %q: %w", ref, desc.Digest, err)
	}
	return desc, nil
}

// FetchPolicySet fetches the manifest ref names and every policy layer into memory,
// with the checks registry content needs: sizes bounded before anything is read,
// every digest and size verified, titles that are plain, unique file names. Pass a
// reference pinned to a digest (Reference.Pinned) to fetch exactly what
// ResolveDigest returned. The policies are not validated: call PolicySet.Validate.
func FetchPolicySet(ctx context.Context, repo *remote.Repository, ref Reference, opts FetchOptions) (*PolicySet, error) {
	opts = opts.withDefaults()
	manifestDesc, data, err := fetchManifest(ctx, repo, ref, opts.MaxManifestSize)
	if err != nil {
		return nil, err
	}
	pinned := ref.Pinned(manifestDesc.Digest)
	m, err := parseManifest(pinned, manifestDesc, data)
	if err != nil {
		return nil, err
	}
	set := &PolicySet{
		Reference:    pinned,
		Manifest:     manifestDesc,
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
		Created:      createdTime(m.Annotations),
		Policies:     make([]Policy, len(m.Policies)),
		OtherLayers:  m.Others,
	}
	if err := checkLayers(pinned, m.Policies, opts); err != nil {
		return nil, err
	}

	group, gctx := errgroup.WithContext(ctx)
	group.SetLimit(opts.Concurrency)
	for i, layer := range m.Policies {
		name := layer.Annotations[AnnotationTitle]
		set.Policies[i] = Policy{Name: name, Layer: layer}
		p := &set.Policies[i]
		parse := func() {
			if opts.parse {
				p.documents, p.parsed = parseFile(File{Name: name, Data: p.Data}), true
			}
		}
		if opts.Cached != nil {
			if data, ok := opts.Cached(name, layer); ok && matches(data, layer) {
				p.Data, p.Cached = data, true
				if opts.parse {
					group.Go(func() error { parse(); return nil })
				}
				continue
			}
		}
		group.Go(func() error {
			data, err := fetchBlob(gctx, repo, layer)
			if errors.Is(err, errdef.ErrNotFound) {
				return fmt.Errorf("%s: the registry has no blob for layer %s (%s): the artifact is incomplete: %w", pinned, name, layer.Digest, err)
			}
			if err != nil {
				return fmt.Errorf("%s: layer %s (%s): %w", pinned, name, layer.Digest, registryError(err, ref, "pull"))
			}
			p.Data = data
			parse()
			return nil
		})
	}
	if err := group.Wait(); err != nil {
		return nil, err
	}
	return set, nil
}

// fetchManifest fetches and verifies the manifest, refusing one over limit unread.
func fetchManifest(ctx context.Context, repo *remote.Repository, ref Reference, limit int64) (ocispec.Descriptor, []byte, error) {
	desc, rc, err := repo.FetchReference(ctx, ref.Target())
	if err != nil {
		return ocispec.Descriptor{}, nil, registryError(err, ref, "pull")
	}
	defer rc.Close()
	if err := desc.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: registry returned an invalid manifest digest %q: %w", ref, desc.Digest, err)
	}
	if ref.Digest != "" && desc.Digest != ref.Digest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: registry returned manifest %s instead", ref, desc.Digest)
	}
	if desc.Size < 0 || desc.Size > limit {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: manifest is %d bytes, over the limit of %d", ref, desc.Size, limit)
	}
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: read manifest: %w", ref, err)
	}
	return desc, data, nil
}

// checkLayers refuses, before any layer is fetched, a manifest whose policy layers
// could not be written safely or are too big.
func checkLayers(ref Reference, layers []ocispec.Descriptor, opts FetchOptions) error {
	seen := make(map[string]bool, len(layers))
	var total int64
	for i, layer := range layers {
		title, ok := layer.Annotations[AnnotationTitle]
		if !ok {
			return fmt.Errorf("%s: policy layer %d (%s) has no %s annotation, so it has no file name", ref, i, layer.Digest, AnnotationTitle)
		}
		if err := ValidateTitle(title); err != nil {
			return fmt.Errorf("%s: policy layer %d: unsafe title: %w", ref, i, err)
		}
		if seen[title] {
			return fmt.Errorf("%s: two policy layers are titled %q", ref, title)
		}
		seen[title] = true
		if err := layer.Digest.Validate(); err != nil {
			return fmt.Errorf("%s: layer %s has an invalid digest %q: %w", ref, title, layer.Digest, err)
		}
		if layer.Size < 0 || layer.Size > opts.MaxLayerSize {
			return fmt.Errorf("%s: layer %s is %d bytes, over the limit of %d (raise it with --max-layer-size if you trust this artifact)",
				ref, title, layer.Size, opts.MaxLayerSize)
		}
		total += layer.Size
		if total > opts.MaxTotalSize {
			return fmt.Errorf("%s: policy layers add up to more than the limit of %d bytes (raise it with --max-total-size if you trust this artifact)", ref, opts.MaxTotalSize)
		}
	}
	return nil
}

// fetchBlob fetches one blob and verifies its size and digest.
func fetchBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor) ([]byte, error) {
	rc, err := repo.Blobs().Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := content.ReadAll(rc, desc)
	if errors.Is(err, content.ErrMismatchedDigest) {
		return nil, fmt.Errorf("content does not match its digest (corrupted or tampered): %w", err)
	}
	return data, err
}

// matches reports whether data is the content desc describes.
func matches(data []byte, desc ocispec.Descriptor) bool {
	if int64(len(data)) != desc.Size {
		return false
	}
	verifier := desc.Digest.Verifier()
	_, _ = bytes.NewReader(data).WriteTo(verifier)
	return verifier.Verified()
}
