package agent

import (
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/karmor/karmor/internal/signing"
)

// TestPolicyTrust: a reference given keys of its own trusts those alone, others the global
// trust; malformed pairs and references no --policy-ref follows are refused.
func TestPolicyTrust(t *testing.T) {
	dir := t.TempDir()
	writePub := func(name string) string {
		_, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pub, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	global, teamB := writePub("global.pub"), writePub("b.pub")

	trust, perRef, err := PolicyTrust(signing.TrustFiles{KeyFiles: []string{global}}, []string{"r.example/b:prod=" + teamB})
	if err != nil {
		t.Fatal(err)
	}
	if len(trust.Keys) != 1 || trust.Keys[0].Name != "global.pub" {
		t.Fatalf("global trust = %+v", trust.Keys)
	}
	if b := perRef["r.example/b:prod"]; b == nil || len(b.Keys) != 1 || b.Keys[0].Name != "b.pub" || len(perRef) != 1 {
		t.Fatalf("per-reference trust = %+v", perRef)
	}

	for _, bad := range []string{"r.example/b:prod", "=" + teamB, "r.example/b:prod=" + filepath.Join(dir, "missing.pub")} {
		if _, _, err := PolicyTrust(signing.TrustFiles{}, []string{bad}); err == nil {
			t.Errorf("--policy-ref-verify-key %q accepted", bad)
		}
	}

	_, err = newPolicyManager(Config{PolicyRefs: []string{"r.example/a:prod"}, PolicyRefTrust: perRef, StateDir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "no --policy-ref follows") {
		t.Fatalf("trust for an unfollowed reference: %v", err)
	}
}
