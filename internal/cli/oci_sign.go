package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/karmor/karmor/internal/oci"
	"github.com/karmor/karmor/internal/signing"
)

// envCosignPassword is where cosign, and so karmor, read a key file's password from.
const envCosignPassword = "COSIGN_PASSWORD"

// signFlags choose a signing key and format (oci sign, oci push --sign-key).
type signFlags struct {
	key    string
	legacy bool
}

func (s *signFlags) add(f *pflag.FlagSet, keyFlag string) {
	f.StringVar(&s.key, keyFlag, "", "private key to sign with: a cosign key file (password from $"+envCosignPassword+", a prompt or stdin) or a PEM private key")
	f.BoolVar(&s.legacy, "legacy-signature", false, "write cosign v2's sha256-<hex>.sig tag format instead of a Sigstore bundle referrer")
}

// loadKey reads the signing key, asking for its password only if it is encrypted.
func (s *signFlags) loadKey(cmd *cobra.Command) (*signing.PrivateKey, error) {
	return signing.LoadPrivateKey(s.key, func() ([]byte, error) { return keyPassword(cmd) })
}

// keyPassword returns $COSIGN_PASSWORD when set (even empty, as cosign does), else asks on the
// terminal, else reads one line from stdin.
func keyPassword(cmd *cobra.Command) ([]byte, error) {
	if pw, ok := os.LookupEnv(envCosignPassword); ok {
		return []byte(pw), nil
	}
	if f, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cmd.ErrOrStderr(), "Enter password for private key: ")
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		return pw, err
	}
	data, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read the key's password from stdin: %w", err)
	}
	return []byte(strings.TrimRight(string(data), "\r\n")), nil
}

// trustFlags say which signatures are trusted (oci verify, oci pull).
type trustFlags struct {
	keys           []string
	identity       string
	identityRegexp string
	issuer         string
	issuerRegexp   string
	trustedRoot    string
	requireTlog    bool
	maxSignatures  int
	notationCerts  []string
}

func (t *trustFlags) add(f *pflag.FlagSet, keyFlag string) {
	f.StringArrayVar(&t.keys, keyFlag, nil, "public key to trust, PEM (repeatable: any one suffices)")
	f.StringVar(&t.identity, "certificate-identity", "", "keyless: the signer's identity (certificate SAN) to trust")
	f.StringVar(&t.identityRegexp, "certificate-identity-regexp", "", "keyless: a regular expression the signer's identity must match")
	f.StringVar(&t.issuer, "certificate-oidc-issuer", "", "keyless: the OIDC issuer that vouched for the identity")
	f.StringVar(&t.issuerRegexp, "certificate-oidc-issuer-regexp", "", "keyless: a regular expression the OIDC issuer must match")
	f.StringVar(&t.trustedRoot, "trusted-root", "", "Sigstore trusted_root.json: certificate authorities and log keys (keyless; nothing is fetched)")
	f.BoolVar(&t.requireTlog, "require-tlog", false, "refuse signatures without a transparency log entry proven against the trusted root")
	f.IntVar(&t.maxSignatures, "max-signatures", signing.DefaultMaxSignatures, "most signatures tried")
	f.StringArrayVar(&t.notationCerts, "notation-cert", nil, "PEM CA certificate notation signatures must chain to (repeatable)")
}

// trust builds the trust the flags describe; nil when none is asked for.
func (t *trustFlags) trust() (*signing.Trust, error) {
	if t.maxSignatures < 1 {
		return nil, usagef("--max-signatures must be at least 1")
	}
	trust, err := signing.TrustFiles{
		KeyFiles:          t.keys,
		Identity:          signing.Identity{Subject: t.identity, SubjectRegexp: t.identityRegexp, Issuer: t.issuer, IssuerRegexp: t.issuerRegexp},
		TrustedRootFile:   t.trustedRoot,
		RequireTlog:       t.requireTlog,
		MaxSignatures:     t.maxSignatures,
		NotationCertFiles: t.notationCerts,
	}.Load()
	if err != nil {
		return nil, usagef("%v", err)
	}
	return trust, nil
}

// verifier adapts a trust to oci.PullOptions.Verify.
func verifier(trust *signing.Trust, report func(*signing.Verification)) func(context.Context, *remote.Repository, ocispec.Descriptor) error {
	return func(ctx context.Context, repo *remote.Repository, manifest ocispec.Descriptor) error {
		v, err := signing.Verify(ctx, repo, manifest, trust)
		if err != nil {
			return err
		}
		if report != nil {
			report(v)
		}
		return v.Err()
	}
}

// --- sign ---

type ociSignFlags struct {
	registryFlags
	signFlags
}

func newOCISignCommand() *cobra.Command {
	o := ociSignFlags{}
	cmd := &cobra.Command{
		Use:   "sign -i REF --key KEY",
		Short: "Sign a policy artifact",
		Long: `Sign the artifact REF names (a tag is resolved to its digest, and the digest is what is
signed). By default the signature is what cosign v3 writes: a Sigstore bundle stored as an
OCI referrer of the artifact (under the tag sha256-<hex> on registries without the referrers
API). --legacy-signature writes cosign v2's sha256-<hex>.sig tag instead. Both verify with
'karmor oci verify' and with cosign.

KEY is a cosign key file ('cosign generate-key-pair'; its password comes from
$COSIGN_PASSWORD, a prompt, or stdin) or a plain PEM private key (ECDSA, RSA, Ed25519).`,
		Example: `  karmor oci sign -i localhost:5000/policies:v1 --key cosign.key
  COSIGN_PASSWORD=... karmor oci sign -i ghcr.io/team/policies:v1 --key cosign.key --legacy-signature`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOCISign(cmd, &o) },
	}
	f := cmd.Flags()
	o.registryFlags.add(f)
	o.signFlags.add(f, "key")
	return cmd
}

func runOCISign(cmd *cobra.Command, o *ociSignFlags) error {
	ref, err := o.parse(cmd)
	if err != nil {
		return err
	}
	if o.key == "" {
		return usagef("--key KEY is required")
	}
	key, err := o.loadKey(cmd)
	if err != nil {
		return err
	}
	ctx, cancel := o.context(cmd)
	defer cancel()
	repo, err := oci.NewRepository(ref, o.transport)
	if err != nil {
		return err
	}
	desc, err := oci.ResolveDigest(ctx, repo, ref)
	if err != nil {
		return err
	}
	signed, err := signing.Sign(ctx, repo, desc, key, signing.SignOptions{Legacy: o.legacy})
	if err != nil {
		return err
	}
	return writeSigned(cmd, o.format, ref.Pinned(desc.Digest), signed)
}

func writeSigned(cmd *cobra.Command, format string, ref oci.Reference, signed *signing.Signed) error {
	if format == "json" {
		return writeJSON(cmd.OutOrStdout(), struct {
			Reference string `json:"reference"`
			*signing.Signed
		}{ref.String(), signed})
	}
	where := "referrer " + signed.Manifest.String()
	if signed.Tag != "" {
		where = "tag " + signed.Tag
	}
	_, err := fmt.Fprintf(cmd.ErrOrStderr(), "Signed %s with key %s (%s signature, %s)\n", ref, signed.Key, signed.Format, where)
	return err
}

// --- verify ---

type ociVerifyFlags struct {
	registryFlags
	trustFlags
}

func newOCIVerifyCommand() *cobra.Command {
	o := ociVerifyFlags{}
	cmd := &cobra.Command{
		Use:   "verify -i REF (--key PUB ... | --certificate-identity ID --certificate-oidc-issuer URL --trusted-root FILE)",
		Short: "Verify the signatures of a policy artifact",
		Long: `Verify that a trusted signer signed the artifact REF names: any one of the --key public keys,
or, keyless, a certificate for the given identity and OIDC issuer chained to the CAs of a
Sigstore trusted root file, or a notation signature chained to a --notation-cert CA. Nothing is fetched besides the registry's content: no TUF, no
transparency log lookups. Referrers (cosign v3 bundles, notation) are tried first, then the
sha256-<hex>.sig tag (cosign v2), at most --max-signatures of them.

Exits 0 and says who signed when one verifies; exits 1 with the reason for each signature
tried when none does.`,
		Example: `  karmor oci verify -i localhost:5000/policies:v1 --key cosign.pub
  karmor oci verify -i ghcr.io/team/policies:v1 --certificate-identity https://github.com/team/policies/.github/workflows/release.yml@refs/heads/main \
      --certificate-oidc-issuer https://token.actions.githubusercontent.com --trusted-root trusted_root.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runOCIVerify(cmd, &o) },
	}
	f := cmd.Flags()
	o.registryFlags.add(f)
	o.trustFlags.add(f, "key")
	return cmd
}

func runOCIVerify(cmd *cobra.Command, o *ociVerifyFlags) error {
	ref, err := o.parse(cmd)
	if err != nil {
		return err
	}
	trust, err := o.trust()
	if err != nil {
		return err
	}
	if trust == nil {
		return usagef("give a --key to trust, --certificate-identity with --certificate-oidc-issuer and --trusted-root, or a --notation-cert")
	}
	ctx, cancel := o.context(cmd)
	defer cancel()
	repo, err := oci.NewRepository(ref, o.transport)
	if err != nil {
		return err
	}
	desc, err := oci.ResolveDigest(ctx, repo, ref)
	if err != nil {
		return err
	}
	v, err := signing.Verify(ctx, repo, desc, trust)
	if err != nil {
		return err
	}
	pinned := ref.Pinned(desc.Digest)
	if o.format == "json" {
		if err := writeJSON(cmd.OutOrStdout(), struct {
			Reference string `json:"reference"`
			*signing.Verification
		}{pinned.String(), v}); err != nil {
			return err
		}
		if !v.Verified {
			return exitError{ExitFailure} // the JSON says why
		}
		return nil
	}
	if err := v.Err(); err != nil {
		return fmt.Errorf("%s: %w", pinned, err)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "Verified %s: %s signature by %s\n", pinned, v.Format, v.SignedBy)
	return err
}
