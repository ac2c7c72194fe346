package policysource

import (
	"context"
	"crypto/elliptic"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/signing"
	"github.com/karmor/karmor/internal/testutil"
)

// newSigner returns a fresh plain PEM key pair.
func newSigner(t *testing.T, name string) (*signing.PrivateKey, *signing.PublicKey) {
	t.Helper()
	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
	must(t, err)
	priv, err := signing.ParsePrivateKey(name+".key", privPEM, nil)
	must(t, err)
	pub, err := signing.ParsePublicKey(name+".pub", pubPEM)
	must(t, err)
	return priv, pub
}

// sign signs the manifest at ref@manifest with key.
func sign(t *testing.T, ref, manifest string, key *signing.PrivateKey, legacy bool) {
	t.Helper()
	r, err := oci.ParseReference(ref)
	must(t, err)
	repo, err := oci.NewRepository(r, transport)
	must(t, err)
	desc, err := oci.ResolveDigest(context.Background(), repo, r.Pinned(digest.Digest(manifest)))
	must(t, err)
	_, err = signing.Sign(context.Background(), repo, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, key, signing.SignOptions{Legacy: legacy})
	must(t, err)
}

func newVerifyingSource(t *testing.T, ref, cacheDir string, keys ...*signing.PublicKey) *OCI {
	t.Helper()
	o, err := NewOCI(OCIOptions{Ref: ref, Transport: transport, Interval: 100 * time.Millisecond, CacheDir: cacheDir,
		Trust: &signing.Trust{Keys: keys}})
	must(t, err)
	return o
}

// TestOCIPutsInForceOnlyVerifiedDigests follows a tag with a trusted key: a signed version goes
// in force with its signer; a tag moved to an unsigned digest, or to one signed by another
// key, leaves the last good set in force with the reason; a signature pushed later is picked
// up; and a restart puts the cache in force only under a trust that still verifies it.
func TestOCIPutsInForceOnlyVerifiedDigests(t *testing.T) {
	reg := registrytest.New(t, registrytest.Options{})
	ref := reg.Host + "/policies:prod"
	cache := t.TempDir()
	key, pub := newSigner(t, "release")
	otherKey, otherPub := newSigner(t, "other")

	v1 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "web"))
	sign(t, ref, v1, key, false)
	c := newChanges()
	m := start(t, c, newVerifyingSource(t, ref, cache, pub))
	ch := c.wait(t, "for signed v1", func(ch Change) bool { return ch.Err == nil && ch.Digest == v1 })
	if ch.Policies != 1 {
		t.Fatalf("v1 change = %+v", ch)
	}
	if st := m.Status()[0]; !strings.Contains(st.SignedBy, pub.Fingerprint()) {
		t.Fatalf("v1 status signed by %q, want %s", st.SignedBy, pub.Fingerprint())
	}
	set := m.Current()

	// The tag moves to an unsigned digest: refused, v1 stays.
	v2 := push(t, ref, false, "web.yaml", testutil.BlockShellPolicy("web", "", "api"))
	ch = c.wait(t, "refusing unsigned v2", func(ch Change) bool { return ch.Err != nil })
	if !errors.Is(ch.Err, signing.ErrNotVerified) || !strings.Contains(ch.Err.Error(), v2) || ch.Digest != v1 {
		t.Fatalf("unsigned v2: %+v", ch)
	}
	if m.Current() != set {
		t.Fatal("an unsigned digest replaced the set in force")
	}

	// Signed by an untrusted key: still refused.
	sign(t, ref, v2, otherKey, false)
	ch = c.wait(t, "refusing v2 signed by another key", func(ch Change) bool {
		return ch.Err != nil && strings.Contains(ch.Err.Error(), "no trusted key verifies it")
	})
	if m.Current() != set || m.Status()[0].Digest != v1 {
		t.Fatal("a signature by an untrusted key put v2 in force")
	}

	// The trusted signature arrives later (legacy format): v2 goes in force.
	sign(t, ref, v2, key, true)
	c.wait(t, "for v2 once signed", func(ch Change) bool { return ch.Err == nil && ch.Digest == v2 })
	if got := applying(m.Current(), "api"); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("v2 applying to app=api: %v", got)
	}

	// Restart without the registry: the cache (v2) still verifies under the same key.
	reg.Close()
	m2 := start(t, newChanges(), newVerifyingSource(t, ref, cache, pub))
	if st := m2.Status()[0]; st.Digest != v2 || !st.FromCache || !strings.Contains(st.SignedBy, pub.Fingerprint()) {
		t.Fatalf("restart with the same key: status %+v", st)
	}

	// Keys rotated: the cached set no longer verifies and is not put in force.
	c3 := newChanges()
	m3 := start(t, c3, newVerifyingSource(t, ref, cache, otherPub))
	if m3.Current().Match.Len() != 0 {
		t.Fatal("a cache that no longer verifies was put in force")
	}
	first := c3.wait(t, "the cache refusal", func(Change) bool { return true })
	if first.Err == nil || !strings.Contains(first.Err.Error(), "does not verify") {
		t.Fatalf("first change after rotation = %+v", first)
	}
}
