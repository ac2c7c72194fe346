// Package containerd holds karmor's end-to-end tests with real runtimes that have no hooks.d:
// containerd v2 with karmor-nri, containerd with karmor-runc as its runc, and karmor-runc alone.
// They run as root with containerd, crictl and runc installed (see ../../../internal/testutil)
// and skip loudly otherwise.
package containerd
