package signing

import (
	"context"
	"crypto/elliptic"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
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
