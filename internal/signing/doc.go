// Package signing signs policy artifacts and verifies their signatures, offline.
//
// Two formats are written and read, the two cosign writes:
//
//   - a Sigstore bundle (v0.3): a DSSE envelope around an in-toto statement whose subject
//     is the artifact's manifest digest and whose predicate type is cosign's sign predicate,
//     stored as an OCI 1.1 referrer of the artifact (cosign v3's default). On registries
//     without the referrers API (distribution v3) oras-go keeps the referrers index at the
//     tag sha256-<hex>, as the OCI spec's fallback says.
//   - cosign v2's "simple signing" payloads, each a layer of the manifest tagged
//     sha256-<hex>.sig (--legacy-signature).
//
// Verification trusts public keys, or certificate identities chained to a Sigstore trusted
// root read from a file: nothing is fetched besides the registry's own content, no TUF and no
// transparency log at run time. Everything read from the registry is untrusted: sizes are
// bounded before anything is read, and the number of signatures tried is capped.
//
// Registry traffic goes through oras-go (internal/oci); cryptography and bundle handling
// through sigstore-go, not the cosign packages.
package signing
