package policysource

import (
	"context"
	"time"

	"github.com/karmor/karmor/pkg/policy"
)

// Kind is the kind of a source.
type Kind string

// The kinds of sources.
const (
	KindDir Kind = "dir"
	KindOCI Kind = "oci"
)

// Content is one version of what a source provides. It is immutable once handed over.
type Content struct {
	// Digest identifies the version: the manifest digest of an OCI artifact, or a digest of a
	// directory's file names and contents.
	Digest string
	// Location is where the content came from: the directory, or REF@DIGEST.
	Location string
	// Documents are the policy documents, every one valid.
	Documents []policy.Document
	// FromCache is true for content read from the on-disk cache and not yet confirmed by the
	// registry.
	FromCache bool
	// SignedBy is who signed the content, when the source verifies signatures.
	SignedBy string
}

// Result is the outcome of one check of a source.
type Result struct {
	// Content is new content to put in force, or nil when nothing changed or the check failed.
	Content *Content
	// Err says why the check failed; the source's previous content stays in force.
	Err error
	// At is when the check finished.
	At time.Time
}

// Source is a place policies come from.
type Source interface {
	// Name identifies the source among a Manager's sources, e.g. "dir:/etc/karmor/policies".
	Name() string
	Kind() Kind
	// Location is the directory or the reference the source follows.
	Location() string
	// Load returns what the source can provide at once without the network: a directory's
	// policies, or an OCI source's cache (nil, nil when there is none yet). The Manager calls
	// it once, before Follow.
	Load(ctx context.Context) (*Content, error)
	// Follow checks for new content until ctx ends, calling report with the outcome of each
	// check, from one goroutine.
	Follow(ctx context.Context, report func(Result))
}
