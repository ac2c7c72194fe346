package registrytest

import (
	"encoding/json"

	"github.com/opencontainers/go-digest"
)

// Media types, spelled out here rather than imported so that these test peers check
// the client against the wire format itself.
const (
	MediaTypeImageManifest  = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeImageIndex     = "application/vnd.oci.image.index.v1+json"
	MediaTypeImageConfig    = "application/vnd.oci.image.config.v1+json"
	MediaTypeImageLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypePolicyConfig   = "application/vnd.cncf.kubearmor.config.v1+json"
	MediaTypePolicyLayer    = "application/vnd.cncf.kubearmor.policy.layer.v1.yaml"
	AnnotationTitle         = "org.opencontainers.image.title"
)

// Layer describes one layer of a hand-made manifest. The zero overrides give an honest
// policy layer; each override breaks one rule.
type Layer struct {
	Title string
	Data  []byte
	// NoTitle omits the title annotation.
	NoTitle bool
	// MediaType defaults to the policy layer type.
	MediaType string
	// Digest, when set, is written in the descriptor and the blob is served under it
	// (with Data as its bytes), so the digest is wrong unless it is Data's.
	Digest digest.Digest
	// Size, when set, is written in the descriptor instead of len(Data).
	Size int64
}

// Artifact builds a manifest (config {} of ConfigMediaType, default the policy config
// type) and the blobs to serve with it.
type Artifact struct {
	ConfigMediaType string
	ArtifactType    string
	Layers          []Layer
	Annotations     map[string]string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type manifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType,omitempty"`
	Config        descriptor        `json:"config"`
	Layers        []descriptor      `json:"layers"`
	Annotations   map[string]string `json:"annotations,omitempty"`
}

// Build returns the manifest bytes and the blobs, keyed by the digests the manifest names.
func (a Artifact) Build() ([]byte, map[digest.Digest][]byte) {
	config := []byte("{}")
	configType := a.ConfigMediaType
	if configType == "" {
		configType = MediaTypePolicyConfig
	}
	blobs := map[digest.Digest][]byte{digest.FromBytes(config): config}
	m := manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeImageManifest,
		ArtifactType:  a.ArtifactType,
		Config:        descriptor{MediaType: configType, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers:        []descriptor{},
		Annotations:   a.Annotations,
	}
	for _, l := range a.Layers {
		d := descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		if d.MediaType == "" {
			d.MediaType = MediaTypePolicyLayer
		}
		if d.Digest == "" {
			d.Digest = digest.FromBytes(l.Data)
		}
		if d.Size == 0 {
			d.Size = int64(len(l.Data))
		}
		if !l.NoTitle {
			d.Annotations = map[string]string{AnnotationTitle: l.Title}
		}
		blobs[d.Digest] = l.Data
		m.Layers = append(m.Layers, d)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err) // plain structs of strings always marshal
	}
	return b, blobs
}

// Index returns an OCI image index that lists the given manifest digests.
func Index(manifests ...digest.Digest) []byte {
	type entry struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	idx := struct {
		SchemaVersion int     `json:"schemaVersion"`
		MediaType     string  `json:"mediaType"`
		Manifests     []entry `json:"manifests"`
	}{SchemaVersion: 2, MediaType: MediaTypeImageIndex}
	for _, d := range manifests {
		idx.Manifests = append(idx.Manifests, entry{MediaType: MediaTypeImageManifest, Digest: d, Size: 100})
	}
	b, _ := json.Marshal(idx)
	return b
}
