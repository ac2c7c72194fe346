package oci

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// newManifest builds the manifest of a policy artifact: the empty config (without
// annotations, which ECR rejects), the layers in order, no artifactType and no subject
// (which GitLab and older ECR reject).
func newManifest(layers []ocispec.Descriptor, annotations map[string]string) ([]byte, ocispec.Descriptor, error) {
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      configDescriptor(),
		Layers:      layers,
		Annotations: annotations,
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	return data, ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(data),
		Size:      int64(len(data)),
	}, nil
}

func configDescriptor() ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: MediaTypeConfig, Digest: digest.FromBytes(ConfigData), Size: int64(len(ConfigData))}
}

// manifestDoc is the union of the fields of the manifest kinds a registry may return,
// so one decode tells them apart.
type manifestDoc struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Blobs         []ocispec.Descriptor `json:"blobs"`     // OCI artifact manifest (withdrawn draft)
	Manifests     []ocispec.Descriptor `json:"manifests"` // image index
	Annotations   map[string]string    `json:"annotations"`
}

// artifactManifest is a manifest understood as a policy artifact.
type artifactManifest struct {
	MediaType    string
	ArtifactType string
	Config       ocispec.Descriptor
	Annotations  map[string]string
	// Policies are the layers of MediaTypePolicyLayer, in manifest order.
	Policies []ocispec.Descriptor
	// Others counts the layers of other types, which pull leaves alone.
	Others int
}

// parseManifest decodes a manifest fetched as desc and keeps its policy layers. A
// manifest without any is an error that says what the reference holds instead.
func parseManifest(ref Reference, desc ocispec.Descriptor, data []byte) (*artifactManifest, error) {
	var doc manifestDoc
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: manifest is not valid JSON: %w", ref, err)
	}
	mediaType := desc.MediaType
	if mediaType == "" || mediaType == "application/json" || mediaType == "application/octet-stream" {
		mediaType = doc.MediaType
	}
	switch mediaType {
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		return nil, fmt.Errorf("%s is an image index (a list of %d manifests, e.g. a multi-platform image), %w", ref, len(doc.Manifests), ErrNotPolicyArtifact)
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest, "":
	case "application/vnd.oci.artifact.manifest.v1+json":
		doc.Layers = doc.Blobs
	default:
		return nil, fmt.Errorf("%s has manifest type %q, which is not an image manifest: %w", ref, mediaType, ErrNotPolicyArtifact)
	}
	if doc.MediaType == "" && len(doc.Manifests) > 0 && doc.Config == nil {
		return nil, fmt.Errorf("%s is an image index (a list of %d manifests), %w", ref, len(doc.Manifests), ErrNotPolicyArtifact)
	}
	m := &artifactManifest{MediaType: mediaType, ArtifactType: doc.ArtifactType, Annotations: doc.Annotations}
	if doc.Config != nil {
		m.Config = *doc.Config
	}
	for _, l := range doc.Layers {
		if l.MediaType == MediaTypePolicyLayer {
			m.Policies = append(m.Policies, l)
		} else {
			m.Others++
		}
	}
	if len(m.Policies) == 0 {
		return nil, describeNonPolicy(ref, m.Config, doc)
	}
	return m, nil
}

var imageConfigTypes = []string{ocispec.MediaTypeImageConfig, mediaTypeDockerConfig}

// describeNonPolicy says what a manifest without policy layers is.
func describeNonPolicy(ref Reference, config ocispec.Descriptor, doc manifestDoc) error {
	var layerTypes []string
	imageLayers := 0
	for _, l := range doc.Layers {
		if !slices.Contains(layerTypes, l.MediaType) {
			layerTypes = append(layerTypes, l.MediaType)
		}
		if strings.HasPrefix(l.MediaType, "application/vnd.oci.image.layer.") ||
			l.MediaType == mediaTypeDockerLayer || l.MediaType == mediaTypeDockerForeignLayer {
			imageLayers++
		}
	}
	if slices.Contains(imageConfigTypes, config.MediaType) || (imageLayers > 0 && imageLayers == len(doc.Layers)) {
		return fmt.Errorf("%s is a container image (config %s, %d filesystem layers), %w: it holds no layer of type %s",
			ref, config.MediaType, len(doc.Layers), ErrNotPolicyArtifact, MediaTypePolicyLayer)
	}
	if len(doc.Layers) == 0 {
		return fmt.Errorf("%s has no layers (config %s), %w", ref, config.MediaType, ErrNotPolicyArtifact)
	}
	kind := ""
	if doc.ArtifactType != "" {
		kind = " of type " + doc.ArtifactType
	}
	return fmt.Errorf("%s is an artifact%s (config %s) with layers of type %s, %w: it holds no layer of type %s",
		ref, kind, config.MediaType, strings.Join(layerTypes, ", "), ErrNotPolicyArtifact, MediaTypePolicyLayer)
}

// createdTime parses the manifest's creation annotation; zero when absent or malformed.
func createdTime(annotations map[string]string) time.Time {
	t, err := time.Parse(time.RFC3339, annotations[AnnotationCreated])
	if err != nil {
		return time.Time{}
	}
	return t
}
