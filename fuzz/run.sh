#!/usr/bin/env bash
# Runs every native Go fuzz target in the module (or the ones named as
# arguments) for $FUZZTIME each, then prints executions per second per
# target. A crasher is written by `go test` to <package>/testdata/fuzz/<Target>/
# and makes this script exit 1: commit it, and it replays in plain `go test`.
#
# Minimization. When an input adds coverage, the engine stops fuzzing and
# minimizes it (up to 60 s per input by default), and its progress line does
# not count those executions. With an empty fuzz cache (a fresh machine, a
# fresh CI runner) the first seconds find many such inputs, and a short run
# can end having "executed" almost nothing. So minimization is always
# bounded, by $FUZZMINIMIZETIME:
#   - a smoke run (make fuzz-smoke, part of make test) bounds it by a count,
#     100x by default: the same work on a slow machine as on a fast one;
#   - a long run (make fuzz) bounds it by time, 10s by default (the Makefile
#     sets it), and says so in the summary.
# The engine is run with GODEBUG=fuzzdebug=1 so the log shows every input
# queued for and done with minimization; a run that executed little while
# inputs were being minimized is reported as minimizing, not as stalled.
#
# The engine's own race. Go 1.26's coordinator can fail a run with a bare
# "context deadline exceeded" at the -fuzztime deadline when a worker is
# mid-call (golang/go#75804, fixed in Go 1.27; seen here on FuzzParse-
# Capabilities with an empty cache). Such a run wrote no failing input, so it
# is run again rather than counted: a run fails only on a failing input (the
# engine says "Failing input written to"), on any other error, or when it is
# still stalled or racing after three attempts.
#
# The C loader. bootguard/c/fuzz_select.c is a libFuzzer target for the C
# reference loader (rfbootrec), named fuzz_select here (TARGETS=fuzz_select
# picks it). It is built with clang (clang-14, else clang, or $CLANG) and
# -fsanitize=fuzzer,address,undefined into fuzz/out/fuzz_select/, seeded with
# testdata/bootrecord/*.bin, and run for the same $FUZZTIME (libFuzzer's
# -max_total_time, in whole seconds; a count, 100x, is -runs=100). The inputs
# it finds are kept in fuzz/out/fuzz_select/corpus for the next run. A
# failing input is written to fuzz/out/fuzz_select/crash-<sha1> (the summary
# names it) and makes this script exit 1. Where clang or its fuzzer runtime
# is missing, the target is not run: one SKIPPED line says so, also appended
# to the file $FUZZ_SKIPPED names, if any (make test repeats it at the end).
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-100x}
GO=${GO:-go}
# Fewer executions than this in a run that was not minimizing is a stall.
MINEXECS=${MINEXECS:-100}
want=" $* "

case $FUZZMINIMIZETIME in
  *[0-9]x | *[0-9]s | *[0-9]m | *[0-9]ms) ;;
  *) echo "fuzz: FUZZMINIMIZETIME=$FUZZMINIMIZETIME: want a count (100x) or a duration (10s)" >&2; exit 2 ;;
esac

# seconds prints a Go duration of whole units (3s, 1m0s, 1h30m, 500ms) in
# whole seconds, rounded up; it fails on anything else.
seconds() {
  local t=$1 secs=0 n
  [ -n "$t" ] || return 1
  while [[ $t =~ ^([0-9]+)(h|ms|m|s)(.*)$ ]]; do
    n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in
      h) secs=$((secs + n * 3600)) ;;
      m) secs=$((secs + n * 60)) ;;
      s) secs=$((secs + n)) ;;
      ms) secs=$((secs + (n + 999) / 1000)) ;;
    esac
    t=${BASH_REMATCH[3]}
  done
  [ -z "$t" ] && echo "$secs"
}

# libfuzzer_budget turns a Go -fuzztime (3s, 5m, 1h30m, or a count: 100x)
# into libFuzzer's flag: -max_total_time in whole seconds (at least 1), or
# -runs for a count.
libfuzzer_budget() {
  local secs
  case $1 in *[0-9]x) echo "-runs=${1%x}"; return 0 ;; esac
  secs=$(seconds "$1") || return 1
  echo "-max_total_time=$((secs > 0 ? secs : 1))"
}

mkdir -p fuzz/out
summary=()
failed=0
# `go test -list` prints each package's matching names, then "ok <pkg>".
while read -r pkg; do
  for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    if [ $# -gt 0 ] && [[ "$want" != *" $target "* ]]; then continue; fi
    log="fuzz/out/${target}.log"
    # A run that barely executed and was not minimizing, or that lost the
    # engine's deadline race, is run again (a stalled one for longer each
    # time: the engine can be slow to start its workers on a busy 2-core
    # machine) before it counts as a failure.
    fuzztime=$FUZZTIME
    for attempt in 1 2 3; do
      echo "== $pkg $target ($fuzztime, minimization bounded by $FUZZMINIMIZETIME)"
      rc=0
      GODEBUG=fuzzdebug=1 $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" \
        -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg" >"$log" 2>&1 || rc=$?
      # Last progress line: "fuzz: elapsed: 3s, execs: 33444 (11148/sec), ..."
      line=$(grep '^fuzz: elapsed:.*execs:' "$log" | tail -n 1)
      execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$line")
      secs=$(seconds "$(sed -n 's/.*elapsed: \([0-9hms]*\),.*/\1/p' <<<"$line")")
      rate="?"
      if [ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then rate=$((execs / secs)); fi
      # Inputs that added coverage, sent for minimization and back from it.
      queued=$(grep -c 'DEBUG queueing input for minimization' "$log")
      minimized=$(grep -c 'DEBUG input minimized' "$log")
      retry=""
      if [ "$rc" -ne 0 ]; then
        # The race, and only the race: the error is the deadline and the
        # log holds nothing but progress, debug and go test's verdict.
        other=$(grep -v -e ' DEBUG ' -e '^fuzz: elapsed:' -e '^warning: starting with empty corpus$' \
          -e '^go: downloading ' -e "^--- FAIL: ${target} ([0-9.]*s)\$" -e '^    context deadline exceeded$' \
          -e '^FAIL$' -e '^exit status 1$' -e '^FAIL	[^ ]*	[0-9.]*s$' "$log")
        if [ -z "$other" ] && grep -q -x '    context deadline exceeded' "$log"; then
          status="FAILED: the engine's deadline race (golang/go#75804) three times; no failing input was written"
          retry="lost the engine's deadline race (golang/go#75804; no failing input written)"
        else
          status=FAILED
          grep -v ' DEBUG ' "$log" | tail -n 30
        fi
      # `go test` can report PASS when FUZZTIME ran out while it was still
      # minimizing a failing input, and the crasher is then lost: that is a
      # failure to look at, not a pass. (Only a crash is announced so.)
      elif grep -q '^fuzz: .*minimizing' "$log"; then
        status="FAILED: ran out of time minimizing a failing input; rerun with a longer FUZZTIME"
      elif [ "${execs:-0}" -lt "$MINEXECS" ] && [ "$queued" -gt 0 ]; then
        # The target ran: its executions went into minimizing new inputs.
        status="ok, but minimizing: $minimized of $queued new inputs minimized, executions while minimizing are not counted"
      elif [ "${execs:-0}" -lt "$MINEXECS" ]; then
        status="FAILED: only ${execs:-0} executions and nothing to minimize; the target is stalled"
        retry="stalled (${execs:-0} executions, nothing minimizing)"
        case $fuzztime in *[0-9]s) fuzztime=$((${fuzztime%s} * 3))s ;; esac
      else
        status=ok
      fi
      if [ -n "$retry" ] && [ "$attempt" -lt 3 ]; then
        echo "   $retry; running it again for $fuzztime"
        continue
      fi
      break
    done
    case $status in FAILED*) failed=1 ;; esac
    summary+=("$(printf '%-24s %-14s %10s execs %8s/s %5s min  %s' "$target" "${pkg#github.com/ringfence/ringfence/}" "${execs:-?}" "$rate" "$minimized" "$status")")
  done
done < <($GO list ./...)

# fuzz_c runs the C loader's libFuzzer target; it sets status, execs, rate
# and crash (the failing input's path, if one was written).
fuzz_c() {
  local dir=fuzz/out/fuzz_select cc="" missing="" budget rc line p
  local cflags=(-std=c99 -Wall -Wextra -Werror -pedantic -g -O1
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all)
  status="" execs="" rate="?" crash=""
  if [ -n "${CLANG:-}" ]; then cc=$CLANG
  elif command -v clang-14 >/dev/null; then cc=clang-14
  elif command -v clang >/dev/null; then cc=clang
  fi
  mkdir -p "$dir"
  if [ -z "$cc" ]; then
    missing="no clang-14 or clang on PATH"
  elif ! command -v "$cc" >/dev/null; then
    missing="CLANG=$cc is not found"
  else
    # A bare target shows whether the fuzzer and sanitizer runtimes link.
    printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$dir/probe.c"
    if ! "$cc" -fsanitize=fuzzer,address,undefined -o "$dir/probe" "$dir/probe.c" >"$dir/probe.log" 2>&1; then
      missing="$cc cannot link -fsanitize=fuzzer,address,undefined (no libFuzzer runtime; $dir/probe.log says why)"
    fi
  fi
  if [ -n "$missing" ]; then
    line="SKIPPED: C loader libFuzzer target: $missing; install clang-14 libclang-rt-14-dev (make deps)"
    echo "$line"
    if [ -n "${FUZZ_SKIPPED:-}" ]; then mkdir -p "$(dirname "$FUZZ_SKIPPED")" && echo "$line" >>"$FUZZ_SKIPPED"; fi
    status="not run: $missing"
    return 0
  fi
  if ! budget=$(libfuzzer_budget "$FUZZTIME"); then
    status="FAILED: FUZZTIME=$FUZZTIME: want a duration (3s, 5m, 1h30m) or a count (100x)"
    return 0
  fi
  echo "== bootguard/c fuzz_select ($cc, libFuzzer $budget)"
  if ! "$cc" "${cflags[@]}" -o "$dir/fuzz_select" bootguard/c/fuzz_select.c bootguard/c/rfbootrec.c >"$dir/build.log" 2>&1; then
    cat "$dir/build.log"
    status="FAILED: the target does not build ($dir/build.log)"
    return 0
  fi
  rm -rf "$dir/seeds"
  mkdir -p "$dir/corpus" "$dir/seeds"
  cp testdata/bootrecord/*.bin "$dir/seeds/"
  # New inputs go to the first corpus directory; the seeds are read only.
  # The loader reads at most 1024 bytes of a record file.
  rc=0
  "$dir/fuzz_select" "$budget" -max_len=1024 -print_final_stats=1 \
    -artifact_prefix="$dir/" "$dir/corpus" "$dir/seeds" >fuzz/out/fuzz_select.log 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' fuzz/out/fuzz_select.log | tail -n 1)
  p=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' fuzz/out/fuzz_select.log | tail -n 1)
  [ -z "$p" ] || rate=$p
  crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' fuzz/out/fuzz_select.log | tail -n 1)
  if [ "$rc" -ne 0 ]; then
    grep -v '^#[0-9]' fuzz/out/fuzz_select.log | tail -n 30
    status="FAILED (exit $rc)"
  elif [ "${execs:-0}" -lt "$MINEXECS" ]; then
    status="FAILED: only ${execs:-0} executions; the target is stalled"
  else
    status=ok
  fi
}

cfailed=0
if [ $# -eq 0 ] || [[ "$want" == *" fuzz_select "* ]]; then
  fuzz_c
  case $status in FAILED*) cfailed=1 ;; esac
  summary+=("$(printf '%-24s %-14s %10s execs %8s/s %5s min  %s' fuzz_select "bootguard/c" "${execs:-?}" "$rate" - "$status")")
fi
echo
echo "fuzz summary (FUZZTIME=$FUZZTIME; minimization bounded by FUZZMINIMIZETIME=$FUZZMINIMIZETIME;"
echo "rates include the start-up of each run; 'min' counts new inputs minimized):"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed; its crasher is under <package>/testdata/fuzz/<Target>/ (logs in fuzz/out/)"
fi
if [ "$cfailed" -ne 0 ]; then
  if [ -n "$crash" ]; then
    echo "fuzz: the C loader's target fuzz_select failed; the failing input is $crash (replay: fuzz/out/fuzz_select/fuzz_select $crash; log in fuzz/out/fuzz_select.log)"
  else
    echo "fuzz: the C loader's target fuzz_select failed (log in fuzz/out/fuzz_select.log)"
  fi
fi
if [ "$failed" -ne 0 ] || [ "$cfailed" -ne 0 ]; then
  exit 1
fi
