// Package oci stores KubeArmor policies in OCI registries and reads them back.
//
// An artifact is an OCI image manifest with an empty JSON config of type
// MediaTypeConfig and one layer per policy file (MediaTypePolicyLayer), titled with
// the file's base name: the format of kubearmor-client's proposal (PR #340), so the
// ORAS CLI and other tools interoperate. Everything that talks to a registry goes
// through oras-go v2.
//
// The user-facing operations are Push, Pull and Inspect. The pieces they are built
// from are exported for karmord's policy source, which polls a reference: NewRepository
// (transport, TLS and credentials), ResolveDigest and FetchPolicySet (every safety
// check on untrusted registry content, in memory).
package oci
