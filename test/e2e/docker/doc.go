// Package docker is karmor's end-to-end test with Docker itself: Debian's docker.io dockerd,
// started by the test on private paths, running every container through karmor-runc (registered
// by `karmor hook install --runtime docker` as its default-runtime), the real karmor-hook and the
// real karmord reading dockerd's records for names and labels. It runs as root and skips loudly
// otherwise (fails under KARMOR_TEST_REQUIRE_ALL=1).
package docker
