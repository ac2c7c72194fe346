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
	// Files are an OCI artifact's policy files by name (Documents[i].File is Location/name),
	// as the registry served them: for consumers that need each document as written, not as
	// the typed model holds it (karmor-controller applies them to the API server). Nil for a
	// directory.
	Files map[string][]byte
}

// Failure says which step of a check failed.
type Failure string

// The steps of a check that can fail.
const (
	// FailureFetch: the registry could not be reached, refused us, or served something broken.
	FailureFetch Failure = "FetchFailed"
	// FailureVerify: no trusted signature covers the new digest.
	FailureVerify Failure = "VerificationFailed"
	// FailureInvalid: the new content holds an invalid policy or a file without any.
	FailureInvalid Failure = "Invalid"
)

// Result is the outcome of one check of a source.
type Result struct {
	// Content is new content to put in force, or nil when nothing changed or the check failed.
	Content *Content
	// Err says why the check failed; the source's previous content stays in force.
	Err error
	// Failure is the step that failed when Err is set (set by OCI sources).
	Failure Failure
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
