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
      secs=$(sed -n 's/.*elapsed: \([0-9]*\)s.*/\1/p' <<<"$line")
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
echo
echo "fuzz summary (FUZZTIME=$FUZZTIME; minimization bounded by FUZZMINIMIZETIME=$FUZZMINIMIZETIME;"
echo "rates include the start-up of each run; 'min' counts new inputs minimized):"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed; its crasher is under <package>/testdata/fuzz/<Target>/ (logs in fuzz/out/)"
  exit 1
fi
