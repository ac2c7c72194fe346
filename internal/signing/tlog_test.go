package signing

import (
	"context"
	"crypto"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"google.golang.org/protobuf/encoding/protojson"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"

	"github.com/karmor/karmor/internal/registrytest"

	"github.com/karmor/karmor/internal/signing/signingtest"
)

// virtualSigstore is a Fulcio CA and a Rekor log made in the test, and a trusted_root.json
// naming both, written as users get it.
type virtualSigstore struct {
	vs       *ca.VirtualSigstore
	rootFile string
}

func newVirtualSigstore(t *testing.T) virtualSigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// VirtualSigstore names its log by the hex of its key ID; the trusted root file holds the
	// key ID itself, which is what a bundle's entry names.
	logs := map[string]*root.TransparencyLog{}
	for id, l := range vs.RekorLogs() {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		fixed := *l
		fixed.ID = raw
		logs[id] = &fixed
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(), vs.TimestampingAuthorities(), logs)
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
	return virtualSigstore{vs: vs, rootFile: path}
}

// logged returns the options that put a bundle's entry in this sigstore's log.
func (s virtualSigstore) logged() []sign.Transparency {
	return []sign.Transparency{sign.NewRekor(&sign.RekorOptions{Client: signingtest.VirtualRekor{VS: s.vs}})}
}

// keylessBundle signs manifest with a certificate the CA issues to identity (valid for ten
// minutes from now), with an entry in the log when logged.
func (s virtualSigstore) keylessBundle(t *testing.T, manifest digest.Digest, identity, issuer string, logged bool) []byte {
	t.Helper()
	leaf, leafKey, err := s.vs.GenerateLeafCert(identity, issuer)
	if err != nil {
		t.Fatal(err)
	}
	key, err := newPrivateKey("ephemeral", leafKey.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	opts := sign.BundleOptions{CertificateProvider: certificateProvider{leaf.Raw}}
	if logged {
		opts.TransparencyLogs = s.logged()
	}
	return sigstoreBundle(t, manifest, key, opts)
}

// keyBundle signs manifest with key, with an entry in the log when logged (as `cosign sign
// --key` does unless told --tlog-upload=false).
func (s virtualSigstore) keyBundle(t *testing.T, manifest digest.Digest, key *PrivateKey, logged bool) []byte {
	t.Helper()
	var opts sign.BundleOptions
	if logged {
		opts.TransparencyLogs = s.logged()
	}
	return sigstoreBundle(t, manifest, key, opts)
}

// editEntry decodes a bundle, lets edit change its log entry and encodes it again.
func editEntry(t *testing.T, data []byte, edit func(*protobundle.Bundle)) []byte {
	t.Helper()
	var b protobundle.Bundle
	if err := protojson.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.GetVerificationMaterial().GetTlogEntries()) != 1 {
		t.Fatalf("the bundle has %d log entries, want 1", len(b.GetVerificationMaterial().GetTlogEntries()))
	}
	edit(&b)
	out, err := protojson.Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyTransparencyLogEntries(t *testing.T) {
	sigstore := newVirtualSigstore(t)
	manifest := digest.FromString("policies")
	const who, issuer = "release@example.com", "https://issuer.example"
	keys := newTestKeys(t, "k")
	load := func(t *testing.T, f TrustFiles) *Trust {
		t.Helper()
		f.TrustedRootFile = sigstore.rootFile
		trust, err := f.Load()
		if err != nil {
			t.Fatal(err)
		}
		return trust
	}
	identity := TrustFiles{Identity: Identity{Subject: who, Issuer: issuer}}
	byKey := TrustFiles{KeyFiles: []string{keys.PublicPath}}
	required := func(f TrustFiles) TrustFiles { f.RequireTlog = true; return f }

	keyless := sigstore.keylessBundle(t, manifest, who, issuer, true)
	keyed := sigstore.keyBundle(t, manifest, keys.Private, true)

	otherLog := newVirtualSigstore(t)
	// A log the trusted root does not name signed the entry: the same signature and
	// certificate, logged elsewhere. For the key, the whole bundle is from the other log.
	keylessOtherLog := func() []byte {
		leaf, leafKey, err := sigstore.vs.GenerateLeafCert(who, issuer)
		if err != nil {
			t.Fatal(err)
		}
		key, err := newPrivateKey("ephemeral", leafKey.(crypto.Signer))
		if err != nil {
			t.Fatal(err)
		}
		return sigstoreBundle(t, manifest, key, sign.BundleOptions{CertificateProvider: certificateProvider{leaf.Raw}, TransparencyLogs: otherLog.logged()})
	}()
	accepted := map[string]struct {
		bundle []byte
		trust  TrustFiles
		signer string
	}{
		"keyless, log required":    {keyless, required(identity), who + " from " + issuer},
		"keyless, log optional":    {keyless, identity, who + " from " + issuer},
		"key, log required":        {keyed, required(byKey), keys.Public.Describe()},
		"key, log optional":        {keyed, byKey, keys.Public.Describe()},
		"keyless without an entry": {sigstore.keylessBundle(t, manifest, who, issuer, false), identity, who + " from " + issuer},
		"key without an entry":     {sigstore.keyBundle(t, manifest, keys.Private, false), byKey, keys.Public.Describe()},
		// The entry's log is not in the trusted root, and the log is not required: as
		// without an entry, the certificate must be valid now (it is).
		"keyless, unknown log, log optional": {keylessOtherLog, identity, who + " from " + issuer},
	}
	for name, c := range accepted {
		t.Run("accepts "+name, func(t *testing.T) {
			signer, err := VerifyBundle(c.bundle, manifest, load(t, c.trust))
			if err != nil || signer != c.signer {
				t.Fatalf("signer %q, err %v; want %q", signer, err, c.signer)
			}
		})
	}

	refused := map[string]struct {
		bundle []byte
		trust  TrustFiles
		want   string
	}{
		"keyless without an entry": {sigstore.keylessBundle(t, manifest, who, issuer, false), required(identity), "no transparency log entry"},
		"key without an entry":     {sigstore.keyBundle(t, manifest, keys.Private, false), required(byKey), "no transparency log entry"},
		"keyless, unknown log":     {keylessOtherLog, required(identity), "the trusted root does not name"},
		"key, unknown log":         {otherLog.keyBundle(t, manifest, keys.Private, true), required(byKey), "the trusted root does not name"},
		"tampered entry timestamp": {editEntry(t, keyed, func(b *protobundle.Bundle) {
			b.VerificationMaterial.TlogEntries[0].InclusionPromise.SignedEntryTimestamp[5] ^= 1
		}), required(byKey), "log inclusion"},
		"tampered integrated time": {editEntry(t, keyless, func(b *protobundle.Bundle) {
			b.VerificationMaterial.TlogEntries[0].IntegratedTime++
		}), required(identity), "log inclusion"},
		"entry of another signature": {editEntry(t, keyed, func(b *protobundle.Bundle) {
			other := sigstore.keyBundle(t, digest.FromString("other"), keys.Private, true)
			var ob protobundle.Bundle
			if err := protojson.Unmarshal(other, &ob); err != nil {
				t.Fatal(err)
			}
			b.VerificationMaterial.TlogEntries = ob.VerificationMaterial.TlogEntries
		}), required(byKey), "log inclusion"},
	}
	for name, c := range refused {
		t.Run("refuses "+name, func(t *testing.T) {
			_, err := VerifyBundle(c.bundle, manifest, load(t, c.trust))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, c.want)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestVerifyRequiresTlogThroughARegistry: with the log required, a logged bundle stored as a
// referrer verifies (and its kept evidence again, as karmord's cache re-verifies it), while a
// legacy .sig signature of the same key is refused: karmor reads no log entry from that format.
func TestVerifyRequiresTlogThroughARegistry(t *testing.T) {
	sigstore := newVirtualSigstore(t)
	const who, issuer = "release@example.com", "https://issuer.example"
	keys := newTestKeys(t, "k")
	ctx := context.Background()
	reg := registrytest.New(t, registrytest.Options{})

	logged := pushPolicy(t, reg, "team/policies:v1", "p1")
	if _, err := pushBundle(ctx, logged.Repo, logged.Manifest, sigstore.keylessBundle(t, logged.Manifest.Digest, who, issuer, true), time.Now()); err != nil {
		t.Fatal(err)
	}
	trust, err := TrustFiles{Identity: Identity{Subject: who, Issuer: issuer}, TrustedRootFile: sigstore.rootFile, RequireTlog: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(ctx, logged.Repo, logged.Manifest, trust)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err != nil || v.SignedBy != who+" from "+issuer {
		t.Fatalf("logged keyless bundle: signed by %q, %v", v.SignedBy, err)
	}
	if signer, err := VerifyEvidence(v.Evidence, logged.Manifest.Digest, trust); err != nil || signer != v.SignedBy {
		t.Fatalf("kept evidence: signer %q, %v", signer, err)
	}

	legacy := pushPolicy(t, reg, "team/policies:v2", "p2")
	if _, err := Sign(ctx, legacy.Repo, legacy.Manifest, keys.Private, SignOptions{Legacy: true}); err != nil {
		t.Fatal(err)
	}
	keyTrust, err := TrustFiles{KeyFiles: []string{keys.PublicPath}, TrustedRootFile: sigstore.rootFile, RequireTlog: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	v, err = Verify(ctx, legacy.Repo, legacy.Manifest, keyTrust)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err == nil || !strings.Contains(err.Error(), "legacy .sig format") {
		t.Fatalf("legacy signature with the log required: err = %v", err)
	}
	keyTrust.RequireTlog = false
	if v, err := Verify(ctx, legacy.Repo, legacy.Manifest, keyTrust); err != nil || v.Err() != nil {
		t.Fatalf("legacy signature, log optional: %v, %v", err, v.Err())
	}
}

// TestBundleMatchesSigstoreGo: the bundle karmor writes for a key is the one sigstore-go's
// signer (what cosign uses) writes, field for field but the signature (ECDSA signatures are
// randomized), and both verify.
func TestBundleMatchesSigstoreGo(t *testing.T) {
	keys := newTestKeys(t, "k")
	manifest := digest.FromString("policies")
	ours, err := bundleJSON(manifest, keys.Private)
	if err != nil {
		t.Fatal(err)
	}
	theirs := sigstoreBundle(t, manifest, keys.Private, sign.BundleOptions{})
	withoutSignature := func(data []byte) string {
		var b protobundle.Bundle
		if err := protojson.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		if sigs := b.GetDsseEnvelope().GetSignatures(); len(sigs) != 1 || len(sigs[0].Sig) == 0 {
			t.Fatalf("signatures: %v", sigs)
		}
		b.GetDsseEnvelope().Signatures[0].Sig = nil
		out, err := protojson.Marshal(&b)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if a, b := withoutSignature(ours), withoutSignature(theirs); a != b {
		t.Fatalf("karmor's bundle:\n%s\nsigstore-go's:\n%s", a, b)
	}
	trust := &Trust{Keys: []*PublicKey{keys.Public}}
	for name, data := range map[string][]byte{"karmor's": ours, "sigstore-go's": theirs} {
		if _, err := VerifyBundle(data, manifest, trust); err != nil {
			t.Errorf("%s bundle: %v", name, err)
		}
	}
}
