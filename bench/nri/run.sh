#!/usr/bin/env bash
# Pod start time under containerd v2 (crictl runp + create + start, median and p90 over RUNS pods)
# without karmor, with karmor-nri, and with karmor-runc as runc, side by side in one run; then what
# karmor-runc adds to `runc state` (pass-through) and to `runc create` + `delete` (injection).
#
# Usage (as root): bench/nri/run.sh [RUNS]     (default 21; needs containerd v2.4.2, its shim, ctr,
# crictl and runc: see ../../internal/testutil/containerd.go for the install commands)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-21}
export PATH="$(go env GOPATH)/bin:$PATH"
go test -run '^$' -bench . -benchtime "${RUNS}x" -count 1 -timeout 30m ./bench/nri/ | grep --line-buffered -E '^(Benchmark|ok|FAIL|---|    )' | tee /dev/stderr |
  awk '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($i == "ms-median") printf "%-45s median %8s ms\n", $1, $(i-1) }'
