package oci

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// InspectOptions configures Inspect.
type InspectOptions struct {
	Transport TransportOptions
	Fetch     FetchOptions
}

// Inspection describes an artifact without writing anything.
type Inspection struct {
	Reference    string            `json:"reference"`
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Created      *time.Time        `json:"created,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Policies     []PolicyFile      `json:"policies"`
	// OtherLayers counts layers that are not policies (ignored by pull).
	OtherLayers int `json:"otherLayers,omitempty"`
}

// PolicyFile is one policy layer and the documents its file holds.
type PolicyFile struct {
	File      string        `json:"file"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
	Documents []PolicyDoc   `json:"documents"`
}

// PolicyDoc is one YAML document of a policy file.
type PolicyDoc struct {
	Kind      string   `json:"kind"`
	Name      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"`
	Errors    []string `json:"errors,omitempty"`
}

// Inspect fetches the artifact ref names into memory, with the checks of
// FetchPolicySet, and describes each policy. Invalid policies are reported in
// PolicyDoc.Errors, not as an error.
func Inspect(ctx context.Context, ref Reference, opts InspectOptions) (*Inspection, error) {
	repo, err := NewRepository(ref, opts.Transport)
	if err != nil {
		return nil, err
	}
	set, err := FetchPolicySet(ctx, repo, ref, opts.Fetch)
	if err != nil {
		return nil, err
	}
	in := &Inspection{
		Reference:    set.Reference.String(),
		Digest:       set.Manifest.Digest,
		MediaType:    set.Manifest.MediaType,
		Size:         set.Manifest.Size,
		ArtifactType: set.ArtifactType,
		Annotations:  set.Annotations,
		Policies:     make([]PolicyFile, 0, len(set.Policies)),
		OtherLayers:  set.OtherLayers,
	}
	if !set.Created.IsZero() {
		in.Created = &set.Created
	}
	for _, p := range set.Policies {
		pf := PolicyFile{File: p.Name, Size: p.Layer.Size, Digest: p.Layer.Digest, Documents: []PolicyDoc{}}
		for _, d := range parseFile(File{Name: p.Name, Data: p.Data}) {
			doc := PolicyDoc{Kind: d.Kind, Name: d.Name, Namespace: d.Namespace}
			for _, issue := range d.Errors {
				doc.Errors = append(doc.Errors, issue.String())
			}
			pf.Documents = append(pf.Documents, doc)
		}
		in.Policies = append(in.Policies, pf)
	}
	return in, nil
}
