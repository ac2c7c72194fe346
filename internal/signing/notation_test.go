package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-go"
	notationregistry "github.com/notaryproject/notation-go/registry"
	"github.com/notaryproject/notation-go/signer"

	"github.com/karmor/karmor/internal/registrytest"
)

// notationChain makes a CA and a code signing leaf it issued, as notation requires them.
func notationChain(t *testing.T, name string) (*x509.Certificate, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	subject := func(cn string) pkix.Name {
		return pkix.Name{Country: []string{"US"}, Province: []string{"WA"}, Organization: []string{"karmor " + name}, CommonName: cn}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTemplate := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: subject(name + " CA"),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTemplate := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: subject(name + " signer"),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}, BasicConstraintsValid: true}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTemplate, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return ca, leaf, leafKey
}

// TestNotationSignatures: a signature notation-go makes (what `notation sign` makes) verifies
// under the CA it chains to, and is refused under another CA or a trusted identity it lacks.
func TestNotationSignatures(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})
	art := pushPolicy(t, reg, "team/policies:v1", "p1")
	ca, leaf, leafKey := notationChain(t, "release")
	otherCA, _, _ := notationChain(t, "other")

	s, err := signer.NewGenericSigner(leafKey, []*x509.Certificate{leaf, ca})
	if err != nil {
		t.Fatal(err)
	}
	_, err = notation.Sign(ctx, s, notationregistry.NewRepository(art.Repo), notation.SignOptions{
		SignerSignOptions: notation.SignerSignOptions{SignatureMediaType: mediaTypeNotationJWS},
		ArtifactReference: art.Ref.String(),
	})
	if err != nil {
		t.Fatal(err)
	}

	v, err := Verify(ctx, art.Repo, art.Manifest, &Trust{NotationCerts: []*x509.Certificate{ca}})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err != nil || v.Format != FormatNotary || !strings.Contains(v.SignedBy, "release signer") {
		t.Fatalf("notation signature: %s by %q, %v", v.Format, v.SignedBy, err)
	}
	for name, trust := range map[string]*Trust{
		"another CA":       {NotationCerts: []*x509.Certificate{otherCA}},
		"another identity": {NotationCerts: []*x509.Certificate{ca}, NotationIdentities: []string{"x509.subject: C=US, ST=WA, O=someone else"}},
		"keys only":        {Keys: []*PublicKey{newTestKeys(t, "k").Public}},
		"log required":     {NotationCerts: []*x509.Certificate{ca}, RequireTlog: true},
	} {
		v, err := Verify(ctx, art.Repo, art.Manifest, trust)
		if err != nil {
			t.Fatal(err)
		}
		if v.Verified || len(v.Attempts) != 1 || v.Attempts[0].Error == "" {
			t.Errorf("%s: %+v", name, v.Attempts)
		}
	}
}
