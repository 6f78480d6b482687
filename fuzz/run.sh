#!/usr/bin/env bash
# Runs every native Go fuzz target in the module (or the ones named as
# arguments) for $FUZZTIME each, then prints executions per second per
# target. A crasher is written by `go test` to <package>/testdata/fuzz/<Target>/
# and makes this script exit 1: commit it, and it replays in plain `go test`.
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-3s}
GO=${GO:-go}
want=" $* "
mkdir -p fuzz/out
summary=()
failed=0
# `go test -list` prints each package's matching names, then "ok <pkg>".
while read -r pkg; do
  for target in $($GO test -list '^Fuzz' "$pkg" | grep '^Fuzz'); do
    if [ $# -gt 0 ] && [[ "$want" != *" $target "* ]]; then continue; fi
    log="fuzz/out/${target}.log"
    # The Go fuzzing engine sometimes stalls its workers for seconds at
    # start-up (observed with Go 1.26 on 2 cores, twice in a row on a busy
    # CI machine): a run that barely executed is run again, for longer each
    # time, before it counts as a failure.
    fuzztime=$FUZZTIME
    for attempt in 1 2 3; do
      echo "== $pkg $target ($fuzztime)"
      if $GO test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$log" 2>&1; then
        status=ok
      else
        status=FAILED
        failed=1
        tail -n 30 "$log"
      fi
      # Last progress line: "fuzz: elapsed: 3s, execs: 33444 (11148/sec), ..."
      line=$(grep 'fuzz: elapsed:' "$log" | tail -n 1)
      execs=$(sed -n 's/.*execs: \([0-9]*\).*/\1/p' <<<"$line")
      secs=$(sed -n 's/.*elapsed: \([0-9]*\)s.*/\1/p' <<<"$line")
      rate="?"
      if [ -n "$execs" ] && [ -n "$secs" ] && [ "$secs" -gt 0 ]; then rate=$((execs / secs)); fi
      # `go test` can report PASS when FUZZTIME ran out while it was still
      # minimizing a failing input, and the crasher is then lost: that is a
      # failure to look at, not a pass.
      if [ "$status" = ok ] && grep -q 'minimizing' "$log"; then
        status="FAILED: ran out of time minimizing a failing input; rerun with a longer FUZZTIME"
        failed=1
      elif [ "$status" = ok ] && [ "${execs:-0}" -lt 100 ]; then
        status="FAILED: only ${execs:-0} executions; the target is stalled"
        if [ "$attempt" -lt 3 ]; then
          case $fuzztime in *[0-9]s) fuzztime=$(( ${fuzztime%s} * 3 ))s ;; esac
          echo "   stalled (${execs:-0} executions); running it again for $fuzztime"
          continue
        fi
        failed=1
      fi
      break
    done
    summary+=("$(printf '%-28s %-44s %10s execs %8s/s  %s' "$target" "${pkg#github.com/ringfence/ringfence/}" "${execs:-?}" "$rate" "$status")")
  done
done < <($GO list ./...)
echo
echo "fuzz summary (FUZZTIME=$FUZZTIME; rates include the start-up of each run):"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed; its crasher is under <package>/testdata/fuzz/<Target>/ (logs in fuzz/out/)"
  exit 1
fi
