// Package policy holds the end-to-end tests of policies reaching containers: the built karmord
// following a real registry (internal/registrytest, in the test process) or a directory, the
// built karmor CLI pushing policies and showing what applies, and, as root, real runc
// containers reported by the real karmor-hook. The test of `make demo` runs scripts/demo.sh.
package policy
