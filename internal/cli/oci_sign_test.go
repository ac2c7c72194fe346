package cli

import (
	"crypto/elliptic"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/karmor/karmor/internal/registrytest"
)

// writeKeyPair writes a cosign-style encrypted key pair (password pw) and returns the paths.
func writeKeyPair(t *testing.T, name, pw string) (string, string) {
	t.Helper()
	priv, pub, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc([]byte(pw)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privPath, pubPath := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(privPath, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestOCISignVerifyPull: push --sign-key signs what it pushed; verify and pull --verify-key
// accept it and say who signed; an unsigned tag and a wrong key are refused with exit 1, and
// a refused pull writes nothing.
func TestOCISignVerifyPull(t *testing.T) {
	isolateOCI(t)
	reg := registrytest.New(t, registrytest.Options{})
	src := t.TempDir()
	files := writePolicies(t, src, "a")
	key, pub := writeKeyPair(t, "release", "s3cret")
	_, otherPub := writeKeyPair(t, "other", "x")
	t.Setenv(envCosignPassword, "s3cret")
	signedRef := reg.Host + "/team/policies:signed"
	unsignedRef := reg.Host + "/team/policies:unsigned"

	if code, _, stderr := ociCLI(t, "", "oci", "push", "--plain-http", "-i", signedRef, "-f", files[0], "--sign-key", key); code != 0 || !strings.Contains(stderr, "Signed ") {
		t.Fatalf("push --sign-key: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := ociCLI(t, "", "oci", "push", "--plain-http", "-i", unsignedRef, "-f", files[0], "--annotation", "x=y"); code != 0 {
		t.Fatalf("push: exit %d\n%s", code, stderr)
	}
	// A legacy signature added by oci sign sits beside the bundle.
	if code, _, stderr := ociCLI(t, "", "oci", "sign", "--plain-http", "-i", signedRef, "--key", key, "--legacy-signature"); code != 0 {
		t.Fatalf("sign --legacy-signature: exit %d\n%s", code, stderr)
	}

	code, stdout, stderr := ociCLI(t, "", "oci", "verify", "--plain-http", "-i", signedRef, "--key", otherPub, "--key", pub)
	if code != 0 || !strings.Contains(stdout, "Verified "+signedRef+"@sha256:") || !strings.Contains(stdout, "release.pub") {
		t.Fatalf("verify: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = ociCLI(t, "", "oci", "verify", "--plain-http", "-i", signedRef, "--key", otherPub, "--format", "json")
	var v struct {
		Verified   bool
		Signatures []struct{ Format, Error string }
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil || code != 1 || v.Verified || len(v.Signatures) != 2 {
		t.Fatalf("verify with a wrong key, json: exit %d, %v\n%s", code, err, stdout)
	}
	for _, s := range v.Signatures {
		if s.Error == "" {
			t.Errorf("a refused %s signature has no reason", s.Format)
		}
	}
	code, _, stderr = ociCLI(t, "", "oci", "verify", "--plain-http", "-i", unsignedRef, "--key", pub)
	if code != 1 || !strings.Contains(stderr, "has no signature") {
		t.Fatalf("verify unsigned: exit %d\n%s", code, stderr)
	}

	out := filepath.Join(t.TempDir(), "out")
	code, _, stderr = ociCLI(t, "", "oci", "pull", "--plain-http", "-i", unsignedRef, "-o", out, "--verify-key", pub)
	if code != 1 || !strings.Contains(stderr, "nothing was written") || len(dirEntries(t, out)) != 0 {
		t.Fatalf("pull of an unsigned artifact: exit %d, wrote %v\n%s", code, dirEntries(t, out), stderr)
	}
	code, _, stderr = ociCLI(t, "", "oci", "pull", "--plain-http", "-i", signedRef, "-o", out, "--verify-key", otherPub)
	if code != 1 || len(dirEntries(t, out)) != 0 {
		t.Fatalf("pull with a wrong key: exit %d, wrote %v\n%s", code, dirEntries(t, out), stderr)
	}
	code, _, stderr = ociCLI(t, "", "oci", "pull", "--plain-http", "-i", signedRef, "-o", out, "--verify-key", pub)
	if code != 0 || !strings.Contains(stderr, "signature by key release.pub") || len(dirEntries(t, out)) != 1 {
		t.Fatalf("pull of the signed artifact: exit %d, wrote %v\n%s", code, dirEntries(t, out), stderr)
	}

	// Usage: identities need a trusted root; a wrong password fails before anything is pushed.
	if code, _, stderr := ociCLI(t, "", "oci", "verify", "--plain-http", "-i", signedRef, "--certificate-identity", "a@b", "--certificate-oidc-issuer", "https://i"); code != 2 {
		t.Errorf("identity without --trusted-root: exit %d\n%s", code, stderr)
	}
	t.Setenv(envCosignPassword, "wrong")
	if code, _, _ := ociCLI(t, "", "oci", "push", "--plain-http", "-i", reg.Host+"/team/never:v1", "-f", files[0], "--sign-key", key); code != 1 {
		t.Errorf("push with a wrong key password: exit %d", code)
	}
	if code, _, _ := ociCLI(t, "", "oci", "verify", "--plain-http", "-i", reg.Host+"/team/never:v1", "--key", pub); code != 1 {
		t.Error("push with a wrong key password pushed the artifact")
	}
}
