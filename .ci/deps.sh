#!/usr/bin/env bash
# Installs the optional system packages the extra test suites use, then
# tuf-js (with npm, into bin/tufjs) for the tuf-js interop test. Each package
# is tried on its own, so one that cannot be had does not stop the others;
# the suites that need a missing one skip with a message.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
pkgs=(
  gcc              # C compiler: the boot-record vectors run against the C loader
  clang-14         # builds the C loader's libFuzzer target (bootguard/c/fuzz_select.c; make fuzz, fuzz-smoke)
  libclang-rt-14-dev  # its -fsanitize=fuzzer,address,undefined runtimes
  qemu-system-x86  # the VM crash-loop test (make test-vm)
  e2fsprogs        # mkfs.ext4 and debugfs for the VM test's state disk
  gcc-12           # the kernel module (kmod/build.sh): the compiler Debian built the VM kernel with
  wine             # the Windows test binaries under Wine (make test-windows)
  wine64
  gcc-mingw-w64-x86-64  # builds the bcryptprimitives.dll stand-in Wine 8 lacks
  chromium         # the dashboard in a headless browser (make test-browser)
  prometheus       # promtool checks the example alert rules (monitoring/)
  rpm              # rpm -qpl / --scripts read the .rpm packages back (dist/)
  wixl             # builds the Windows .msi on Linux (dist/msi)
  msitools         # msiinfo reads the .msi back (dist/msi)
  debootstrap      # the Debian root the .deb is installed into (make test-packages)
  systemd-container  # systemd-nspawn boots it with systemd as PID 1
  postgresql       # a throwaway server (internal/pgtest) for the PostgreSQL store's and the replicas' tests (make test-postgres)
  haproxy          # the load balancer in front of three replicas (make test-postgres)
)
apt_deps() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: not root; install these yourself if missing: ${pkgs[*]}"
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    echo "deps: no apt-get; install these yourself if missing: ${pkgs[*]}"
    return 0
  fi
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && { echo "deps: all present (${pkgs[*]})"; return 0; }
  dpkg --configure -a >/dev/null 2>&1 || true   # an install interrupted earlier blocks apt
  DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
  for p in "${missing[@]}"; do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null 2>&1 \
      && echo "deps: installed $p" || echo "deps: could not install $p (its suite will be skipped)"
  done
}
apt_deps

# tuf-js, the npm TUF client: tufrepo's TestTufJSReadsRepository (make
# test-tufjs) reads a repository with it. npm needs no root.
tufjs="$repo/bin/tufjs"
if [ -d "$tufjs/node_modules/tuf-js" ]; then
  echo "deps: tuf-js already installed in $tufjs"
elif command -v npm >/dev/null && npm install --prefix "$tufjs" --no-audit --no-fund tuf-js@5 >/dev/null 2>&1; then
  echo "deps: installed tuf-js in $tufjs"
else
  echo "deps: could not install tuf-js (the tuf-js interop test will be skipped)"
fi
