package oci

import (
	"fmt"
	"strings"

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
// "localhost" or a first component with "." or ":" (or an upper-case letter) is a registry
// host. The grammar is checked with oras-go's validators rather than
// github.com/distribution/reference: that package compiles a dozen large regular expressions
// at start-up (about 4 ms of each karmor command's start), oras-go's are linked anyway.
func ParseReference(s string) (Reference, error) {
	if strings.TrimSpace(s) == "" {
		return Reference{}, fmt.Errorf("empty reference: give one like registry.example.com/team/policies:v1")
	}
	invalid := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("invalid reference %q: %s (expected [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST])", s, why)
	}
	var ref Reference
	name, dgst, pinned := strings.Cut(s, "@")
	if pinned {
		d, err := digest.Parse(dgst)
		if err != nil {
			return invalid(fmt.Sprintf("digest %q: %v", dgst, err))
		}
		ref.Digest = d
	}
	// The tag follows the last ':' after the last '/': a ':' before that is a registry's port.
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name, ref.Tag = name[:i], name[i+1:]
		if (registry.Reference{Reference: ref.Tag}).ValidateReferenceAsTag() != nil {
			return invalid(fmt.Sprintf("tag %q: want up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ref.Tag))
		}
	}
	if len(name) > maxNameLength {
		return invalid(fmt.Sprintf("the name is longer than %d characters", maxNameLength))
	}
	if isImageID(name) {
		return invalid("a 64-character hexadecimal name is an image ID, not a repository")
	}
	ref.Registry, ref.Repository = dockerHubDomain, name
	if first, rest, ok := strings.Cut(name, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first) {
		ref.Registry, ref.Repository = first, rest
	}
	if ref.Registry == legacyDockerHubDomain {
		ref.Registry = dockerHubDomain
	}
	if ref.Registry == dockerHubDomain && !strings.Contains(ref.Repository, "/") {
		ref.Repository = "library/" + ref.Repository
	}
	check := registry.Reference{Registry: ref.Registry, Repository: ref.Repository}
	if check.ValidateRegistry() != nil {
		return invalid(fmt.Sprintf("registry %q is not a host name or host:port", ref.Registry))
	}
	if check.ValidateRepository() != nil {
		return invalid(fmt.Sprintf("repository %q: want lower-case path components of letters, digits and separators ('.', '_', '__', '-')", ref.Repository))
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}

// maxNameLength is the longest REGISTRY/REPOSITORY Docker accepts.
const maxNameLength = 255

// legacyDockerHubDomain is Docker Hub's old name, read as docker.io.
const legacyDockerHubDomain = "index.docker.io"

// isImageID reports a name that is 64 lower-case hexadecimal characters: Docker reads it as
// an image ID and refuses it as a repository.
func isImageID(name string) bool {
	if len(name) != 64 {
		return false
	}
	for _, c := range name {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
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
