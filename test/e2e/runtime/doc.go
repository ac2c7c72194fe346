// Package runtime holds karmor's end-to-end tests with real runtimes that run hooks: runc (hooks
// in the bundle's config.json, put there by `karmor hook inject`) and Podman (a hooks.d directory
// written by `karmor hook install`), with the real karmor-hook and the real karmord. They run as
// root and skip loudly otherwise.
package runtime
