package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"

	"github.com/karmor/karmor/internal/registrytest"
)

// testCA is a Fulcio-like CA made in the test with sigstore-go's testing helpers, and its
// trusted root written to a file as users get it.
type testCA struct {
	interCert *x509.Certificate
	interKey  crypto.Signer
	rootFile  string
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	rootCert, rootKey, err := ca.GenerateRootCa()
	if err != nil {
		t.Fatal(err)
	}
	interCert, interKey, err := ca.GenerateFulcioIntermediate(rootCert, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, []root.CertificateAuthority{&root.FulcioCertificateAuthority{
		Root: rootCert, Intermediates: []*x509.Certificate{interCert}, URI: "https://fulcio.test",
		ValidityPeriodStart: time.Now().Add(-24 * time.Hour), ValidityPeriodEnd: time.Now().Add(24 * time.Hour),
	}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return testCA{interCert: interCert, interKey: interKey, rootFile: path}
}

// certificateProvider hands sigstore-go's signer a certificate issued beforehand.
type certificateProvider struct{ der []byte }

func (p certificateProvider) GetCertificate(context.Context, sign.Keypair, *sign.CertificateProviderOptions) ([]byte, error) {
	return p.der, nil
}

// keylessBundle signs manifest with a fresh key whose certificate (identity, issuer, valid for
// ten minutes from notBefore) the CA issues.
func (c testCA) keylessBundle(t *testing.T, manifest digest.Digest, identity, issuer string, notBefore time.Time) []byte {
	t.Helper()
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.GenerateLeafCert(identity, issuer, notBefore, leafKey, c.interCert, c.interKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newPrivateKey("ephemeral", leafKey)
	if err != nil {
		t.Fatal(err)
	}
	return sigstoreBundle(t, manifest, key, sign.BundleOptions{CertificateProvider: certificateProvider{leaf.Raw}})
}

func TestVerifyKeyless(t *testing.T) {
	authority := newTestCA(t)
	manifest := digest.FromString("policies")
	const who, issuer = "release@example.com", "https://issuer.example"
	trust := func(t *testing.T, id Identity, rootFile string) *Trust {
		t.Helper()
		trust, err := TrustFiles{Identity: id, TrustedRootFile: rootFile}.Load()
		if err != nil {
			t.Fatal(err)
		}
		return trust
	}
	exact := Identity{Subject: who, Issuer: issuer}
	good := authority.keylessBundle(t, manifest, who, issuer, time.Now().Add(-time.Minute))

	signer, err := VerifyBundle(good, manifest, trust(t, exact, authority.rootFile))
	if err != nil || signer != who+" from "+issuer {
		t.Fatalf("exact identity: signer %q, err %v", signer, err)
	}
	if _, err := VerifyBundle(good, manifest, trust(t, Identity{SubjectRegexp: `.*@example\.com`, IssuerRegexp: `https://issuer\..*`}, authority.rootFile)); err != nil {
		t.Fatalf("regexp identity: %v", err)
	}

	refusals := map[string]struct {
		bundle   []byte
		trust    *Trust
		manifest digest.Digest
		want     string
	}{
		"identity mismatch":     {good, trust(t, Identity{Subject: "mallory@example.com", Issuer: issuer}, authority.rootFile), manifest, "mallory"},
		"regexp is anchored":    {good, trust(t, Identity{SubjectRegexp: `release@example`, Issuer: issuer}, authority.rootFile), manifest, "release@example"},
		"issuer mismatch":       {good, trust(t, Identity{Subject: who, Issuer: "https://other.example"}, authority.rootFile), manifest, "other.example"},
		"wrong root":            {good, trust(t, exact, newTestCA(t).rootFile), manifest, "certificate"},
		"expired certificate":   {authority.keylessBundle(t, manifest, who, issuer, time.Now().Add(-time.Hour)), trust(t, exact, authority.rootFile), manifest, "leaf certificate"},
		"another digest":        {good, trust(t, exact, authority.rootFile), digest.FromString("other"), "digest"},
		"keys only are trusted": {good, &Trust{Keys: []*PublicKey{newTestKeys(t, "k").Public}}, manifest, "no certificate identity is trusted"},
	}
	for name, c := range refusals {
		t.Run(name, func(t *testing.T) {
			_, err := VerifyBundle(c.bundle, c.manifest, c.trust)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}

	// Through a registry: the bundle as a referrer verifies with Verify.
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})
	art := pushPolicy(t, reg, "team/policies:v1", "p1")
	if _, err := pushBundle(ctx, art.Repo, art.Manifest, authority.keylessBundle(t, art.Manifest.Digest, who, issuer, time.Now().Add(-time.Minute)), time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, art.Repo, art.Manifest, trust(t, exact, authority.rootFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err != nil || v.SignedBy != who+" from "+issuer {
		t.Fatalf("keyless referrer: signed by %q, %v", v.SignedBy, err)
	}
}
