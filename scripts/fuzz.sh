#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 4s): the decoders of untrusted
# input (policy YAML, OCI state and config.json, agent frames, manifests, references, titles,
# caches, configs). `make test` already runs their seed corpora; this explores past them.
# A failure leaves the crashing input under the package's testdata/fuzz for `go test` to replay.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-4s}
count=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "== fuzz $pkg $name ($fuzztime)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime 0 "$pkg"
	count=$((count + 1))
done < <(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' --with-filename . | sed -E 's/^\.\///; s/:func /:/' | sort)
echo "fuzz: $count targets ran for $fuzztime each, no failure"
