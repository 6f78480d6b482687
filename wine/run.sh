#!/usr/bin/env bash
# Runs the Windows builds of the test binaries under Wine: the platform code
# (MoveFileEx durable renames, LockFileEx, the job-object memory limit of
# preflight, paths under C:\ProgramData, the service's event-log handler)
# on Windows semantics. Usage: wine/run.sh [PKG...]
# Exit 3 when Wine or mingw-w64 is missing (the caller says SKIPPED).
# WINE_TEST_ARGS adds flags to every test binary (e.g. -test.run=TestX).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
pkgs=("$@")
[ ${#pkgs[@]} -eq 0 ] && pkgs=(./internal/testtmp ./internal/atomicfile ./internal/filelock ./bootguard ./hostdb ./installer ./loader ./validator ./hostconfig ./telemetry ./cmd/ringfenced)

WINE=$(command -v wine64 || command -v wine || true)
if [ -z "$WINE" ] || ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
  echo "SKIPPED the Windows tests under Wine (need wine and x86_64-w64-mingw32-gcc); 'make deps' installs wine and gcc-mingw-w64-x86-64"
  exit 3
fi
out=$PWD/bin/wine
export WINEPREFIX=$PWD/bin/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" DISPLAY=
mkdir -p "$out"

# Go 1.22+ needs bcryptprimitives.dll (ProcessPrng), which Wine 8 lacks.
dll=$out/bcryptprimitives.dll
if [ ! -f "$dll" ] || [ wine/bcryptprimitives.c -nt "$dll" ]; then
  x86_64-w64-mingw32-gcc -O2 -shared -o "$dll" wine/bcryptprimitives.c wine/bcryptprimitives.def -ladvapi32 || exit 1
fi
if [ ! -d "$WINEPREFIX/drive_c/windows/system32" ]; then
  start=$(date +%s)
  timeout 300 "$WINE" wineboot -i >/dev/null 2>&1
  echo "wine: prefix created in $(( $(date +%s) - start ))s"
fi
cp -f "$dll" "$WINEPREFIX/drive_c/windows/system32/"

failed=()
for pkg in "${pkgs[@]}"; do
  name=$(echo "${pkg#./}" | tr '/' '-')
  exe=$out/$name.test.exe
  if ! GOOS=windows GOARCH=amd64 $GO test -c -o "$exe" "$pkg"; then
    failed+=("$pkg (build)"); continue
  fi
  [ -f "$exe" ] || { echo "wine: $pkg has no tests"; continue; }
  start=$(date +%s)
  log=$out/$name.log
  # shellcheck disable=SC2086
  (cd "$pkg" && timeout 600 "$WINE" "$exe" -test.count=1 -test.v ${WINE_TEST_ARGS:-}) >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  passed=$(grep -c -- '^--- PASS' "$log" || true)
  skipped=$(grep -c -- '--- SKIP' "$log" || true)
  if [ $rc -eq 0 ] && grep -q '^PASS$' "$log"; then
    echo "wine: ok   $pkg (${took}s, $passed passed, $skipped skipped)"
  else
    echo "wine: FAIL $pkg (${took}s, exit $rc); last lines of $log:"
    grep -E -- '--- FAIL|Error|panic|FAIL' "$log" | head -20 | sed 's/^/    /'
    failed+=("$pkg")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "wine: failed: ${failed[*]}"
  exit 1
fi
echo "wine: all packages passed under $($WINE --version 2>/dev/null)"
