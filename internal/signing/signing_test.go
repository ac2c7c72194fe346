package signing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"github.com/karmor/karmor/internal/registrytest"
)

func TestSignVerifyRoundTrip(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		name := "bundle"
		if legacy {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			reg := registrytest.New(t, registrytest.Options{})
			art := pushPolicy(t, reg, "team/policies:v1", "p1")
			signer := newTestKeys(t, "signer")
			other := newTestKeys(t, "other")

			signed, err := Sign(ctx, art.Repo, art.Manifest, signer.Private, SignOptions{Legacy: legacy})
			if err != nil {
				t.Fatal(err)
			}
			if legacy && signed.Tag != LegacyTag(art.Manifest.Digest) {
				t.Errorf("legacy signature tag = %q", signed.Tag)
			}

			// Any one trusted key suffices; the other key is tried and refused first.
			v, err := Verify(ctx, art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{other.Public, signer.Public}})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Err(); err != nil {
				t.Fatalf("not verified: %v", err)
			}
			if !strings.Contains(v.SignedBy, signer.Public.Fingerprint()) || v.Format != signed.Format {
				t.Errorf("signed by %q in %s, want %s in %s", v.SignedBy, v.Format, signer.Public.Fingerprint(), signed.Format)
			}

			// A wrong key is refused, with the reason.
			v, err = Verify(ctx, art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{other.Public}})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Err(); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "verif") {
				t.Fatalf("wrong key: err = %v", err)
			}
			if len(v.Attempts) != 1 || v.Attempts[0].Verified || v.Attempts[0].Error == "" {
				t.Errorf("attempts = %+v", v.Attempts)
			}

			// The signature is of this digest only: another artifact in the same repository is
			// unsigned.
			unsigned := pushPolicy(t, reg, "team/policies:v2", "p2")
			v, err = Verify(ctx, unsigned.Repo, unsigned.Manifest, &Trust{Keys: []*PublicKey{signer.Public}})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Err(); !errors.Is(err, ErrNotVerified) || !strings.Contains(err.Error(), "no signature") {
				t.Fatalf("unsigned artifact: err = %v", err)
			}
		})
	}
}

func TestSignTwiceKeepsBothSignatures(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		ctx := context.Background()
		reg := registrytest.New(t, registrytest.Options{})
		art := pushPolicy(t, reg, "team/policies:v1", "p1")
		a, b := newTestKeys(t, "a"), newTestKeys(t, "b")
		for _, k := range []testKeys{a, b} {
			if _, err := Sign(ctx, art.Repo, art.Manifest, k.Private, SignOptions{Legacy: legacy}); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []testKeys{a, b} {
			v, err := Verify(ctx, art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{k.Public}})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Err(); err != nil {
				t.Errorf("legacy=%v: %s's signature: %v", legacy, k.Public.Name, err)
			}
		}
	}
}

// TestVerifyRefusesASignatureOfAnotherDigest moves a valid signature of one artifact onto
// another: its subject (bundle) or payload (legacy) names the first digest.
func TestVerifyRefusesASignatureOfAnotherDigest(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})
	signed := pushPolicy(t, reg, "team/policies:v1", "p1")
	victim := pushPolicy(t, reg, "team/policies:v2", "p2")
	keys := newTestKeys(t, "k")
	trust := &Trust{Keys: []*PublicKey{keys.Public}}

	// Legacy: copy the .sig manifest to the victim's .sig tag.
	if _, err := Sign(ctx, signed.Repo, signed.Manifest, keys.Private, SignOptions{Legacy: true}); err != nil {
		t.Fatal(err)
	}
	desc, data, err := fetchManifest(ctx, signed.Repo, LegacyTag(signed.Manifest.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Repo.PushReference(ctx, desc, bytes.NewReader(data), LegacyTag(victim.Manifest.Digest)); err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, victim.Repo, victim.Manifest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err == nil || !strings.Contains(err.Error(), "another artifact") {
		t.Fatalf("moved legacy signature: err = %v", err)
	}

	// Bundle: the same bundle in a referrer whose subject is the victim.
	bundleSigned := pushPolicy(t, reg, "team/policies:v3", "p3")
	res, err := Sign(ctx, bundleSigned.Repo, bundleSigned.Manifest, keys.Private, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, data, err = fetchManifest(ctx, bundleSigned.Repo, res.Manifest.String())
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m.Subject = &ocispec.Descriptor{MediaType: victim.Manifest.MediaType, Digest: victim.Manifest.Digest, Size: victim.Manifest.Size}
	data, _ = json.Marshal(m)
	moved := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	moved.ArtifactType = MediaTypeBundle
	if err := victim.Repo.Push(ctx, moved, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// The victim now has the moved bundle (and the moved legacy signature).
	v, err = Verify(ctx, victim.Repo, victim.Manifest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if v.Verified || len(v.Attempts) != 2 || v.Attempts[0].Format != FormatBundle {
		t.Fatalf("moved bundle verified or not tried: %+v", v.Attempts)
	}
	if !strings.Contains(v.Attempts[0].Error, "digest") {
		t.Errorf("moved bundle refused for %q, want a digest mismatch", v.Attempts[0].Error)
	}
}

func TestVerifyRefusesGarbageAndOversizeSignatures(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})
	art := pushPolicy(t, reg, "team/policies:v1", "p1")
	keys := newTestKeys(t, "k")
	trust := &Trust{Keys: []*PublicKey{keys.Public}}
	subject := &ocispec.Descriptor{MediaType: art.Manifest.MediaType, Digest: art.Manifest.Digest, Size: art.Manifest.Size}

	pushReferrer := func(layerData []byte, declaredSize int64) {
		t.Helper()
		layer := content.NewDescriptorFromBytes(MediaTypeBundle, layerData)
		if err := pushBlob(ctx, art.Repo, layer, layerData); err != nil {
			t.Fatal(err)
		}
		if declaredSize > 0 {
			layer.Size = declaredSize
		}
		config := ocispec.DescriptorEmptyJSON
		if err := pushBlob(ctx, art.Repo, config, config.Data); err != nil {
			t.Fatal(err)
		}
		m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: MediaTypeBundle,
			Config: ocispec.Descriptor{MediaType: mediaTypeEmptyConfig, Digest: config.Digest, Size: config.Size},
			Layers: []ocispec.Descriptor{layer}, Subject: subject}
		m.SchemaVersion = 2
		data, _ := json.Marshal(m)
		desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
		desc.ArtifactType = MediaTypeBundle
		if err := art.Repo.Push(ctx, desc, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	pushReferrer([]byte("this is not a bundle"), 0)
	pushReferrer([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`), 0)
	pushReferrer([]byte("x"), MaxBundleSize+1)

	// Legacy: a garbage signature annotation on a real payload.
	payload, _ := newSimpleSigning(art.Ref.Name(), art.Manifest.Digest)
	layer := content.NewDescriptorFromBytes(mediaTypeSimpleSigning, payload)
	layer.Annotations = map[string]string{annotationSignature: "bm90IGEgc2lnbmF0dXJl"}
	if err := pushBlob(ctx, art.Repo, layer, payload); err != nil {
		t.Fatal(err)
	}
	config, _ := legacyConfig([]ocispec.Descriptor{layer})
	configDesc := content.NewDescriptorFromBytes(mediaTypeImageConfig, config)
	if err := pushBlob(ctx, art.Repo, configDesc, config); err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: configDesc, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	data, _ := json.Marshal(m)
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	if err := art.Repo.PushReference(ctx, desc, bytes.NewReader(data), LegacyTag(art.Manifest.Digest)); err != nil {
		t.Fatal(err)
	}

	v, err := Verify(ctx, art.Repo, art.Manifest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if v.Verified || len(v.Attempts) != 4 {
		t.Fatalf("attempts = %+v", v.Attempts)
	}
	text := v.Err().Error()
	for _, want := range []string{"over the limit", "bundle", "no trusted key verifies it"} {
		if !strings.Contains(text, want) {
			t.Errorf("error lacks %q:\n%s", want, text)
		}
	}

	// A good signature among the garbage still verifies.
	if _, err := Sign(ctx, art.Repo, art.Manifest, keys.Private, SignOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err = Verify(ctx, art.Repo, art.Manifest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyTriesAtMostMaxSignatures: a registry full of signatures costs a bounded number
// of fetches.
func TestVerifyTriesAtMostMaxSignatures(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})
	art := pushPolicy(t, reg, "team/policies:v1", "p1")
	signer, other := newTestKeys(t, "signer"), newTestKeys(t, "other")
	for range 6 {
		if _, err := Sign(ctx, art.Repo, art.Manifest, other.Private, SignOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	reg.Reset()
	v, err := Verify(ctx, art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{signer.Public}, MaxSignatures: 3})
	if err != nil {
		t.Fatal(err)
	}
	if v.Verified || len(v.Attempts) != 3 || v.Skipped < 3 {
		t.Fatalf("attempts %d, skipped %d, want 3 tried and the rest skipped", len(v.Attempts), v.Skipped)
	}
	if n := reg.Count("GET", registrytest.RouteBlob); n > 3 {
		t.Errorf("%d blob fetches for 3 signatures tried", n)
	}
}

func TestLoadKeys(t *testing.T) {
	k := newTestKeys(t, "k")
	if _, err := LoadPrivateKey(k.PrivatePath, func() ([]byte, error) { return []byte("wrong"), nil }); err == nil {
		t.Error("a wrong password opened the key")
	}
	if _, err := LoadPrivateKey(k.PrivatePath, nil); err == nil {
		t.Error("an encrypted key opened without a password")
	}
	if _, err := LoadPublicKey(k.PrivatePath); err == nil {
		t.Error("a private key file loaded as a public key")
	}
	if _, err := ParsePrivateKey("garbage", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), nil); err == nil {
		t.Error("garbage loaded as a private key")
	}
}

func TestParseSimpleSigning(t *testing.T) {
	d := digest.FromString("x")
	payload, err := newSimpleSigning("r.example/p", d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSimpleSigning(payload)
	if err != nil || got != d {
		t.Fatalf("ParseSimpleSigning = %s, %v", got, err)
	}
	for _, bad := range []string{`{}`, `{"critical":{"type":"cosign container image signature","image":{"docker-manifest-digest":"nope"}}}`, `[`} {
		if _, err := ParseSimpleSigning([]byte(bad)); err == nil {
			t.Errorf("ParseSimpleSigning(%s) accepted", bad)
		}
	}
}
