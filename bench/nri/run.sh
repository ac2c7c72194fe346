#!/usr/bin/env bash
# Pod start time under containerd v2 (crictl runp + create + start) without karmor, with
# karmor-nri, and with karmor-runc as runc, beside an A/A control (without-again: a second
# containerd like without-karmor, to show the noise floor); then what karmor-runc adds to
# `runc state` (pass-through) and to `runc create` + `delete` (injection). The set-ups of each
# comparison run interleaved, round by round (pod 1 of each, pod 2 of each, ...; warm-up rounds
# dropped), so they share the machine's drift; see measureInterleaved in interleave_test.go.
#
# Per set-up it prints the median and p90 over the rounds, the median relative to the first
# set-up, and the median of the per-round paired differences to the first set-up with a
# distribution-free 95% confidence interval for it: the figure to quote, since pairing cancels
# drift common to a round (an interval that contains 0 means no difference was shown).
#
# Usage (as root): bench/nri/run.sh [ROUNDS]
#   ROUNDS defaults to 48 (about a minute and a half): a multiple of 24 runs every order of the
#   four pod-start set-ups equally often. Needs containerd v2.4.2, its shim, ctr, crictl and runc
#   (see ../../internal/testutil/containerd.go for the install commands). The raw benchmark lines
#   (benchstat input) go to stderr, the table to stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-48}
export PATH="$(go env GOPATH)/bin:$PATH"
go test -run '^$' -bench . -benchtime "${ROUNDS}x" -count 1 -timeout 30m ./bench/nri/ |
  grep --line-buffered -E '^(Benchmark|ok|FAIL|---|    )' | tee /dev/stderr |
  awk '
    /^Benchmark/ {
      name = $1; sub(/-[0-9]+$/, "", name)
      # go test prints the metrics sorted by unit: the baseline is the set-up without a ratio
      # to itself, listed first; the others follow in that sorted order.
      n = 0; warm = "?"; base = ""; delete metric; delete seen; delete arms
      for (i = 3; i < NF; i += 2) {
        if ($(i+1) == "warm-up-rounds") { warm = $i; continue }
        split($(i+1), part, ":")
        if (!(part[1] in seen)) { seen[part[1]] = 1; arms[++n] = part[1] }
        metric[part[1], part[2]] = $i
      }
      for (a = 1; a <= n; a++) if (!((arms[a], "median-ratio") in metric)) base = arms[a]
      if (base == "") next
      k = 1; order[1] = base
      for (a = 1; a <= n; a++) if (arms[a] != base) order[++k] = arms[a]
      for (a = 1; a <= n; a++) arms[a] = order[a]
      printf "\n%s: %d interleaved rounds after %d warm-up rounds\n", name, $2, warm
      printf "  %-16s %11s %11s %13s   %s\n", "set-up", "median", "p90", "median ratio", "paired diff to " arms[1] ": median [95% interval]"
      for (a = 1; a <= n; a++) {
        arm = arms[a]
        printf "  %-16s %8.2f ms %8.2f ms", arm, metric[arm, "ms-median"], metric[arm, "ms-p90"]
        if (a == 1) { printf " %13.3f   %s\n", 1, "(baseline)"; continue }
        ci = "(too few rounds for a 95% interval)"
        if ((arm, "ms-paired-diff-ci95-low") in metric)
          ci = sprintf("[%+.2f, %+.2f]", metric[arm, "ms-paired-diff-ci95-low"], metric[arm, "ms-paired-diff-ci95-high"])
        printf " %13.3f   %+8.2f ms %s\n", metric[arm, "median-ratio"], metric[arm, "ms-paired-diff-median"], ci
      }
    }'
