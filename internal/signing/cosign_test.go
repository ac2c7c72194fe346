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

const cosignInstallHint = "go install github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3"

// cosign runs the real cosign CLI offline: its home and TUF cache are the test's, and nothing
// it does may need the network (no transparency log upload, no signing config from TUF).
type cosign struct {
	bin, dir, password string
}

func newCosign(t *testing.T) cosign {
	t.Helper()
	c := cosign{bin: testutil.RequireCommand(t, "cosign", cosignInstallHint), dir: t.TempDir(), password: "cosign-pw"}
	c.run(t, "generate-key-pair")
	return c
}

func (c cosign) key() string { return filepath.Join(c.dir, "cosign.key") }
func (c cosign) pub() string { return filepath.Join(c.dir, "cosign.pub") }

func (c cosign) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+c.password, "HOME="+c.dir, "TUF_ROOT="+filepath.Join(c.dir, "tuf"),
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=true")
	return cmd
}

func (c cosign) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.cmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// cosignFormat is the flag that chooses cosign's signature format.
func cosignFormat(legacy bool) string {
	if legacy {
		return "--new-bundle-format=false"
	}
	return "--new-bundle-format=true"
}

// TestCosignSignsKarmorVerifies: what cosign v3 signs with its own key file, in either format,
// karmor verifies with cosign.pub, and refuses with another key.
func TestCosignSignsKarmorVerifies(t *testing.T) {
	c := newCosign(t)
	for _, legacy := range []bool{false, true} {
		t.Run(cosignFormat(legacy), func(t *testing.T) {
			reg := registrytest.New(t, registrytest.Options{})
			art := pushPolicy(t, reg, "team/policies:v1", "p1")
			c.run(t, "sign", "--key", c.key(), "--yes", "--allow-http-registry", "--tlog-upload=false", "--use-signing-config=false",
				cosignFormat(legacy), art.Ref.String())
			pub, err := LoadPublicKey(c.pub())
			if err != nil {
				t.Fatal(err)
			}
			v, err := Verify(context.Background(), art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{pub}})
			if err != nil {
				t.Fatal(err)
			}
			want := FormatBundle
			if legacy {
				want = FormatLegacy
			}
			if err := v.Err(); err != nil || v.Format != want {
				t.Fatalf("cosign's %s signature: format %s, %v", want, v.Format, err)
			}
			v, err = Verify(context.Background(), art.Repo, art.Manifest, &Trust{Keys: []*PublicKey{newTestKeys(t, "other").Public}})
			if err != nil {
				t.Fatal(err)
			}
			if v.Verified {
				t.Fatal("cosign's signature verified with another key")
			}
		})
	}
}

// TestKarmorSignsCosignVerifies: what karmor signs with a cosign key file (encrypted, password
// as cosign takes it), in either format, `cosign verify` accepts; an unsigned artifact it refuses.
func TestKarmorSignsCosignVerifies(t *testing.T) {
	c := newCosign(t)
	key, err := LoadPrivateKey(c.key(), func() ([]byte, error) { return []byte(c.password), nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, legacy := range []bool{false, true} {
		t.Run(cosignFormat(legacy), func(t *testing.T) {
			reg := registrytest.New(t, registrytest.Options{})
			art := pushPolicy(t, reg, "team/policies:v1", "p1")
			unsigned := pushPolicy(t, reg, "team/policies:v2", "p2")
			if _, err := Sign(context.Background(), art.Repo, art.Manifest, key, SignOptions{Legacy: legacy}); err != nil {
				t.Fatal(err)
			}
			verify := func(ref string) ([]byte, error) {
				return c.cmd("verify", "--key", c.pub(), "--insecure-ignore-tlog", "--allow-http-registry", cosignFormat(legacy), ref).CombinedOutput()
			}
			if out, err := verify(art.Ref.String()); err != nil {
				t.Fatalf("cosign verify of karmor's signature: %v\n%s", err, out)
			}
			if out, err := verify(unsigned.Ref.String()); err == nil {
				t.Fatalf("cosign verified an unsigned artifact:\n%s", out)
			}
		})
	}
}
