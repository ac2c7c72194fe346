package signing

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/notaryproject/notation-go"
	"github.com/notaryproject/notation-go/verifier"
	"github.com/notaryproject/notation-go/verifier/trustpolicy"
	"github.com/notaryproject/notation-go/verifier/truststore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/readlimit"
)

// Notation's signature format: an OCI referrer of this artifact type whose one layer is a JWS
// or COSE envelope.
const (
	MediaTypeNotation     = "application/vnd.cncf.notary.signature"
	mediaTypeNotationJWS  = "application/jose+json"
	mediaTypeNotationCOSE = "application/cose"
	notationStoreName     = "karmor"
)

// LoadNotationCertificates reads PEM CA certificates that root notation signing chains.
func LoadNotationCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readlimit.File(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("notation certificate: %w", err)
	}
	return ParseNotationCertificates(path, data)
}

// ParseNotationCertificates parses PEM CA certificates held in memory; name says where they
// came from, for messages.
func ParseNotationCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	if len(data) > 1<<20 {
		return nil, fmt.Errorf("notation certificate %s is %d bytes, more than 1 MiB", name, len(data))
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM(data)
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("notation certificate %s: no PEM certificate (%v)", name, err)
	}
	return certs, nil
}

// notationStore is an in-memory notation trust store holding Trust.NotationCerts as the CA
// store "karmor".
type notationStore struct{ certs []*x509.Certificate }

func (s notationStore) GetCertificates(_ context.Context, storeType truststore.Type, name string) ([]*x509.Certificate, error) {
	if storeType != truststore.TypeCA || name != notationStoreName {
		return nil, fmt.Errorf("no trust store %s:%s", storeType, name)
	}
	return s.certs, nil
}

// notationVerifier is notation-go's verifier under a trust policy of one statement: every
// registry scope, strict verification, the CA store "karmor", and the trusted identities (any
// identity chained to the CAs when none is given).
func notationVerifier(trust *Trust) (notation.Verifier, error) {
	identities := trust.NotationIdentities
	if len(identities) == 0 {
		identities = []string{"*"}
	}
	doc := &trustpolicy.Document{Version: "1.0", TrustPolicies: []trustpolicy.TrustPolicy{{
		Name:                  "karmor",
		RegistryScopes:        []string{"*"},
		SignatureVerification: trustpolicy.SignatureVerification{VerificationLevel: trustpolicy.LevelStrict.Name},
		TrustStores:           []string{string(truststore.TypeCA) + ":" + notationStoreName},
		TrustedIdentities:     identities,
	}}}
	return verifier.New(doc, notationStore{trust.NotationCerts}, nil)
}

// verifyNotationReferrer fetches and verifies one notation signature of subject.
func verifyNotationReferrer(ctx context.Context, repo *remote.Repository, subject, referrer ocispec.Descriptor, trust *Trust) Attempt {
	a := Attempt{Format: FormatNotary, Location: referrer.Digest.String()}
	envelope, mediaType, err := fetchNotationEnvelope(ctx, repo, subject, referrer)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	if len(trust.NotationCerts) == 0 {
		a.Error = "notation signature, but no notation certificate is trusted"
		return a
	}
	if trust.RequireTlog {
		a.Error = "a transparency log entry is required (--require-tlog, or a PolicySource's spec.verify.requireTlog), and notation signatures have none"
		return a
	}
	v, err := notationVerifier(trust)
	if err != nil {
		a.Error = err.Error()
		return a
	}
	ref := repo.Reference.Registry + "/" + repo.Reference.Repository + "@" + subject.Digest.String()
	outcome, err := v.Verify(ctx, subject, envelope, notation.VerifierVerifyOptions{ArtifactReference: ref, SignatureMediaType: mediaType})
	if err != nil {
		a.Error = err.Error()
		return a
	}
	a.Verified, a.Signer = true, "notation certificate"
	if outcome.EnvelopeContent != nil && len(outcome.EnvelopeContent.SignerInfo.CertificateChain) > 0 {
		a.Signer = "notation certificate " + outcome.EnvelopeContent.SignerInfo.CertificateChain[0].Subject.String()
	}
	return a
}

func fetchNotationEnvelope(ctx context.Context, repo *remote.Repository, subject, referrer ocispec.Descriptor) ([]byte, string, error) {
	if err := referrer.Digest.Validate(); err != nil {
		return nil, "", errors.New("invalid referrer digest")
	}
	_, data, err := fetchManifest(ctx, repo, referrer.Digest.String())
	if err != nil {
		return nil, "", err
	}
	m, err := ParseSignatureManifest(data)
	if err != nil {
		return nil, "", err
	}
	if m.Subject == nil || m.Subject.Digest != subject.Digest {
		return nil, "", errors.New("the signature manifest's subject is another artifact")
	}
	layer := m.Layers[0]
	if layer.MediaType != mediaTypeNotationJWS && layer.MediaType != mediaTypeNotationCOSE {
		return nil, "", fmt.Errorf("notation envelope of media type %q: want %s", layer.MediaType, strings.Join([]string{mediaTypeNotationJWS, mediaTypeNotationCOSE}, " or "))
	}
	envelope, err := fetchBlob(ctx, repo, layer, MaxBundleSize)
	if err != nil {
		return nil, "", fmt.Errorf("notation envelope: %w", err)
	}
	return envelope, layer.MediaType, nil
}
