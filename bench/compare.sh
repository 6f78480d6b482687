#!/usr/bin/env bash
# Compares a benchmark of the code as it is with the same benchmark of an
# earlier commit, in one run on one machine: both test binaries are built
# first, then run in turns (base, head, base, head, ...) so that whatever
# else the machine does weighs on both alike. Prints every round's value of
# the chosen metric and the ratio head/base of the medians.
#
# Usage: bench/compare.sh BASE PKG BENCH [METRIC] [ROUNDS] [BENCHTIME]
#   BASE       a commit (e.g. HEAD~3, or the commit before a change)
#   PKG        the package (./server)
#   BENCH      the benchmark's regexp (BenchmarkTelemetryIngest)
#   METRIC     the reported unit to compare (events/s; default ns/op)
#   ROUNDS     turns each (default 5)
#   BENCHTIME  -benchtime (default 1s)
# make bench-compare BASE=... PKG=... BENCH=... METRIC=... runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/compare.sh BASE PKG BENCH [METRIC] [ROUNDS] [BENCHTIME]}
pkg=${2:?give the package, e.g. ./server}
bench=${3:?give the benchmark regexp}
metric=${4:-ns/op}
rounds=${5:-5}
benchtime=${6:-1s}
GO=${GO:-go}
work=$(mktemp -d /tmp/ringfence-benchcmp.XXXXXX)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach -q "$work/base" "$base"
(cd "$work/base" && $GO test -c -o "$work/base.test" "$pkg")
$GO test -c -o "$work/head.test" "$pkg"
value() { # the metric's value in a benchmark's output
  awk -v m="$metric" '/^Benchmark/ { for (i = 3; i <= NF; i++) if ($i == m) print $(i-1) }' | tail -n 1
}
# Each side runs in its own tree: a benchmark that builds a helper binary
# from a relative path (the daemon's build ../cmd/ringfenced) gets that
# side's.
declare -A dir=([base]="$work/base/$pkg" [head]="$(cd "$pkg" && pwd)")
declare -a bv hv
for r in $(seq 1 "$rounds"); do
  for side in base head; do
    out=$(cd "${dir[$side]}" && "$work/$side.test" -test.run '^$' -test.bench "$bench" -test.benchtime "$benchtime" 2>&1) ||
      { echo "$out"; echo "benchcmp: the $side benchmark failed"; exit 1; }
    v=$(value <<<"$out")
    [ -n "$v" ] || { echo "$out"; echo "benchcmp: no $metric in the $side output"; exit 1; }
    if [ "$side" = base ]; then bv+=("$v"); else hv+=("$v"); fi
    printf 'round %d %-4s %s %s\n' "$r" "$side" "$v" "$metric"
  done
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mb=$(median "${bv[@]}")
mh=$(median "${hv[@]}")
printf '%s %s: base (%s) median %s, head median %s, head/base %.3f\n' "$pkg" "$bench" "$(git rev-parse --short "$base")" "$mb" "$mh" \
  "$(awk -v h="$mh" -v b="$mb" 'BEGIN {print h/b}')"
