package oci

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/registry"
)

// Docker Hub: references name docker.io, the API lives at registry-1.docker.io.
const (
	dockerHubDomain = "docker.io"
	dockerHubAPI    = "registry-1.docker.io"
)

// Reference is a parsed artifact reference, normalised the way Docker reads one.
type Reference struct {
	// Registry is the domain as users write it: "docker.io", "ghcr.io", "localhost:5000".
	Registry string
	// Repository is the path inside the registry, e.g. "library/nginx".
	Repository string
	// Tag is "latest" when the reference names neither a tag nor a digest.
	Tag string
	// Digest, when set, identifies the manifest and wins over Tag.
	Digest digest.Digest
}

// ParseReference reads REF as Docker does: no registry means docker.io, a single-name
// Docker Hub repository gets "library/", no tag and no digest means ":latest", and
// "localhost" or a first component with "." or ":" is a registry host.
func ParseReference(s string) (Reference, error) {
	if strings.TrimSpace(s) == "" {
		return Reference{}, fmt.Errorf("empty reference: give one like registry.example.com/team/policies:v1")
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("invalid reference %q: %w (expected [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST])", s, err)
	}
	ref := Reference{Registry: reference.Domain(named), Repository: reference.Path(named)}
	if tagged, ok := named.(reference.Tagged); ok {
		ref.Tag = tagged.Tag()
	}
	if digested, ok := named.(reference.Digested); ok {
		ref.Digest = digested.Digest()
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}

// String returns the full reference: REGISTRY/REPOSITORY[:TAG][@DIGEST].
func (r Reference) String() string {
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// Name returns REGISTRY/REPOSITORY.
func (r Reference) Name() string { return r.Registry + "/" + r.Repository }

// Pinned returns REGISTRY/REPOSITORY[:TAG]@DIGEST: the reference users can pin.
func (r Reference) Pinned(d digest.Digest) Reference {
	r.Digest = d
	return r
}

// Target is what to ask the registry for: the digest when there is one, else the tag.
func (r Reference) Target() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// APIHost is the host:port the registry API is served on.
func (r Reference) APIHost() string {
	if r.Registry == dockerHubDomain {
		return dockerHubAPI
	}
	return r.Registry
}

// LoginHost is what to give `docker login` for this registry.
func (r Reference) LoginHost() string {
	if r.Registry == dockerHubDomain {
		return "" // `docker login` alone logs in to Docker Hub
	}
	return r.Registry
}

// orasReference is the reference in oras-go's terms, pointing at the API host.
func (r Reference) orasReference() registry.Reference {
	return registry.Reference{Registry: r.APIHost(), Repository: r.Repository, Reference: r.Target()}
}
