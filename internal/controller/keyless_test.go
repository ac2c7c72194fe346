package controller

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"maps"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-go"
	notationregistry "github.com/notaryproject/notation-go/registry"
	notationsigner "github.com/notaryproject/notation-go/signer"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/internal/testutil"

	"github.com/karmor/karmor/internal/signing/signingtest"
)

// pushForSigning pushes files (name, content pairs) to ref and returns the repository and the
// manifest, for a test to sign.
func pushForSigning(t *testing.T, ref string, files ...string) (*remote.Repository, ocispec.Descriptor) {
	t.Helper()
	r, err := oci.ParseReference(ref)
	must(t, err)
	var fs []oci.File
	for i := 0; i+1 < len(files); i += 2 {
		fs = append(fs, oci.File{Name: files[i], Data: []byte(files[i+1])})
	}
	res, err := oci.Push(context.Background(), r, fs, oci.PushOptions{Transport: transport})
	must(t, err)
	repo, err := oci.NewRepository(r, transport)
	must(t, err)
	m := res.Manifest
	return repo, ocispec.Descriptor{MediaType: m.MediaType, Digest: m.Digest, Size: m.Size}
}

// leafKeypair is a certificate's ECDSA P-256 key as sigstore-go's signer takes it.
type leafKeypair struct{ key *ecdsa.PrivateKey }

func (leafKeypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}
func (leafKeypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}
func (leafKeypair) GetHint() []byte                  { return nil }
func (leafKeypair) GetKeyAlgorithm() string          { return "ECDSA" }
func (p leafKeypair) GetPublicKey() crypto.PublicKey { return p.key.Public() }
func (p leafKeypair) GetPublicKeyPem() (string, error) {
	data, err := cryptoutils.MarshalPublicKeyToPEM(p.key.Public())
	return string(data), err
}
func (p leafKeypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	sum := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(rand.Reader, p.key, sum[:])
	return sig, sum[:], err
}

// issuedCertificate hands sigstore-go's signer the certificate the test CA issued, as Fulcio
// would.
type issuedCertificate struct{ der []byte }

func (c issuedCertificate) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	return c.der, nil
}

// trustedRootJSON is the trusted_root.json of a VirtualSigstore's Fulcio CA and Rekor log: what
// a user would put in the ConfigMap (`cosign trusted-root create`).
func trustedRootJSON(t *testing.T, vs *ca.VirtualSigstore) string {
	t.Helper()
	// VirtualSigstore names its log by the hex of the log's key ID; the file holds the key ID
	// itself, which is what a bundle's entry names.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		must(t, err)
		named := *l
		named.ID = raw
		logs[id] = &named
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), nil, nil, logs)
	must(t, err)
	data, err := tr.MarshalJSON()
	must(t, err)
	return string(data)
}

// signKeyless signs manifest as `cosign sign` does keylessly, with a log entry when logged: a
// certificate vs issues to identity from issuer, cosign v3's in-toto statement in a DSSE
// bundle, stored as a referrer of the manifest in cosign's layout. The bundle and the referrer
// are built here with sigstore-go and oras-go, not with karmor's signing code, so the
// controller is held to what cosign writes.
func signKeyless(t *testing.T, vs *ca.VirtualSigstore, repo *remote.Repository, manifest ocispec.Descriptor, identity, issuer string, logged bool) {
	t.Helper()
	ctx := context.Background()
	leaf, key, err := vs.GenerateLeafCert(identity, issuer)
	must(t, err)
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"digest": map[string]string{manifest.Digest.Algorithm().String(): manifest.Digest.Encoded()}}},
		"predicateType": signing.PredicateTypeCosignSign,
		"predicate":     map[string]any{},
	})
	must(t, err)
	opts := sign.BundleOptions{CertificateProvider: issuedCertificate{leaf.Raw}}
	if logged {
		opts.TransparencyLogs = []sign.Transparency{sign.NewRekor(&sign.RekorOptions{Client: signingtest.VirtualRekor{VS: vs}})}
	}
	b, err := sign.Bundle(&sign.DSSEData{Data: statement, PayloadType: "application/vnd.in-toto+json"},
		leafKeypair{key.(*ecdsa.PrivateKey)}, opts)
	must(t, err)
	bundle, err := protojson.Marshal(b)
	must(t, err)

	config := ocispec.DescriptorEmptyJSON
	layer := content.NewDescriptorFromBytes(signing.MediaTypeBundle, bundle)
	for _, blob := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{config, config.Data}, {layer, bundle}} {
		must(t, repo.Push(ctx, blob.desc, bytes.NewReader(blob.data)))
	}
	m, err := json.Marshal(ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: signing.MediaTypeBundle,
		Config:       config,
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &manifest,
		Annotations: map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": signing.PredicateTypeCosignSign,
		},
	})
	must(t, err)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	must(t, repo.Push(ctx, desc, bytes.NewReader(m)))
}

func createConfigMap(t *testing.T, k *testutil.KubeAPI, ns, name string, data map[string]string) {
	t.Helper()
	_, err := adminKube(k).CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
	must(t, err)
}

// objectVersions is resourceVersions without the PolicySource: the applied objects only.
func objectVersions(t *testing.T, k *testutil.KubeAPI, ns, name string) map[string]string {
	t.Helper()
	rvs := resourceVersions(t, k, ns, name)
	delete(rvs, "PolicySource")
	return rvs
}

// TestVerifiedKeyless: a version signed keylessly by a trusted identity, with a certificate the
// ConfigMap's trusted root issued, is applied and its signer reported; with requireTlog, only a
// version whose signature has an entry in the trusted root's log is. Refused, changing
// nothing: another identity (a second PolicySource, then a spec change), requireTlog without a
// log entry, a trusted root of another CA, and a new version whose certificate another CA
// issued to the trusted identity (logged in that CA's log).
func TestVerifiedKeyless(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "keyless")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/keyless:prod"
	const who, issuer = "release@example.com", "https://issuer.example"

	fulcio, err := ca.NewVirtualSigstore()
	must(t, err)
	forger, err := ca.NewVirtualSigstore()
	must(t, err)
	createConfigMap(t, k, ns, "sigstore", map[string]string{TrustedRootKey: trustedRootJSON(t, fulcio)})

	repo, v1 := pushForSigning(t, ref, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	signKeyless(t, fulcio, repo, v1, who, issuer, false)
	startController(t, k, ns)
	keyless := func(subject string) map[string]any {
		return map[string]any{
			"ref": ref, "interval": testInterval, "insecure": true,
			"verify": map[string]any{
				"identities":              []any{map[string]any{"subject": subject, "issuer": issuer}},
				"trustedRootConfigMapRef": map[string]any{"name": "sigstore"},
			},
		}
	}
	createSource(t, k, ns, "release", keyless(who))
	waitCondition(t, k, ns, "release", CondReady, metav1.ConditionTrue, ReasonApplied)
	src := waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)
	if src.status.Digest != v1.Digest.String() || src.status.SignedBy != who+" from "+issuer {
		t.Fatalf("status after the keyless v1: %+v", src.status)
	}
	if msg := conditionMessage(src, CondVerified); !strings.Contains(msg, who) {
		t.Errorf("the Verified condition does not name the signer: %q", msg)
	}
	if _, ok := managed(t, k, ns, "release")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"}]; !ok {
		t.Fatal("web was not applied")
	}
	inForce, rvs := v1, objectVersions(t, k, ns, "release")
	before := rvs

	// Another identity: the same signature proves nothing to it.
	createSource(t, k, ns, "stranger", keyless("mallory@example.com"))
	src = waitCondition(t, k, ns, "stranger", CondVerified, metav1.ConditionFalse, ReasonVerificationFailed)
	waitCondition(t, k, ns, "stranger", CondReady, metav1.ConditionFalse, ReasonVerificationFailed)
	if src.status.Digest != "" || src.status.SignedBy != "" {
		t.Errorf("an untrusted identity put a version in force: %+v", src.status)
	}
	if msg := conditionMessage(src, CondVerified); !strings.Contains(msg, "mallory@example.com") {
		t.Errorf("the refusal does not say which identity was wanted: %q", msg)
	}
	if got := managed(t, k, ns, "stranger"); len(got) != 0 {
		t.Errorf("an untrusted identity applied objects: %v", got)
	}
	waitEvent(t, k, ns, "stranger", "Warning VerificationFailed")

	// The PolicySource changed to trust another identity, or to require a log entry, then the
	// ConfigMap changed to another CA's root: each rebuilds the source, which refuses the
	// version in force and keeps its objects; put back, it is verified again.
	refused := func(what, why string) {
		t.Helper()
		src := waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionFalse, ReasonVerificationFailed)
		if msg := conditionMessage(src, CondVerified); !strings.Contains(msg, why) {
			t.Errorf("%s: the refusal does not say %q: %s", what, why, msg)
		}
		if src.status.Digest != inForce.Digest.String() {
			t.Errorf("%s moved the digest in force: %+v", what, src.status)
		}
		if got := objectVersions(t, k, ns, "release"); !maps.Equal(got, rvs) {
			t.Errorf("%s changed objects:\nbefore %v\nafter  %v", what, rvs, got)
		}
	}
	patchSpec(t, k, ns, "release", jsonOf(t, keyless("mallory@example.com")))
	refused("another identity", `expected SAN value "mallory@example.com"`)
	patchSpec(t, k, ns, "release", jsonOf(t, keyless(who)))
	waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)
	// requireTlog: v1's signature carries no transparency log entry, so it proves nothing; a
	// version signed with an entry in the trusted root's log is put in force.
	patchSpec(t, k, ns, "release", `{"verify":{"requireTlog":true}}`)
	refused("requireTlog without a log entry", "no transparency log entry")
	repo, logged := pushForSigning(t, ref, "web.yaml", testutil.BlockShellPolicy("web", "", "logged"))
	signKeyless(t, fulcio, repo, logged, who, issuer, true)
	waitCondition(t, k, ns, "release", CondReady, metav1.ConditionTrue, ReasonApplied)
	src = waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)
	if src.status.Digest != logged.Digest.String() || src.status.SignedBy != who+" from "+issuer {
		t.Fatalf("status after the logged version: %+v", src.status)
	}
	inForce, rvs = logged, objectVersions(t, k, ns, "release")
	if maps.Equal(rvs, before) {
		t.Fatalf("the logged version changed no object: %v", rvs)
	}
	// Without requireTlog the refusals below are the certificate's: its chain to the root.
	patchSpec(t, k, ns, "release", `{"verify":{"requireTlog":null}}`)
	waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)
	if got := objectVersions(t, k, ns, "release"); !maps.Equal(got, rvs) {
		t.Errorf("dropping requireTlog rewrote objects:\nbefore %v\nafter  %v", rvs, got)
	}
	setRoot := func(vs *ca.VirtualSigstore) {
		t.Helper()
		cms := adminKube(k).CoreV1().ConfigMaps(ns)
		cm, err := cms.Get(context.Background(), "sigstore", metav1.GetOptions{})
		must(t, err)
		cm.Data[TrustedRootKey] = trustedRootJSON(t, vs)
		_, err = cms.Update(context.Background(), cm, metav1.UpdateOptions{})
		must(t, err)
	}
	setRoot(forger)
	refused("another trusted root", "leaf certificate verification failed")
	setRoot(fulcio)
	waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)

	// The trusted identity, but a certificate from a CA the trusted root does not name (and an
	// entry in a log it does not name, which proves no time).
	repo, v2 := pushForSigning(t, ref, "web.yaml", testutil.BlockShellPolicy("web", "", "forged"))
	signKeyless(t, forger, repo, v2, who, issuer, true)
	src = waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionFalse, ReasonVerificationFailed)
	waitCondition(t, k, ns, "release", CondReady, metav1.ConditionFalse, ReasonVerificationFailed)
	if msg := conditionMessage(src, CondVerified); !strings.Contains(msg, "leaf certificate verification failed") || !strings.Contains(msg, v2.Digest.String()) {
		t.Errorf("the refusal of the forged version does not say why: %s", msg)
	}
	if src.status.Digest != inForce.Digest.String() {
		t.Errorf("a forged certificate moved the digest in force: %+v", src.status)
	}
	if got := objectVersions(t, k, ns, "release"); !maps.Equal(got, rvs) {
		t.Errorf("a forged certificate changed objects:\nbefore %v\nafter  %v", rvs, got)
	}
	if got := managed(t, k, ns, "release")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"}]; strings.Contains(jsonOf(t, got), "forged") {
		t.Errorf("the forged version's policy is in force: %s", jsonOf(t, got))
	}
	// Under requireTlog its entry, in a log the trusted root does not name, is refused as such.
	patchSpec(t, k, ns, "release", `{"verify":{"requireTlog":true}}`)
	refused("a log the root does not name", "which the trusted root does not name")
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	must(t, err)
	return string(data)
}

// notationCA makes a CA and a code signing certificate it issued to "<name> signer", as
// notation requires them.
func notationCA(t *testing.T, name string) (caCert, leaf *x509.Certificate, leafKey *ecdsa.PrivateKey) {
	t.Helper()
	subject := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"karmor " + name}, CommonName: cn}
	}
	issue := func(template, parent *x509.Certificate, pub *ecdsa.PublicKey, by *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, template, parent, pub, by)
		must(t, err)
		c, err := x509.ParseCertificate(der)
		must(t, err)
		return c
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	leafKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTemplate := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject(name + " CA"),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caCert = issue(caTemplate, caTemplate, &caKey.PublicKey, caKey)
	leaf = issue(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: subject(name + " signer"),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, BasicConstraintsValid: true},
		caCert, &leafKey.PublicKey, caKey)
	return caCert, leaf, leafKey
}

// signNotation signs manifest with notation-go (what `notation sign` does) with the leaf's key,
// the signature carrying the chain leaf, caCert.
func signNotation(t *testing.T, repo *remote.Repository, manifest ocispec.Descriptor, ref string, caCert, leaf *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	s, err := notationsigner.NewGenericSigner(key, []*x509.Certificate{leaf, caCert})
	must(t, err)
	_, err = notation.Sign(context.Background(), s, notationregistry.NewRepository(repo), notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: "application/jose+json"},
		ArtifactReference: ref + "@" + manifest.Digest.String(),
	})
	must(t, err)
}

func pemOf(certs ...*x509.Certificate) string {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}

// TestVerifiedNotation: a version with a notation signature chained to a CA of the ConfigMap,
// by a trusted identity, is applied and its signer reported; another CA, or an identity the
// signature lacks, is refused and nothing is applied. Non-PEM entries of the ConfigMap are
// skipped, as keysSecretRef's are.
func TestVerifiedNotation(t *testing.T) {
	k := env(t)
	ns := k.NewNamespace(t, "notation")
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies/notation:prod"
	caCert, leaf, leafKey := notationCA(t, "release")
	otherCA, _, _ := notationCA(t, "other")
	createConfigMap(t, k, ns, "notation-ca", map[string]string{"release.pem": pemOf(caCert), "README": "the release CA; rotate before 2027"})
	createConfigMap(t, k, ns, "other-ca", map[string]string{"other.pem": pemOf(otherCA)})
	createConfigMap(t, k, ns, "no-ca", map[string]string{"README": "the release CA goes here"})

	repo, v1 := pushForSigning(t, ref, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	signNotation(t, repo, v1, ref, caCert, leaf, leafKey)
	startController(t, k, ns)
	notationSpec := func(configMap string, identities ...string) map[string]any {
		verify := map[string]any{"notationCertificatesConfigMapRef": map[string]any{"name": configMap}}
		if len(identities) > 0 {
			verify["notationIdentities"] = identities
		}
		return map[string]any{"ref": ref, "interval": testInterval, "insecure": true, "verify": verify}
	}
	createSource(t, k, ns, "release", notationSpec("notation-ca", "x509.subject: C=US, ST=WA, O=karmor release, CN=release signer"))
	waitCondition(t, k, ns, "release", CondReady, metav1.ConditionTrue, ReasonApplied)
	src := waitCondition(t, k, ns, "release", CondVerified, metav1.ConditionTrue, ReasonVerified)
	if src.status.Digest != v1.Digest.String() || !strings.Contains(src.status.SignedBy, "release signer") {
		t.Fatalf("status after the notation-signed v1: %+v", src.status)
	}
	if _, ok := managed(t, k, ns, "release")[PolicyRef{Kind: "KubeArmorPolicy", Namespace: ns, Name: "web"}]; !ok {
		t.Fatal("web was not applied")
	}

	for name, spec := range map[string]map[string]any{
		"other-ca":       notationSpec("other-ca"),
		"other-identity": notationSpec("notation-ca", "x509.subject: C=US, ST=WA, O=someone else"),
	} {
		createSource(t, k, ns, name, spec)
		src := waitCondition(t, k, ns, name, CondVerified, metav1.ConditionFalse, ReasonVerificationFailed)
		waitCondition(t, k, ns, name, CondReady, metav1.ConditionFalse, ReasonVerificationFailed)
		if src.status.Digest != "" || src.status.SignedBy != "" {
			t.Errorf("%s put a version in force: %+v", name, src.status)
		}
		if got := managed(t, k, ns, name); len(got) != 0 {
			t.Errorf("%s applied objects: %v", name, got)
		}
	}

	// Entries other than PEM (the README beside release.pem) are not certificates; a ConfigMap
	// with none is a configuration error, told as such.
	createSource(t, k, ns, "no-ca", notationSpec("no-ca"))
	src = waitCondition(t, k, ns, "no-ca", CondReady, metav1.ConditionFalse, ReasonConfigError)
	if msg := conditionMessage(src, CondReady); !strings.Contains(msg, "no PEM certificate") {
		t.Errorf("the configuration error does not say what is missing: %q", msg)
	}
}
