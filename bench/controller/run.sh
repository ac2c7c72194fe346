#!/usr/bin/env bash
# karmor-controller at cluster scale, with real parts only: a real kube-apiserver + etcd
# (testutil.StartKubeAPI, binaries from .ci/install.d/60-kube-apiserver.sh) holding KubeArmor's
# CRDs and ours, a real registry (distribution/v3 in process) counting what it serves, the real
# karmor-controller binary and `karmor oci push`:
#
#   1. propagation: INFORMERS client-go informers on KubeArmorPolicy, each with its own connection
#      (the nodes' KubeArmor); ROUNDS pushes of a new version; the time from the start of the push
#      until every informer holds it, p50/p99. The PolicySource polls every INTERVAL, so the
#      figures include up to one INTERVAL of waiting for the next check.
#   2. apply/prune: a PolicySource created on an artifact of POLICIES policies, until all exist;
#      its ref moved to an artifact without them, until they are gone (3 rounds).
#   3. registry load: 10 PolicySources polling unchanged artifacts every INTERVAL for 10
#      intervals; the registry's request counts per PolicySource per interval.
#
# Usage: bench/controller/run.sh [ROUNDS=12] [INFORMERS=200] [INTERVAL=1s] [POLICIES=1000]
#   Extra flags for the controller's client-side limits: KUBE_API_QPS (50), KUBE_API_BURST (100).
#   Prints the machine's load before and after; the benchmark lines (and their logs) to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-12}
INFORMERS=${2:-200}
INTERVAL=${3:-1s}
POLICIES=${4:-1000}
QPS=${KUBE_API_QPS:-50}
BURST=${KUBE_API_BURST:-100}
export PATH="$(go env GOPATH)/bin:$PATH"

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before; commit $(git rev-parse --short HEAD)"
common=(-args -interval "$INTERVAL" -informers "$INFORMERS" -policies "$POLICIES" -kube-api-qps "$QPS" -kube-api-burst "$BURST")
run() { # BENCH ROUNDS
  go test ./bench/controller/ -run '^$' -bench "^$1\$" -benchtime "$2x" -count 1 -timeout 60m -v "${common[@]}" |
    grep -E '^(Benchmark|ok|FAIL|---|    )'
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) after $1"
}
run BenchmarkPropagation "$ROUNDS"
run BenchmarkApplyPrune 3
run BenchmarkRegistryLoad 1
