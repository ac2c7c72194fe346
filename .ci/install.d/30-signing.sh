#!/usr/bin/env bash
# The cosign and notation CLIs for the signing interop tests (internal/signing: cosign signs and
# karmor verifies, karmor signs and cosign verifies, both formats; notation signs and karmor
# verifies). Built with the Go module proxy into $(go env GOPATH)/bin, which .ci/run puts on PATH;
# a tool already there at the wanted version is not built again.
set -euo pipefail
COSIGN_VERSION=v3.1.3
NOTATION_VERSION=v1.3.2
bin="$(go env GOPATH)/bin"
mkdir -p "$bin"

retry() {
	local attempt
	for attempt in 1 2 3; do
		"$@" && return 0
		echo "30-signing: '$*' failed (attempt $attempt of 3)" >&2
		sleep $((attempt * 5))
	done
	return 1
}

if [ -x "$bin/cosign" ] && "$bin/cosign" version 2>/dev/null | grep -q "GitVersion: *$COSIGN_VERSION\$"; then
	echo "30-signing: cosign $COSIGN_VERSION already in $bin"
else
	retry env CGO_ENABLED=0 go install "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION"
fi

# `go install notation@version` is refused (the proxy does not list the module's versions), so it
# is built from a throwaway module that requires that exact version.
if [ -x "$bin/notation" ] && "$bin/notation" version 2>/dev/null | grep -q "Version: *$NOTATION_VERSION"; then
	echo "30-signing: notation $NOTATION_VERSION already in $bin"
else
	work=/var/cache/karmor-signing/notation-build
	[ -w /var/cache ] || work="${TMPDIR:-/tmp}/karmor-notation-build"
	rm -rf "$work" && mkdir -p "$work"
	(cd "$work" && go mod init throwaway/notation >/dev/null 2>&1 &&
		retry env GOFLAGS=-mod=mod go get "github.com/notaryproject/notation@$NOTATION_VERSION" &&
		retry env CGO_ENABLED=0 GOFLAGS=-mod=mod go build -o "$bin/notation" github.com/notaryproject/notation/cmd/notation)
fi
