// Package oci holds the end-to-end tests of `karmor oci push/pull/inspect`: they run the
// built karmor binary with the exact commands against real registries served in
// the test process (internal/registrytest), and check exit codes, output and files.
package oci
