package signing

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/karmor/karmor/internal/registrytest"
	"github.com/karmor/karmor/internal/testutil"
)

const notationInstallHint = "go build github.com/notaryproject/notation/cmd/notation@v1.3.2 from a throwaway module (.ci/install.d/30-signing.sh)"

// TestNotationCLISignsKarmorVerifies: what the real notation CLI signs, with the test key and
// certificate it generates itself, karmor verifies under that certificate and refuses under
// another CA.
func TestNotationCLISignsKarmorVerifies(t *testing.T) {
	bin := testutil.RequireCommand(t, "notation", notationInstallHint)
	home := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("notation %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("cert", "generate-test", "--default", "karmor.test")
	certPath := filepath.Join(home, "config", "notation", "localkeys", "karmor.test.crt")

	reg := registrytest.New(t, registrytest.Options{})
	art := pushPolicy(t, reg, "team/policies:v1", "p1")
	run("sign", "--insecure-registry", art.Ref.String())

	certs, err := LoadNotationCertificates(certPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Verify(context.Background(), art.Repo, art.Manifest, &Trust{NotationCerts: certs})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Err(); err != nil || v.Format != FormatNotary || !strings.Contains(v.SignedBy, "karmor.test") {
		t.Fatalf("notation CLI signature: %s by %q, %v", v.Format, v.SignedBy, err)
	}
	otherCA, _, _ := notationChain(t, "other")
	v, err = Verify(context.Background(), art.Repo, art.Manifest, &Trust{NotationCerts: append(certs[:0:0], otherCA)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Verified {
		t.Fatal("the notation CLI's signature verified under another CA")
	}
}
