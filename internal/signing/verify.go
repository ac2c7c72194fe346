package signing

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/readlimit"
)

// ErrNotVerified reports an artifact that no trusted signature covers.
var ErrNotVerified = errors.New("no trusted signature")

// Identity is a keyless signer: the subject (SAN) of the certificate and the OIDC issuer that
// vouched for it, each matched exactly or by a regular expression (anchored by the caller).
type Identity struct {
	Subject       string `json:"subject,omitempty"`
	SubjectRegexp string `json:"subjectRegexp,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegexp  string `json:"issuerRegexp,omitempty"`
}

func (id Identity) String() string {
	subject, issuer := id.Subject, id.Issuer
	if subject == "" {
		subject = "~" + id.SubjectRegexp
	}
	if issuer == "" {
		issuer = "~" + id.IssuerRegexp
	}
	return subject + " from " + issuer
}

// Trust is what verification accepts: any one key, or any one identity with a certificate
// chained to the trusted root.
type Trust struct {
	Keys       []*PublicKey
	Identities []Identity
	// TrustedRoot is a Sigstore trusted root (LoadTrustedRoot): the CAs that issue keyless
	// certificates and the transparency logs' keys. Required for Identities and RequireTlog.
	TrustedRoot root.TrustedMaterial
	// RequireTlog refuses a signature without a transparency log entry verified against the
	// trusted root's log keys (offline: the entry's inclusion proof or promise in the bundle).
	RequireTlog bool
	// MaxSignatures caps the signatures tried (default DefaultMaxSignatures).
	MaxSignatures int
	// NotationCerts are the CA certificates notation signatures must chain to;
	// NotationIdentities, the trusted identities of notation's trust policy ("x509.subject: ..."),
	// any identity when empty.
	NotationCerts      []*x509.Certificate
	NotationIdentities []string
}

// Configured reports whether the trust asks for any verification.
func (t *Trust) Configured() bool {
	return t != nil && (len(t.Keys) > 0 || len(t.Identities) > 0 || len(t.NotationCerts) > 0)
}

// Check reports a trust that cannot verify anything as configured.
func (t *Trust) Check() error {
	if len(t.Identities) > 0 && t.TrustedRoot == nil {
		return errors.New("certificate identities need a trusted root (--trusted-root FILE)")
	}
	if t.RequireTlog && t.TrustedRoot == nil {
		return errors.New("requiring a transparency log entry needs a trusted root with the log's key (--trusted-root FILE)")
	}
	for _, id := range t.Identities {
		if (id.Subject == "") == (id.SubjectRegexp == "") {
			return errors.New("give exactly one of --certificate-identity and --certificate-identity-regexp")
		}
		if (id.Issuer == "") == (id.IssuerRegexp == "") {
			return errors.New("give exactly one of --certificate-oidc-issuer and --certificate-oidc-issuer-regexp")
		}
		for _, re := range []string{id.SubjectRegexp, id.IssuerRegexp} {
			if _, err := regexp.Compile(re); err != nil {
				return fmt.Errorf("bad regular expression %q: %w", re, err)
			}
		}
	}
	return nil
}

// Describe says what the trust accepts, for messages.
func (t *Trust) Describe() string {
	var parts []string
	for _, k := range t.Keys {
		parts = append(parts, k.Describe())
	}
	if len(t.NotationCerts) > 0 {
		parts = append(parts, fmt.Sprintf("notation signatures chained to %d certificates", len(t.NotationCerts)))
	}
	for _, id := range t.Identities {
		parts = append(parts, "identity "+id.String())
	}
	return strings.Join(parts, ", ")
}

// LoadTrustedRoot reads a Sigstore trusted_root.json (as `cosign trusted-root create` or the
// public-good instance's TUF repository provide it).
func LoadTrustedRoot(path string) (*root.TrustedRoot, error) {
	data, err := readlimit.File(path, 4<<20)
	if err != nil {
		return nil, fmt.Errorf("trusted root: %w", err)
	}
	return ParseTrustedRoot(path, data)
}

// Attempt is one signature tried.
type Attempt struct {
	Format Format `json:"format"`
	// Location is where the signature is: the digest of its manifest (a referrer) or its tag.
	Location string `json:"location"`
	Verified bool   `json:"verified"`
	// Signer is who signed, for a verified signature: a key, or a certificate's identity.
	Signer string `json:"signer,omitempty"`
	Error  string `json:"error,omitempty"`

	evidence *Evidence
}

// Evidence is the signature material that verified, kept so that the verification can be
// repeated offline (karmord's cache re-verifies it at start, under the trust then configured).
type Evidence struct {
	Format Format `json:"format"`
	// Bundle is the Sigstore bundle (bundle format).
	Bundle []byte `json:"bundle,omitempty"`
	// Payload and Signature are the simple signing payload and its signature (legacy format).
	Payload   []byte `json:"payload,omitempty"`
	Signature []byte `json:"signature,omitempty"`
}

// VerifyEvidence verifies kept signature material against manifest under trust and returns
// who signed.
func VerifyEvidence(e *Evidence, manifest digest.Digest, trust *Trust) (string, error) {
	if e == nil {
		return "", fmt.Errorf("%w: no signature kept", ErrNotVerified)
	}
	var signer string
	var err error
	switch e.Format {
	case FormatBundle:
		signer, err = VerifyBundle(e.Bundle, manifest, trust)
	case FormatLegacy:
		signer, err = VerifyLegacyPayload(e.Payload, e.Signature, manifest, trust)
	default:
		err = fmt.Errorf("unknown signature format %q", e.Format)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotVerified, err)
	}
	return signer, nil
}

// Verification is the outcome of Verify.
type Verification struct {
	Digest   digest.Digest `json:"digest"`
	Verified bool          `json:"verified"`
	// SignedBy is the signer of the signature that verified.
	SignedBy string `json:"signedBy,omitempty"`
	// Format is the format of the signature that verified.
	Format   Format    `json:"format,omitempty"`
	Attempts []Attempt `json:"signatures"`
	// Evidence is the material of the signature that verified.
	Evidence *Evidence `json:"-"`
	// Skipped counts signatures not tried because MaxSignatures were.
	Skipped int `json:"skipped,omitempty"`
}

// Err returns nil for a verified artifact, else an ErrNotVerified that says why each
// signature was refused.
func (v *Verification) Err() error {
	if v.Verified {
		return nil
	}
	if len(v.Attempts) == 0 {
		return fmt.Errorf("%w: %s has no signature", ErrNotVerified, v.Digest)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: none of its %d signatures verified", v.Digest, len(v.Attempts))
	for _, a := range v.Attempts {
		fmt.Fprintf(&b, "\n  %s %s: %s", a.Format, a.Location, a.Error)
	}
	if v.Skipped > 0 {
		fmt.Fprintf(&b, "\n  (%d more not tried)", v.Skipped)
	}
	return fmt.Errorf("%w: %s", ErrNotVerified, b.String())
}

// Verify looks for signatures of the artifact manifest describes, in repo (the artifact's
// repository): referrers first (Sigstore bundles and notation signatures), then the legacy
// .sig tag. It stops at the first that
// verifies under trust. An error is returned only when the registry could not be read; an
// artifact no signature verifies is reported by Verification.Err.
func Verify(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, trust *Trust) (*Verification, error) {
	if err := manifest.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("verify: invalid digest: %w", err)
	}
	limit := trust.MaxSignatures
	if limit <= 0 {
		limit = DefaultMaxSignatures
	}
	v := &Verification{Digest: manifest.Digest}
	try := func(a Attempt) bool {
		if a.Verified {
			v.Verified, v.SignedBy, v.Format, v.Evidence = true, a.Signer, a.Format, a.evidence
		}
		v.Attempts = append(v.Attempts, a)
		return a.Verified
	}

	referrers, more, err := listReferrers(ctx, repo, manifest, limit)
	if err != nil {
		return nil, err
	}
	v.Skipped = more
	for _, r := range referrers {
		var a Attempt
		switch r.ArtifactType {
		case MediaTypeBundle:
			a = verifyBundleReferrer(ctx, repo, manifest, r, trust)
		case MediaTypeNotation:
			a = verifyNotationReferrer(ctx, repo, manifest, r, trust)
		default:
			continue
		}
		if try(a) {
			return v, nil
		}
	}
	if len(v.Attempts) >= limit {
		return v, nil
	}
	for _, a := range verifyLegacy(ctx, repo, manifest, trust, limit-len(v.Attempts)) {
		if try(a) {
			return v, nil
		}
	}
	return v, nil
}

// errEnough stops a referrers listing once enough are known.
var errEnough = errors.New("enough referrers")

// listReferrers returns up to limit signature referrers of manifest and how many more there
// were. oras-go reads the referrers API or, where the registry has none, the index at the
// sha256-<hex> tag (bounded by the repository's MaxMetadataBytes).
func listReferrers(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, limit int) ([]ocispec.Descriptor, int, error) {
	var out []ocispec.Descriptor
	more := 0
	err := repo.Referrers(ctx, manifest, "", func(page []ocispec.Descriptor) error {
		for _, d := range page {
			if d.ArtifactType != MediaTypeBundle && d.ArtifactType != MediaTypeNotation {
				continue // SBOMs, attestations: not signatures
			}
			if len(out) < limit {
				out = append(out, d)
			} else {
				more++
			}
		}
		if more > 1000 {
			return errEnough // counting further only costs requests
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) && !errors.Is(err, errdef.ErrNotFound) {
		return nil, 0, fmt.Errorf("list the signatures of %s: %w", manifest.Digest, err)
	}
	return out, more, nil
}

// verifyBundleReferrer fetches and verifies one bundle referrer.
func verifyBundleReferrer(ctx context.Context, repo *remote.Repository, subject, referrer ocispec.Descriptor, trust *Trust) Attempt {
	a := Attempt{Format: FormatBundle, Location: referrer.Digest.String()}
	if err := referrer.Digest.Validate(); err != nil {
		a.Error = "invalid referrer digest"
		return a
	}
	_, data, err := fetchManifest(ctx, repo, referrer.Digest.String())
	if err != nil {
		a.Error = err.Error()
		return a
	}
	m, err := ParseSignatureManifest(data)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	if m.Subject == nil || m.Subject.Digest != subject.Digest {
		a.Error = "the signature manifest's subject is another artifact"
		return a
	}
	var layer *ocispec.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == MediaTypeBundle {
			layer = &m.Layers[i]
			break
		}
	}
	if layer == nil {
		a.Error = "the signature manifest has no bundle layer"
		return a
	}
	data, err = fetchBlob(ctx, repo, *layer, MaxBundleSize)
	if err != nil {
		a.Error = fmt.Sprintf("bundle: %v", err)
		return a
	}
	signer, err := VerifyBundle(data, subject.Digest, trust)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	a.Verified, a.Signer = true, signer
	a.evidence = &Evidence{Format: FormatBundle, Bundle: data}
	return a
}

// VerifyBundle verifies a Sigstore bundle of a DSSE in-toto statement signing manifest with
// cosign's sign predicate, and returns who signed.
func VerifyBundle(data []byte, manifest digest.Digest, trust *Trust) (string, error) {
	b, err := parseBundle(data)
	if err != nil {
		return "", err
	}
	want, err := hex.DecodeString(manifest.Encoded())
	if err != nil {
		return "", fmt.Errorf("bad digest %s", manifest)
	}
	artifact := verify.WithArtifactDigest(manifest.Algorithm().String(), want)
	content, err := b.VerificationContent()
	if err != nil {
		return "", fmt.Errorf("bundle: %w", err)
	}

	if trust.RequireTlog {
		if err := tlogProblem(b, trust.TrustedRoot); err != nil {
			return "", err
		}
	}

	var check func() (*verify.VerificationResult, string, error)
	if content.Certificate() != nil {
		if len(trust.Identities) == 0 {
			return "", errors.New("signed keylessly (a certificate), but no certificate identity is trusted")
		}
		check = func() (*verify.VerificationResult, string, error) { return verifyKeyless(b, artifact, trust) }
	} else {
		if len(trust.Keys) == 0 {
			return "", errors.New("signed with a key, but no key is trusted")
		}
		check = func() (*verify.VerificationResult, string, error) { return verifyWithKeys(b, artifact, trust) }
	}
	result, signer, err := check()
	if err != nil {
		return "", err
	}
	if result.Statement == nil || result.Statement.GetPredicateType() != PredicateTypeCosignSign {
		return "", fmt.Errorf("the bundle signs a statement of predicate type %q, not a signature (%s)", result.Statement.GetPredicateType(), PredicateTypeCosignSign)
	}
	return signer, nil
}

// tlogProblem names, in terms a user can act on, the two usual reasons a bundle cannot meet
// RequireTlog: it has no log entry at all (signed by karmor, or by cosign with
// --tlog-upload=false), or its entries are all from logs the trusted root does not name (a
// trusted root of another Sigstore instance). sigstore-go reports both only as "not enough
// verified log entries"; it still checks everything else (proofs, promises, signatures).
func tlogProblem(b *bundle.Bundle, trusted root.TrustedMaterial) error {
	entries, err := b.TlogEntries()
	if err != nil {
		return fmt.Errorf("transparency log entry: %w", err)
	}
	if len(entries) == 0 {
		return errors.New("the bundle has no transparency log entry, and one is required (--require-tlog, or a PolicySource's spec.verify.requireTlog)")
	}
	if known, unknown := entriesOfKnownLogs(entries, trusted); known == 0 {
		return fmt.Errorf("the bundle's transparency log entry is from log %s, which the trusted root does not name (a trusted root of another Sigstore instance?), and one is required (--require-tlog, or a PolicySource's spec.verify.requireTlog)", strings.Join(unknown, ", "))
	}
	return nil
}

// knownLogEntry reports whether any entry is from a log the trusted root names.
func knownLogEntry(entries []*tlog.Entry, trusted root.TrustedMaterial) bool {
	known, _ := entriesOfKnownLogs(entries, trusted)
	return known > 0
}

// entriesOfKnownLogs counts the entries from logs the trusted root names and lists the IDs
// of the other logs.
func entriesOfKnownLogs(entries []*tlog.Entry, trusted root.TrustedMaterial) (int, []string) {
	logs := trusted.RekorLogs()
	known := 0
	var unknown []string
	for _, e := range entries {
		// sigstore-go's key of a log: the hex of the log ID the entry names.
		id := hex.EncodeToString([]byte(e.LogKeyID()))
		if _, ok := logs[id]; ok {
			known++
		} else {
			unknown = append(unknown, id)
		}
	}
	return known, unknown
}

// parseBundle decodes a bundle from untrusted bytes: bounded, and only DSSE bundles (what
// cosign writes for images).
func parseBundle(data []byte) (*bundle.Bundle, error) {
	if len(data) > MaxBundleSize {
		return nil, fmt.Errorf("bundle is %d bytes, over the limit of %d", len(data), MaxBundleSize)
	}
	var b bundle.Bundle
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	env, err := b.Envelope()
	if err != nil || env == nil {
		return nil, errors.New("the bundle holds no DSSE envelope")
	}
	if env.PayloadType != mediaTypeInToto {
		return nil, fmt.Errorf("the bundle's payload is %q, not an in-toto statement", env.PayloadType)
	}
	return &b, nil
}

func verifyWithKeys(b *bundle.Bundle, artifact verify.ArtifactPolicyOption, trust *Trust) (*verify.VerificationResult, string, error) {
	var errs []string
	for _, key := range trust.Keys {
		keyMaterial := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
			return root.NewExpiringKey(key.verifier, time.Time{}, time.Time{}), nil
		})
		var material root.TrustedMaterial = keyMaterial
		opts := []verify.VerifierOption{verify.WithNoObserverTimestamps()}
		if trust.RequireTlog {
			material = root.TrustedMaterialCollection{keyMaterial, trust.TrustedRoot}
			opts = append(opts, verify.WithTransparencyLog(1))
		}
		v, err := verify.NewVerifier(material, opts...)
		if err != nil {
			return nil, "", err
		}
		result, err := v.Verify(b, verify.NewPolicy(artifact, verify.WithKey()))
		if err == nil {
			return result, key.Describe(), nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", key.Name, err))
	}
	return nil, "", fmt.Errorf("no trusted key verifies it (%s)", strings.Join(errs, "; "))
}

func verifyKeyless(b *bundle.Bundle, artifact verify.ArtifactPolicyOption, trust *Trust) (*verify.VerificationResult, string, error) {
	var opts []verify.VerifierOption
	timestamps, _ := b.Timestamps()
	entries, _ := b.TlogEntries()
	switch {
	case trust.RequireTlog:
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1))
	case len(timestamps) > 0:
		opts = append(opts, verify.WithSignedTimestamps(1))
	case knownLogEntry(entries, trust.TrustedRoot):
		opts = append(opts, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1))
	default:
		// No time observed by a third party the trusted root names (an entry of another
		// log proves nothing here): the certificate must be valid now.
		opts = append(opts, verify.WithCurrentTime())
	}
	v, err := verify.NewVerifier(trust.TrustedRoot, opts...)
	if err != nil {
		return nil, "", err
	}
	policy := []verify.PolicyOption{}
	for _, id := range trust.Identities {
		ci, err := verify.NewShortCertificateIdentity(id.Issuer, anchor(id.IssuerRegexp), id.Subject, anchor(id.SubjectRegexp))
		if err != nil {
			return nil, "", err
		}
		policy = append(policy, verify.WithCertificateIdentity(ci))
	}
	result, err := v.Verify(b, verify.NewPolicy(artifact, policy...))
	if err != nil {
		return nil, "", err
	}
	signer := "certificate"
	if result.Signature != nil && result.Signature.Certificate != nil {
		c := result.Signature.Certificate
		signer = fmt.Sprintf("%s from %s", c.SubjectAlternativeName, c.Issuer)
	}
	return result, signer, nil
}

// anchor makes a user's regular expression match whole values, as cosign's do.
func anchor(re string) string {
	if re == "" {
		return ""
	}
	return "^(?:" + re + ")$"
}

// verifyLegacy verifies the layers of the .sig tag's manifest, at most limit of them.
func verifyLegacy(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor, trust *Trust, limit int) []Attempt {
	tag := LegacyTag(manifest.Digest)
	_, data, err := fetchManifest(ctx, repo, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil
	}
	if err != nil {
		return []Attempt{{Format: FormatLegacy, Location: tag, Error: err.Error()}}
	}
	m, err := ParseSignatureManifest(data)
	if err != nil {
		return []Attempt{{Format: FormatLegacy, Location: tag, Error: err.Error()}}
	}
	var out []Attempt
	for i, layer := range m.Layers {
		if len(out) >= limit {
			break
		}
		a := Attempt{Format: FormatLegacy, Location: fmt.Sprintf("%s layer %d", tag, i)}
		evidence, signer, err := verifyLegacyLayer(ctx, repo, manifest.Digest, layer, trust)
		if err != nil {
			a.Error = err.Error()
		} else {
			a.Verified, a.Signer, a.evidence = true, signer, evidence
		}
		out = append(out, a)
		if a.Verified {
			break
		}
	}
	return out
}

func verifyLegacyLayer(ctx context.Context, repo *remote.Repository, manifest digest.Digest, layer ocispec.Descriptor, trust *Trust) (*Evidence, string, error) {
	if layer.MediaType != mediaTypeSimpleSigning {
		return nil, "", fmt.Errorf("layer of media type %q is not a simple signing payload", layer.MediaType)
	}
	if layer.Annotations[annotationCertificate] != "" {
		return nil, "", errors.New("keyless signature in the legacy format: not supported, sign with the bundle format")
	}
	sig, err := decodeSignature(layer.Annotations[annotationSignature])
	if err != nil {
		return nil, "", err
	}
	payload, err := fetchBlob(ctx, repo, layer, MaxPayloadSize)
	if err != nil {
		return nil, "", fmt.Errorf("payload: %w", err)
	}
	signer, err := VerifyLegacyPayload(payload, sig, manifest, trust)
	if err != nil {
		return nil, "", err
	}
	return &Evidence{Format: FormatLegacy, Payload: payload, Signature: sig}, signer, nil
}

// VerifyLegacyPayload verifies a simple signing payload and its signature against the trusted
// keys, and that it signs manifest. It returns who signed.
func VerifyLegacyPayload(payload, sig []byte, manifest digest.Digest, trust *Trust) (string, error) {
	if len(trust.Keys) == 0 {
		return "", errors.New("signed with a key, but no key is trusted")
	}
	if trust.RequireTlog {
		// cosign v2 keeps a log entry in an annotation beside this format; karmor does not
		// read it, so it cannot tell a logged signature from one that is not.
		return "", errors.New("a transparency log entry is required (--require-tlog, or a PolicySource's spec.verify.requireTlog), and karmor checks them only in Sigstore bundles, not in the legacy .sig format")
	}
	signer := ""
	for _, key := range trust.Keys {
		if key.verifier.VerifySignature(bytesReader(sig), bytesReader(payload)) == nil {
			signer = key.Describe()
			break
		}
	}
	if signer == "" {
		return "", errors.New("no trusted key verifies it")
	}
	signed, err := ParseSimpleSigning(payload)
	if err != nil {
		return "", err
	}
	if signed != manifest {
		return "", fmt.Errorf("the signature is of another artifact (%s)", signed)
	}
	return signer, nil
}

// TrustFiles names the files and identities a Trust is built from, as flags give them.
type TrustFiles struct {
	// KeyFiles are PEM public keys.
	KeyFiles []string
	// Identity is a keyless signer; zero when none.
	Identity Identity
	// TrustedRootFile is a Sigstore trusted_root.json.
	TrustedRootFile string
	RequireTlog     bool
	MaxSignatures   int
	// NotationCertFiles are PEM CA certificates for notation signatures.
	NotationCertFiles []string
}

// Load reads the files and returns the trust; nil when it names no key and no identity.
func (f TrustFiles) Load() (*Trust, error) {
	if len(f.KeyFiles) == 0 && f.Identity == (Identity{}) && len(f.NotationCertFiles) == 0 {
		if f.TrustedRootFile != "" || f.RequireTlog {
			return nil, errors.New("a trusted root or a required transparency log entry needs a key or a certificate identity to trust")
		}
		return nil, nil
	}
	trust := &Trust{RequireTlog: f.RequireTlog, MaxSignatures: f.MaxSignatures}
	for _, path := range f.KeyFiles {
		key, err := LoadPublicKey(path)
		if err != nil {
			return nil, err
		}
		trust.Keys = append(trust.Keys, key)
	}
	if f.Identity != (Identity{}) {
		trust.Identities = []Identity{f.Identity}
	}
	for _, path := range f.NotationCertFiles {
		certs, err := LoadNotationCertificates(path)
		if err != nil {
			return nil, err
		}
		trust.NotationCerts = append(trust.NotationCerts, certs...)
	}
	if f.TrustedRootFile != "" {
		tr, err := LoadTrustedRoot(f.TrustedRootFile)
		if err != nil {
			return nil, err
		}
		trust.TrustedRoot = tr
	}
	if err := trust.Check(); err != nil {
		return nil, err
	}
	return trust, nil
}

// ParseTrustedRoot parses a Sigstore trusted_root.json held in memory (a ConfigMap's entry);
// name says where it came from, for messages.
func ParseTrustedRoot(name string, data []byte) (*root.TrustedRoot, error) {
	if len(data) > 4<<20 {
		return nil, fmt.Errorf("trusted root %s is %d bytes, more than 4 MiB", name, len(data))
	}
	tr, err := root.NewTrustedRootFromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("trusted root %s: %w", name, err)
	}
	return tr, nil
}
