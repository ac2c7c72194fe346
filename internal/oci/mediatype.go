package oci

import ocispec "github.com/opencontainers/image-spec/specs-go/v1"

// The wire format. Keep it: other clients (kubearmor-client, ORAS) read and write it.
const (
	// MediaTypeConfig is the config blob's type; its content is always ConfigData.
	MediaTypeConfig = "application/vnd.cncf.kubearmor.config.v1+json"
	// MediaTypePolicyLayer is the type of each layer, one policy file per layer.
	MediaTypePolicyLayer = "application/vnd.cncf.kubearmor.policy.layer.v1.yaml"
	// AnnotationTitle names a layer's file (its base name).
	AnnotationTitle = ocispec.AnnotationTitle
	// AnnotationCreated, AnnotationSource, AnnotationRevision and AnnotationVersion
	// are the manifest annotations Push writes.
	AnnotationCreated  = ocispec.AnnotationCreated
	AnnotationSource   = ocispec.AnnotationSource
	AnnotationRevision = ocispec.AnnotationRevision
	AnnotationVersion  = ocispec.AnnotationVersion
)

// ConfigData is the config blob: an empty JSON object.
var ConfigData = []byte("{}")

// Default limits on what is read from a registry.
const (
	DefaultMaxManifestSize = 4 << 20
	DefaultMaxLayerSize    = 4 << 20
	DefaultMaxTotalSize    = 64 << 20
	// Policy layers are a few KiB each, so a transfer is one round trip per blob: measured
	// against distribution v3 on 2 cores, pulling 200 files took 528 ms at 8 at once and 488 ms
	// at 16 (oras, at 3: 595 ms). Beyond 16 the gain was within the noise.
	DefaultConcurrency = 16
)

// Media types that tell an image (or some other artifact) from a policy artifact.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)
