package signing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The formats cosign writes; keep them byte-compatible, cosign reads what karmor writes.
const (
	// MediaTypeBundle is the artifact type of a bundle referrer and the media type of its layer.
	MediaTypeBundle = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// PredicateTypeCosignSign is the predicate of the statement cosign v3 signs for an image.
	PredicateTypeCosignSign = "https://sigstore.dev/cosign/sign/v1"
	// mediaTypeInToto is the DSSE payload type of an in-toto statement.
	mediaTypeInToto        = "application/vnd.in-toto+json"
	statementTypeV1        = "https://in-toto.io/Statement/v1"
	annotationBundleKind   = "dev.sigstore.bundle.content"
	annotationPredicate    = "dev.sigstore.bundle.predicateType"
	bundleKindDSSE         = "dsse-envelope"
	mediaTypeEmptyConfig   = "application/vnd.oci.empty.v1+json"
	mediaTypeImageConfig   = ocispec.MediaTypeImageConfig
	mediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// annotationSignature holds a legacy layer's base64 signature of its payload.
	annotationSignature = "dev.cosignproject.cosign/signature"
	// annotationCertificate holds a keyless legacy signature's certificate (not verified:
	// legacy keyless signatures are refused with a reason).
	annotationCertificate = "dev.sigstore.cosign/certificate"
	simpleSigningType     = "cosign container image signature"
)

// Bounds on signature material read from a registry (the manifests are a few hundred bytes,
// bundles a few KiB, payloads a few hundred bytes).
const (
	MaxSignatureManifestSize = 256 << 10
	MaxBundleSize            = 1 << 20
	MaxPayloadSize           = 64 << 10
	maxSignatureAnnotation   = 16 << 10
	// DefaultMaxSignatures caps how many signatures one verification tries, so a registry that
	// serves thousands cannot stall a pull or karmord's follow loop.
	DefaultMaxSignatures = 16
)

// LegacyTag is the tag of cosign v2's signature manifest for a manifest digest:
// sha256-<hex>.sig.
func LegacyTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

// statement is the in-toto statement cosign v3 signs: subject = the manifest digest, no name.
type statement struct {
	Type          string             `json:"_type"`
	Subject       []statementSubject `json:"subject"`
	PredicateType string             `json:"predicateType"`
	Predicate     map[string]any     `json:"predicate"`
}

type statementSubject struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

func newStatement(manifest digest.Digest) ([]byte, error) {
	return json.Marshal(statement{
		Type:          statementTypeV1,
		Subject:       []statementSubject{{Digest: map[string]string{manifest.Algorithm().String(): manifest.Encoded()}}},
		PredicateType: PredicateTypeCosignSign,
		Predicate:     map[string]any{},
	})
}

// simpleSigning is cosign v2's payload ("simple signing" of containers/image).
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

func newSimpleSigning(repository string, manifest digest.Digest) ([]byte, error) {
	var p simpleSigning
	p.Critical.Identity.DockerReference = repository
	p.Critical.Image.DockerManifestDigest = manifest.String()
	p.Critical.Type = simpleSigningType
	return json.Marshal(p)
}

// ParseSimpleSigning parses a legacy payload and returns the manifest digest it signs.
func ParseSimpleSigning(data []byte) (digest.Digest, error) {
	if len(data) > MaxPayloadSize {
		return "", fmt.Errorf("payload is %d bytes, over the limit of %d", len(data), MaxPayloadSize)
	}
	var p simpleSigning
	if err := json.Unmarshal(data, &p); err != nil {
		return "", fmt.Errorf("payload is not simple signing JSON: %w", err)
	}
	if p.Critical.Type != simpleSigningType {
		return "", fmt.Errorf("payload type is %q, not %q", p.Critical.Type, simpleSigningType)
	}
	d := digest.Digest(p.Critical.Image.DockerManifestDigest)
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("payload names no valid manifest digest: %w", err)
	}
	return d, nil
}

// signatureManifest is the part of a signature manifest (bundle referrer or legacy .sig) that
// verification reads.
type signatureManifest struct {
	MediaType    string               `json:"mediaType"`
	ArtifactType string               `json:"artifactType"`
	Config       ocispec.Descriptor   `json:"config"`
	Layers       []ocispec.Descriptor `json:"layers"`
	Subject      *ocispec.Descriptor  `json:"subject"`
	Annotations  map[string]string    `json:"annotations"`
}

// maxSignatureLayers bounds the layers of one signature manifest that are looked at.
const maxSignatureLayers = 64

// ParseSignatureManifest parses a signature manifest and checks what verification relies on:
// an image manifest, a bounded number of layers with valid digests and bounded sizes.
func ParseSignatureManifest(data []byte) (*signatureManifest, error) {
	if len(data) > MaxSignatureManifestSize {
		return nil, fmt.Errorf("signature manifest is %d bytes, over the limit of %d", len(data), MaxSignatureManifestSize)
	}
	var m signatureManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("signature manifest is not JSON: %w", err)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("signature manifest has media type %q, not an image manifest", m.MediaType)
	}
	if len(m.Layers) == 0 {
		return nil, errors.New("signature manifest has no layer")
	}
	if len(m.Layers) > maxSignatureLayers {
		return nil, fmt.Errorf("signature manifest has %d layers, over the limit of %d", len(m.Layers), maxSignatureLayers)
	}
	for i, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("signature layer %d has an invalid digest: %w", i, err)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("signature layer %d has a negative size", i)
		}
		for key, value := range l.Annotations {
			if len(value) > maxSignatureAnnotation {
				return nil, fmt.Errorf("signature layer %d: annotation %s is over %d bytes", i, key, maxSignatureAnnotation)
			}
		}
	}
	if m.Subject != nil {
		if err := m.Subject.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("signature manifest has an invalid subject digest: %w", err)
		}
	}
	return &m, nil
}

// decodeSignature decodes a legacy layer's base64 signature annotation.
func decodeSignature(value string) ([]byte, error) {
	if value == "" {
		return nil, errors.New("the layer has no signature annotation")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
	if err != nil {
		return nil, fmt.Errorf("signature annotation is not base64: %w", err)
	}
	return sig, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
