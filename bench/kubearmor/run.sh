#!/bin/sh
# Measure what feeding KubeArmor costs container starts, and how long a resync takes (run as root;
# needs runc, busybox-static and KubeArmor built by scripts/kubearmor-vm/prepare.sh).
#
#   bench/kubearmor/run.sh [RUNC_RUNS] [RESYNC_ROUNDS]
#
# 1. `runc run` of `sh -c true` with karmor-hook reporting to a karmord alone vs to a karmord that
#    feeds a ka.sock, interleaved in the same run (bench/hook's hookbench); the issue's bar is a
#    median ratio <= 1.01. Two feeds: to kalisten, a stand-in that answers at no cost (karmord's
#    own cost), and to the real KubeArmor (which also spends CPU on each container it is told of,
#    competing with runc on the same cores).
# 2. BenchmarkResync1000: a resync of 1,000 containers to our ka.sock listener and to the real
#    KubeArmor (bar: under 1 s to a listener).
set -eu
cd "$(dirname "$0")/../.."
runc_runs=${1:-40}
resync_rounds=${2:-3}
env_file=/var/cache/karmor-kubearmor/env
if [ -z "${KARMOR_KUBEARMOR_BIN:-}" ] && [ -r "$env_file" ]; then
	# shellcheck disable=SC1090
	. "$env_file"
fi
if [ -z "${KARMOR_KUBEARMOR_BIN:-}" ] || [ -z "${KARMOR_KUBEARMOR_BPF_DIR:-}" ]; then
	echo "KubeArmor not built: run scripts/kubearmor-vm/prepare.sh as root first" >&2
	exit 1
fi
# Under /var/lib, not /tmp: see bench/hook/README.md (file creation under /tmp is slow here).
work=$(mktemp -d "${KARMOR_BENCH_DIR:-/var/lib}/karmor-kabench.XXXXXX")
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

CGO_ENABLED=0 go build -o "$work/bin/karmor-hook" ./cmd/karmor-hook
CGO_ENABLED=0 go build -o "$work/bin/karmord" ./cmd/karmord
go build -o "$work/bin/hookbench" ./bench/hook/hookbench
go build -o "$work/bin/kalisten" ./bench/kubearmor/kalisten
"$work/bin/kalisten" "$work/kalisten/ka.sock" >"$work/kalisten.log" 2>&1 &
pids="$pids $!"

# KubeArmor looks for BPF/ beside its binary or in $PWD/../BPF.
mkdir -p "$work/ka/run"
ln -s "$KARMOR_KUBEARMOR_BPF_DIR" "$work/ka/BPF"
(cd "$work/ka/run" && exec "$KARMOR_KUBEARMOR_BIN" -k8s=false -useOCIHooks=true -lsm=bpf \
	-logPath="$work/ka/alerts.jsonl" >"$work/ka/kubearmor.log" 2>&1) &
pids="$pids $!"

start_karmord() { # name, extra flags...
	name=$1
	shift
	"$work/bin/karmord" --socket "$work/$name/karmor.sock" --spool-dir "$work/$name/spool" --state-dir "$work/$name/state" \
		--runtime-root "$work/runc-root" --log-level warn "$@" 2>"$work/$name.log" &
	pids="$pids $!"
}
connected() { # metrics address: the feed has a KubeArmor and is in sync
	curl -sf "http://$1/metrics" 2>/dev/null | grep -q '^karmor_kubearmor_connected 1'
}
start_karmord alone
start_karmord listener --kubearmor-socket "$work/kalisten/ka.sock" --metrics-addr 127.0.0.1:19121
start_karmord kubearmor --kubearmor-socket /var/run/kubearmor/ka.sock --metrics-addr 127.0.0.1:19122
i=0
until [ -S "$work/alone/karmor.sock" ] && connected 127.0.0.1:19121 && connected 127.0.0.1:19122; do
	i=$((i + 1))
	if [ "$i" -gt 600 ]; then
		echo "karmord or KubeArmor did not start:" >&2
		tail -20 "$work"/*.log "$work/ka/kubearmor.log" >&2
		exit 1
	fi
	sleep 0.1
done

echo "$(nproc) cores; $(uname -r); runc $(runc --version | head -1 | awk '{print $3}'); KubeArmor $KARMOR_KUBEARMOR_BIN"
"$work/bin/hookbench" -hook "$work/bin/karmor-hook" -socket "$work/alone/karmor.sock" -work-dir "$work" \
	-latency-runs 0 -runc-runs "$runc_runs" \
	-runc-case "hook, karmord alone=$work/alone/karmor.sock" \
	-runc-case "hook, karmord feeding kalisten=$work/listener/karmor.sock" \
	-runc-case "hook, karmord feeding KubeArmor=$work/kubearmor/karmor.sock"
added=$(grep -c "Detected a container (added/hookbench" "$work/ka/kubearmor.log" || true)
echo "KubeArmor was told of $added of the benchmark's containers"
if [ "$added" -lt "$runc_runs" ]; then
	echo "the feed did not reach KubeArmor: the comparison is void" >&2
	tail -20 "$work/kubearmor.log" >&2
	exit 1
fi
for p in $pids; do kill "$p" 2>/dev/null || true; done
for p in $pids; do wait "$p" 2>/dev/null || true; done
pids=
cat "$work/kalisten.log"

echo "resync of 1,000 containers ($resync_rounds rounds each)"
go test -run '^$' -bench 'Resync1000' -benchtime "${resync_rounds}x" ./internal/kubearmor | grep -E '^Benchmark|^ok|FAIL'
