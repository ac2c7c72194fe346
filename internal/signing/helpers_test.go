package signing

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
)

// testKeys is a key pair written as cosign writes it: an encrypted private key and a PEM
// public key.
type testKeys struct {
	PrivatePath, PublicPath, Password string
	Private                           *PrivateKey
	Public                            *PublicKey
}

func newTestKeys(t testing.TB, name string) testKeys {
	t.Helper()
	password := "pw-" + name
	priv, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc([]byte(password)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := testKeys{PrivatePath: filepath.Join(dir, name+".key"), PublicPath: filepath.Join(dir, name+".pub"), Password: password}
	if err := os.WriteFile(k.PrivatePath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.PublicPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	k.Private, err = LoadPrivateKey(k.PrivatePath, func() ([]byte, error) { return []byte(password), nil })
	if err != nil {
		t.Fatal(err)
	}
	k.Public, err = LoadPublicKey(k.PublicPath)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func validPolicy(name string) []byte {
	return fmt.Appendf(nil, `apiVersion: security.kubearmor.com/v1
kind: KubeArmorPolicy
metadata:
  name: %s
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  file:
    matchDirectories:
    - dir: /etc/
      recursive: true
  action: Block
`, name)
}

func testTransport(t testing.TB) oci.TransportOptions {
	t.Helper()
	return oci.TransportOptions{
		PlainHTTP:    true,
		DockerConfig: filepath.Join(t.TempDir(), "config.json"),
		Retry:        oci.RetryOptions{MinWait: time.Millisecond, MaxWait: 5 * time.Millisecond},
	}
}

// pushed is a policy artifact pushed to a test registry.
type pushed struct {
	Ref      oci.Reference
	Manifest ocispec.Descriptor
	Repo     *remote.Repository
}

func pushPolicy(t testing.TB, reg *registrytest.Registry, repoTag, name string) pushed {
	t.Helper()
	ref, err := oci.ParseReference(reg.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	tr := testTransport(t)
	res, err := oci.Push(context.Background(), ref, []oci.File{{Name: name + ".yaml", Data: validPolicy(name)}}, oci.PushOptions{Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := oci.NewRepository(ref, tr)
	if err != nil {
		t.Fatal(err)
	}
	return pushed{Ref: res.Reference, Manifest: res.Manifest, Repo: repo}
}

// keypair makes the key a sigstore-go sign.Keypair, so that tests build bundles with
// sigstore-go's signer, as cosign does: keyless ones and ones with log entries, which karmor
// does not make, and key-signed ones to compare with karmor's.
type keypair struct{ key *PrivateKey }

func (p keypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return p.key.details.GetProtoHashType()
}
func (p keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return p.key.details.GetSignatureAlgorithm()
}
func (p keypair) GetHint() []byte { return []byte(hint(p.key.signer.Public())) }
func (p keypair) GetKeyAlgorithm() string {
	switch p.key.details.GetKeyType() {
	case signature.ECDSA:
		return "ECDSA"
	case signature.RSA:
		return "RSA"
	case signature.ED25519:
		return "ED25519"
	}
	return ""
}
func (p keypair) GetPublicKey() crypto.PublicKey { return p.key.signer.Public() }
func (p keypair) GetPublicKeyPem() (string, error) {
	pem, err := cryptoutils.MarshalPublicKeyToPEM(p.key.signer.Public())
	return string(pem), err
}

// SignData signs data and returns the signature and what was signed: its digest, except for
// pure Ed25519, which signs the message itself.
func (p keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	hash := p.key.details.GetHashType()
	signed := data
	if hash != crypto.Hash(0) {
		h := hash.New()
		h.Write(data)
		signed = h.Sum(nil)
	}
	sig, err := p.key.signer.Sign(rand.Reader, signed, hash)
	return sig, signed, err
}

// sigstoreBundle signs cosign's statement for manifest into a bundle with sigstore-go's signer
// and opts (a certificate provider, transparency logs), encoded as cosign stores it.
func sigstoreBundle(t testing.TB, manifest digest.Digest, key *PrivateKey, opts sign.BundleOptions) []byte {
	t.Helper()
	payload, err := newStatement(manifest)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sign.Bundle(&sign.DSSEData{Data: payload, PayloadType: mediaTypeInToto}, keypair{key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	data, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
