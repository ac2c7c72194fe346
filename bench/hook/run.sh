#!/bin/sh
# Measure karmor-hook's cost to a container start (run as root; needs runc and busybox-static).
#
#   bench/hook/run.sh [LATENCY_RUNS] [RUNC_RUNS]
#
# Builds karmor-hook and karmord, starts karmord on a private socket, spool and state directory
# (reconciling only a private runc root), then runs hookbench: the hook binary's latency with
# karmord up and down, and the median `runc run` of `sh -c true` with and without the hook.
set -eu
cd "$(dirname "$0")/../.."
latency_runs=${1:-300}
runc_runs=${2:-30}
# The work dir (spool included) lives under /var/lib, beside karmor's default spool
# (/var/lib/karmor/spool): on these machines creating a file anywhere under /tmp costs ~0.8 ms
# against ~0.05 ms under /var/lib or /run (measured; same ext4 filesystem, cause not found), which
# would measure /tmp, not the hook.
work=$(mktemp -d "${KARMOR_BENCH_DIR:-/var/lib}/karmor-hookbench.XXXXXX")
karmord_pid=
cleanup() {
	if [ -n "$karmord_pid" ]; then kill "$karmord_pid" 2>/dev/null || true; wait "$karmord_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

CGO_ENABLED=0 go build -o "$work/bin/karmor-hook" ./cmd/karmor-hook
CGO_ENABLED=0 go build -o "$work/bin/karmord" ./cmd/karmord
go build -o "$work/bin/hookbench" ./bench/hook/hookbench

sock="$work/run/karmor.sock"
"$work/bin/karmord" --socket "$sock" --spool-dir "$work/spool-runc" --state-dir "$work/state" \
	--runtime-root "$work/runc-root" --log-level warn 2>"$work/karmord.log" &
karmord_pid=$!
i=0
until [ -S "$sock" ]; do
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then echo "karmord did not start:" >&2; cat "$work/karmord.log" >&2; exit 1; fi
	sleep 0.05
done

echo "karmor-hook $(stat -c %s "$work/bin/karmor-hook") bytes; $(nproc) cores; $(uname -r); runc $(runc --version | head -1 | awk '{print $3}')"
"$work/bin/hookbench" -hook "$work/bin/karmor-hook" -socket "$sock" -work-dir "$work" \
	-latency-runs "$latency_runs" -runc-runs "$runc_runs"
