package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// Format is a signature format.
type Format string

// The signature formats.
const (
	FormatBundle Format = "bundle" // Sigstore bundle v0.3 as an OCI referrer (cosign v3)
	FormatLegacy Format = "legacy" // simple signing at the sha256-<hex>.sig tag (cosign v2)
	FormatNotary Format = "notation"
)

// SignOptions configures Sign.
type SignOptions struct {
	// Legacy writes cosign v2's .sig tag format instead of a bundle referrer.
	Legacy bool
	// Now is the signature's creation time annotation; zero means the current time.
	Now time.Time
}

// Signed describes a signature written.
type Signed struct {
	Format Format `json:"format"`
	// Manifest is the digest of the signature's manifest; Tag is set for the legacy format.
	Manifest digest.Digest `json:"manifest"`
	Tag      string        `json:"tag,omitempty"`
	Key      string        `json:"key"`
}

// Sign signs the artifact manifest describes, in repo (the artifact's repository), with key,
// and stores the signature beside it.
func Sign(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, key *PrivateKey, opts SignOptions) (*Signed, error) {
	if err := manifest.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("sign: invalid digest: %w", err)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.Legacy {
		return signLegacy(ctx, repo, manifest, key)
	}
	return signBundle(ctx, repo, manifest, key, opts.Now)
}

// signBundle writes a Sigstore bundle as a referrer of manifest, as `cosign sign` v3 does.
func signBundle(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, key *PrivateKey, now time.Time) (*Signed, error) {
	data, err := bundleJSON(manifest.Digest, key)
	if err != nil {
		return nil, err
	}
	desc, err := pushBundle(ctx, repo, manifest, data, now)
	if err != nil {
		return nil, err
	}
	return &Signed{Format: FormatBundle, Manifest: desc.Digest, Key: key.Fingerprint()}, nil
}

// pushBundle stores a bundle as a referrer of manifest: an image manifest of artifact type
// MediaTypeBundle, an empty config and the bundle as its one layer, as cosign v3 writes it.
func pushBundle(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, bundle []byte, now time.Time) (ocispec.Descriptor, error) {
	layer := content.NewDescriptorFromBytes(MediaTypeBundle, bundle)
	config := ocispec.DescriptorEmptyJSON
	if err := pushBlob(ctx, repo, config, config.Data); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushBlob(ctx, repo, layer, bundle); err != nil {
		return ocispec.Descriptor{}, err
	}
	subject := ocispec.Descriptor{MediaType: manifest.MediaType, Digest: manifest.Digest, Size: manifest.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: MediaTypeBundle,
		Config:       ocispec.Descriptor{MediaType: mediaTypeEmptyConfig, Digest: config.Digest, Size: config.Size},
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subject,
		Annotations: map[string]string{
			ocispec.AnnotationCreated: now.UTC().Format(time.RFC3339),
			annotationBundleKind:      bundleKindDSSE,
			annotationPredicate:       PredicateTypeCosignSign,
		},
	}
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	desc.ArtifactType = MediaTypeBundle
	// Pushing a manifest with a subject makes oras-go maintain the referrers index at the
	// sha256-<hex> tag when the registry has no referrers API.
	if err := repo.Push(ctx, desc, bytes.NewReader(data)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push signature: %w", err)
	}
	return desc, nil
}

// bundleJSON signs cosign's statement for manifest with key into a Sigstore bundle v0.3,
// encoded as cosign stores it: what `cosign sign --key` writes with the transparency log off
// (the bundle names the public key by its hint and holds the signed DSSE envelope). It is
// built here rather than by sigstore-go's sign package, which links Rekor, Fulcio, TUF and
// OIDC clients (about 80 packages) into every karmor command for this one structure;
// TestBundleMatchesSigstoreGo holds it to what that package writes.
func bundleJSON(manifest digest.Digest, key *PrivateKey) ([]byte, error) {
	payload, err := newStatement(manifest)
	if err != nil {
		return nil, err
	}
	sig, err := key.sign(dsse.PAE(mediaTypeInToto, payload))
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", key.Name, err)
	}
	b := &protobundle.Bundle{
		MediaType: MediaTypeBundle,
		VerificationMaterial: &protobundle.VerificationMaterial{
			Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: hint(key.signer.Public())}},
		},
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: &protodsse.Envelope{
			Payload:     payload,
			PayloadType: mediaTypeInToto,
			Signatures:  []*protodsse.Signature{{Sig: sig}},
		}},
	}
	data, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("sign: encode bundle: %w", err)
	}
	return data, nil
}

// signLegacy adds a simple signing layer to the manifest at sha256-<hex>.sig, as cosign v2
// does: signatures already there are kept.
func signLegacy(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, key *PrivateKey) (*Signed, error) {
	payload, err := newSimpleSigning(repo.Reference.Registry+"/"+repo.Reference.Repository, manifest.Digest)
	if err != nil {
		return nil, err
	}
	sig, err := key.sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign with %s: %w", key.Name, err)
	}
	layer := content.NewDescriptorFromBytes(mediaTypeSimpleSigning, payload)
	layer.Annotations = map[string]string{annotationSignature: base64.StdEncoding.EncodeToString(sig)}

	tag := LegacyTag(manifest.Digest)
	layers, err := existingLegacyLayers(ctx, repo, tag)
	if err != nil {
		return nil, err
	}
	layers = append(layers, layer)
	if err := pushBlob(ctx, repo, layer, payload); err != nil {
		return nil, err
	}
	config, err := legacyConfig(layers)
	if err != nil {
		return nil, err
	}
	configDesc := content.NewDescriptorFromBytes(mediaTypeImageConfig, config)
	if err := pushBlob(ctx, repo, configDesc, config); err != nil {
		return nil, err
	}
	data, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    layers,
	})
	if err != nil {
		return nil, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	if err := repo.PushReference(ctx, desc, bytes.NewReader(data), tag); err != nil {
		return nil, fmt.Errorf("push signature to tag %s: %w", tag, err)
	}
	return &Signed{Format: FormatLegacy, Manifest: desc.Digest, Tag: tag, Key: key.Fingerprint()}, nil
}

// existingLegacyLayers returns the signature layers already at tag, none when there is no tag.
// A manifest there that is not a signature manifest is an error: it is not overwritten.
func existingLegacyLayers(ctx context.Context, repo *remote.Repository, tag string) ([]ocispec.Descriptor, error) {
	_, data, err := fetchManifest(ctx, repo, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the signatures at %s: %w", tag, err)
	}
	m, err := ParseSignatureManifest(data)
	if err != nil {
		return nil, fmt.Errorf("the tag %s holds something that is not a signature manifest (%w); it is left alone", tag, err)
	}
	if len(m.Layers) >= maxSignatureLayers {
		return nil, fmt.Errorf("the tag %s already holds %d signatures, the most karmor keeps", tag, len(m.Layers))
	}
	return m.Layers, nil
}

// legacyConfig is the image config cosign writes for a signature manifest: its layers as the
// root file system (they are stored uncompressed, so diff IDs are the layer digests).
func legacyConfig(layers []ocispec.Descriptor) ([]byte, error) {
	diffIDs := make([]digest.Digest, len(layers))
	for i, l := range layers {
		diffIDs[i] = l.Digest
	}
	return json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	})
}

// pushBlob uploads a blob unless the registry has it.
func pushBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, data []byte) error {
	exists, err := repo.Blobs().Exists(ctx, desc)
	if err == nil && exists {
		return nil
	}
	if err := repo.Blobs().Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("upload blob %s: %w", desc.Digest, err)
	}
	return nil
}

// fetchManifest fetches a manifest by tag or digest, bounded by MaxSignatureManifestSize and
// verified against its digest.
func fetchManifest(ctx context.Context, repo *remote.Repository, reference string) (ocispec.Descriptor, []byte, error) {
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer rc.Close()
	if desc.Size < 0 || desc.Size > MaxSignatureManifestSize {
		return ocispec.Descriptor{}, nil, fmt.Errorf("signature manifest %s is %d bytes, over the limit of %d", reference, desc.Size, MaxSignatureManifestSize)
	}
	if err := desc.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("signature manifest %s: invalid digest: %w", reference, err)
	}
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("signature manifest %s: %w", reference, err)
	}
	return desc, data, nil
}

// fetchBlob fetches a blob of at most limit bytes and verifies it.
func fetchBlob(ctx context.Context, repo *remote.Repository, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, over the limit of %d", desc.Digest, desc.Size, limit)
	}
	rc, err := repo.Blobs().Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return content.ReadAll(rc, desc)
}
