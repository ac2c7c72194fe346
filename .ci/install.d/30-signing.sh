#!/usr/bin/env bash
# The cosign CLI for the signing interop tests (internal/signing: cosign signs and karmor
# verifies, karmor signs and cosign verifies, both signature formats). Built with the Go module
# proxy into $(go env GOPATH)/bin, which .ci/run puts on PATH; skipped when that version is there.
set -euo pipefail
COSIGN_VERSION=v3.1.3
bin="$(go env GOPATH)/bin"
if [ -x "$bin/cosign" ] && "$bin/cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
	echo "30-signing: cosign $COSIGN_VERSION already in $bin"
	exit 0
fi
for attempt in 1 2 3; do
	CGO_ENABLED=0 go install "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION" && exit 0
	echo "30-signing: go install cosign failed (attempt $attempt of 3)" >&2
	sleep $((attempt * 5))
done
exit 1
