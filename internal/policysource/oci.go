package policysource

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/pkg/policy"
)

// Defaults of OCIOptions.
const (
	DefaultOCIInterval  = 30 * time.Second
	DefaultJitter       = 0.1
	DefaultCheckTimeout = 2 * time.Minute
)

// OCIOptions configures an OCI source.
type OCIOptions struct {
	// Ref is the artifact reference to follow, e.g. registry.example.com/policies:prod. A tag
	// is followed as it moves; a digest pins one version.
	Ref string
	// Transport and Fetch are those of `karmor oci pull`: TLS, credentials, retries, and the
	// bounds on what is read from the registry.
	Transport oci.TransportOptions
	Fetch     oci.FetchOptions
	// Interval is the time between polls (default 30 s), varied at random by ±Jitter (a
	// fraction, default 0.1) so that the nodes of a cluster do not poll in step. The first
	// poll happens as soon as Follow starts.
	Interval time.Duration
	Jitter   float64
	// CheckTimeout bounds one poll, fetch included (default 2 min).
	CheckTimeout time.Duration
	// CacheDir keeps the last good content, so that it is in force at the next start even
	// without the registry. Empty means no cache.
	CacheDir string
	// Logger receives cache problems that do not stop the source; nil means slog.Default().
	Logger *slog.Logger
	// Trust, when it names keys or identities, admits only signed content: a new digest goes in
	// force only when a trusted signature covers it, and the cache only when the signature it
	// keeps still verifies.
	Trust *signing.Trust
}

// OCI is a policy artifact in a registry, polled for new versions.
type OCI struct {
	opts OCIOptions
	ref  oci.Reference
	repo *remote.Repository
	log  *slog.Logger

	// Follow's memory: the content in force with its files (to skip refetching unchanged
	// layers), and the last digest rejected as invalid with why, so that an invalid push is
	// not downloaded again at every poll.
	inForce   *Content
	files     map[string][]byte
	badDigest string
	badErr    error
}

// NewOCI returns an OCI source. It talks to no registry until Follow.
func NewOCI(opts OCIOptions) (*OCI, error) {
	ref, err := oci.ParseReference(opts.Ref)
	if err != nil {
		return nil, fmt.Errorf("policy reference %q: %w", opts.Ref, err)
	}
	repo, err := oci.NewRepository(ref, opts.Transport)
	if err != nil {
		return nil, fmt.Errorf("policy reference %s: %w", ref, err)
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultOCIInterval
	}
	if opts.Jitter <= 0 || opts.Jitter >= 1 {
		opts.Jitter = DefaultJitter
	}
	if opts.CheckTimeout <= 0 {
		opts.CheckTimeout = DefaultCheckTimeout
	}
	if opts.Fetch.MaxTotalSize <= 0 {
		opts.Fetch.MaxTotalSize = oci.DefaultMaxTotalSize
	}
	if opts.Fetch.MaxLayerSize <= 0 {
		opts.Fetch.MaxLayerSize = oci.DefaultMaxLayerSize
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &OCI{opts: opts, ref: ref, repo: repo, log: log}, nil
}

// Name returns "oci:" and the normalised reference.
func (o *OCI) Name() string { return "oci:" + o.ref.String() }

// Kind returns KindOCI.
func (o *OCI) Kind() Kind { return KindOCI }

// Location returns the normalised reference.
func (o *OCI) Location() string { return o.ref.String() }

// Load returns the cached content, nil when there is no cache.
func (o *OCI) Load(context.Context) (*Content, error) {
	if o.opts.CacheDir == "" {
		return nil, nil
	}
	rec, err := readCache(o.opts.CacheDir, o.ref.String(), o.opts.Fetch.MaxTotalSize)
	if err != nil || rec == nil {
		return nil, err
	}
	files := make(map[string][]byte, len(rec.Files))
	named := make([]namedData, len(rec.Files))
	for i, f := range rec.Files {
		files[f.Name] = f.Data
		named[i] = namedData{f.Name, f.Data}
	}
	location := o.ref.Pinned(digest.Digest(rec.Digest)).String()
	var signedBy string
	if o.opts.Trust.Configured() {
		// The trust may have changed since the cache was written (a key rotated out).
		signedBy, err = signing.VerifyEvidence(rec.Signature, digest.Digest(rec.Digest), o.opts.Trust)
		if err != nil {
			return nil, fmt.Errorf("policy cache of %s is not put in force: it does not verify under the configured trust: %w", location, err)
		}
	}
	docs, err := o.parse(location, named)
	if err != nil {
		return nil, fmt.Errorf("policy cache of %s holds invalid policies (%w); it is ignored", o.ref, err)
	}
	o.inForce = &Content{Digest: rec.Digest, Location: location, Documents: docs, FromCache: true, SignedBy: signedBy, Files: files}
	o.files = files
	return o.inForce, nil
}

// Follow polls the registry until ctx ends: once at once, then every Interval ± Jitter.
func (o *OCI) Follow(ctx context.Context, report func(Result)) {
	for {
		r := o.Check(ctx)
		if ctx.Err() != nil {
			return
		}
		report(r)
		timer := time.NewTimer(o.nextWait())
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

func (o *OCI) nextWait() time.Duration {
	spread := (rand.Float64()*2 - 1) * o.opts.Jitter
	return time.Duration(float64(o.opts.Interval) * (1 + spread))
}

// Current returns the content in force: the last good content a Check (or Load) put in
// force, nil before the first.
func (o *OCI) Current() *Content { return o.inForce }

// Check is one poll, what Follow does at every interval: it resolves the reference and, when
// it names new content, fetches, verifies and validates it, and caches it. The Result holds
// the content only when it changed; Current returns it at any time. Not safe for concurrent
// use: one caller checks a source at a time.
func (o *OCI) Check(ctx context.Context) Result {
	ctx, cancel := context.WithTimeout(ctx, o.opts.CheckTimeout)
	defer cancel()
	desc, err := oci.ResolveDigest(ctx, o.repo, o.ref)
	if err != nil {
		return Result{Err: err, Failure: FailureFetch, At: time.Now()}
	}
	manifest := desc.Digest.String()
	switch {
	case o.inForce != nil && o.inForce.Digest == manifest:
		if o.inForce.FromCache {
			// The registry confirms the cache: same content, now current.
			confirmed := *o.inForce
			confirmed.FromCache = false
			o.inForce = &confirmed
			return Result{Content: o.inForce, At: time.Now()}
		}
		return Result{At: time.Now()}
	case manifest == o.badDigest:
		return Result{Err: o.badErr, Failure: FailureInvalid, At: time.Now()}
	}

	// Verified before anything else is fetched. A refusal is not remembered like invalid
	// content is: the signature may be pushed after the artifact, and the next poll sees it.
	var verified *signing.Verification
	if o.opts.Trust.Configured() {
		v, err := signing.Verify(ctx, o.repo, desc, o.opts.Trust)
		if err != nil {
			return Result{Err: fmt.Errorf("%s: %w", o.ref.Pinned(desc.Digest), err), Failure: FailureFetch, At: time.Now()}
		}
		if err := v.Err(); err != nil {
			return Result{Err: fmt.Errorf("%s was not put in force, the last good policies stay: %w", o.ref.Pinned(desc.Digest), err), Failure: FailureVerify, At: time.Now()}
		}
		verified = v
	}

	fetch := o.opts.Fetch
	fetch.Cached = func(name string, layer ocispec.Descriptor) ([]byte, bool) {
		data, ok := o.files[name]
		return data, ok
	}
	set, err := oci.FetchPolicySet(ctx, o.repo, o.ref.Pinned(desc.Digest), fetch)
	if err != nil {
		return Result{Err: err, Failure: FailureFetch, At: time.Now()}
	}
	if set.Manifest.Digest != desc.Digest {
		return Result{Err: fmt.Errorf("%s: the registry served manifest %s for %s", o.ref, set.Manifest.Digest, desc.Digest), Failure: FailureFetch, At: time.Now()}
	}
	location := set.Reference.String()
	named := make([]namedData, len(set.Policies))
	for i, p := range set.Policies {
		named[i] = namedData{p.Name, p.Data}
	}
	docs, err := o.parse(location, named)
	if err != nil {
		o.badDigest = manifest
		o.badErr = fmt.Errorf("%s was rejected, the last good policies stay in force: %w", location, err)
		return Result{Err: o.badErr, Failure: FailureInvalid, At: time.Now()}
	}

	o.files = set.Files()
	o.inForce = &Content{Digest: manifest, Location: location, Documents: docs, Files: o.files}
	o.badDigest, o.badErr = "", nil
	rec := o.record(manifest, named)
	if verified != nil {
		o.inForce.SignedBy = verified.SignedBy
		rec.Signature = verified.Evidence
	}
	if o.opts.CacheDir != "" {
		if err := writeCache(o.opts.CacheDir, rec); err != nil {
			// The policies are good and go in force; only the next start without the registry
			// would miss them.
			o.log.Warn("cannot cache policies; they are in force but a restart without the registry would not have them",
				"reference", o.ref.String(), "error", err)
		}
	}
	return Result{Content: o.inForce, At: time.Now()}
}

type namedData struct {
	name string
	data []byte
}

// parse validates every file strictly, as `karmor oci pull` does: every file must hold at
// least one policy and every document must be valid.
func (o *OCI) parse(location string, files []namedData) ([]policy.Document, error) {
	var docs []policy.Document
	var empty []string
	for _, f := range files {
		opts := policy.Options{}
		if n := int64(len(f.data)); n > policy.DefaultMaxFileSize {
			opts.MaxFileSize = n // the registry's bound, already enforced, is the one that counts
		}
		parsed := policy.ParseBytes(location+"/"+f.name, f.data, opts)
		if len(parsed) == 0 {
			empty = append(empty, f.name)
		}
		docs = append(docs, parsed...)
	}
	err := policy.FirstError(docs)
	if len(empty) > 0 {
		err = errors.Join(err, fmt.Errorf("no policy in %v", empty))
	}
	return docs, err
}

func (o *OCI) record(manifest string, files []namedData) *cacheRecord {
	rec := &cacheRecord{Version: cacheVersion, Reference: o.ref.String(), Digest: manifest, SavedAt: time.Now().UTC()}
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		rec.Files = append(rec.Files, cacheFile{Name: f.name, Digest: "sha256:" + hex.EncodeToString(sum[:]), Data: f.data})
	}
	return rec
}
