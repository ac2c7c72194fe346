#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 4s): the decoders of untrusted
# input (policy YAML, OCI state and config.json, agent frames, manifests, references, titles,
# caches, configs). `make test` already runs their seed corpora; this explores past them.
# A failure leaves the crashing input under the package's testdata/fuzz for `go test` to replay.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-4s}
# fuzz_once runs one target; its output is kept to tell a finding from the fuzzing engine's own
# failure. On a loaded machine Go's coordinator sometimes gives up on a slow worker as the time
# runs out and reports only "context deadline exceeded": no input failed and none is written.
# That one failure is retried once; anything else (a failing input is always written under
# testdata/fuzz and named in the output) fails the run at once.
fuzz_once() {
	local out
	out=$(mktemp)
	if go test -run '^$' -fuzz "^${2}\$" -fuzztime "$fuzztime" -fuzzminimizetime 0 "$1" 2>&1 | tee "$out"; then
		rm -f "$out"
		return 0
	fi
	if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
		rm -f "$out"
		return 3
	fi
	rm -f "$out"
	return 1
}
count=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "== fuzz $pkg $name ($fuzztime)"
	rc=0
	fuzz_once "$pkg" "$name" || rc=$?
	if [ "$rc" = 3 ]; then
		echo "== fuzz $pkg $name: the fuzzing engine timed out a worker (no failing input); once more"
		rc=0
		fuzz_once "$pkg" "$name" || rc=$?
	fi
	[ "$rc" = 0 ] || exit 1
	count=$((count + 1))
done < <(grep -rhoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' --with-filename . | sed -E 's/^\.\///; s/:func /:/' | sort)
echo "fuzz: $count targets ran for $fuzztime each, no failure"
