package signing

import (
	"crypto/elliptic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// The decoders of signature material read from a registry: none may panic, and whatever they
// accept must satisfy the bounds verification relies on.

func FuzzParseSignatureManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}`))
	f.Add([]byte(`{"layers":[{"digest":"sha256:0","size":-1}]}`))
	f.Add([]byte(`{"layers":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseSignatureManifest(data)
		if err != nil {
			return
		}
		if len(m.Layers) == 0 || len(m.Layers) > maxSignatureLayers {
			t.Fatalf("accepted %d layers", len(m.Layers))
		}
		for _, l := range m.Layers {
			if l.Size < 0 || l.Digest.Validate() != nil {
				t.Fatalf("accepted layer %+v", l)
			}
		}
	})
}

func FuzzParseSimpleSigning(f *testing.F) {
	good, _ := newSimpleSigning("r.example/p", digest.FromString("x"))
	f.Add(good)
	f.Add([]byte(`{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"sha256:"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseSimpleSigning(data)
		if err == nil && d.Validate() != nil {
			t.Fatalf("accepted invalid digest %q", d)
		}
	})
}

// FuzzVerifyBundle feeds arbitrary bundles (a real one as the seed) to the whole bundle
// verification: nothing verifies but the seed, and nothing panics.
func FuzzVerifyBundle(f *testing.F) {
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
	if err != nil {
		f.Fatal(err)
	}
	priv, err := ParsePrivateKey("k", privPEM, nil)
	if err != nil {
		f.Fatal(err)
	}
	pub, err := ParsePublicKey("k.pub", pubPEM)
	if err != nil {
		f.Fatal(err)
	}
	manifest := digest.FromString("manifest")
	seed, err := bundleJSON(manifest, priv)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))
	trust := &Trust{Keys: []*PublicKey{pub}}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = VerifyBundle(data, manifest, trust)
	})
}
