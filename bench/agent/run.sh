#!/bin/sh
# Measure karmord's memory under container churn, this tree's karmord against BASE's, in one run
# (run as root).
#
#   bench/agent/run.sh [CONTAINERS=2000] [BASE=cc76a58] [VIA=hook]
#
# Builds karmord and karmor-hook from this tree and from BASE (a commit, checked out in a
# temporary worktree; the default is main before the list/watch and ring fixes of issue 12), then for each runs agentchurn: a karmord on a private socket, spool,
# state and runtime root; its RSS idle; CONTAINERS containers with 240 KiB of annotations each
# started and stopped, 3 live at a time, through the real karmor-hook (VIA=hook) or the hook's
# protocol in process (VIA=socket); its RSS right after and 10 s later.
set -eu
cd "$(dirname "$0")/../.."
containers=${1:-2000}
base=${2:-cc76a58}
via=${3:-hook}
# Under /var/lib like the hook benchmark: creating files under /tmp costs more on these machines.
work=$(mktemp -d "${KARMOR_BENCH_DIR:-/var/lib}/karmor-agentbench.XXXXXX")
cleanup() {
	git worktree remove --force "$work/base-src" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

git worktree add --detach --quiet "$work/base-src" "$base"
base_rev=$(git -C "$work/base-src" rev-parse --short HEAD)
this_rev=$(git rev-parse --short HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then this_rev="$this_rev+changes"; fi
(cd "$work/base-src" && CGO_ENABLED=0 go build -o "$work/base/" ./cmd/karmord ./cmd/karmor-hook)
CGO_ENABLED=0 go build -o "$work/this/" ./cmd/karmord ./cmd/karmor-hook
go build -o "$work/agentchurn" ./bench/agent/agentchurn

echo "karmord RSS, $containers containers with 240 KiB of annotations started and stopped (3 live), via $via; $(nproc) cores; $(uname -r)"
echo "  base = $base ($base_rev), this = $this_rev"
for side in base this; do
	"$work/agentchurn" -name "$side" -karmord "$work/$side/karmord" -hook "$work/$side/karmor-hook" -work-dir "$work" \
		-containers "$containers" -live 3 -annotation-kib 240 -via "$via"
done
