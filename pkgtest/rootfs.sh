#!/usr/bin/env bash
# Makes the Debian root the package install test boots with systemd-nspawn:
# a minimal bookworm with systemd as init (debootstrap), made once and kept.
# Usage: pkgtest/rootfs.sh DEST
# Exit 0: DEST is a root with /usr/lib/systemd/systemd. Exit 3: it cannot be
# made here (not root, no debootstrap or systemd-nspawn, no mirror); the
# caller skips and says why.
set -euo pipefail
dest=${1:?usage: pkgtest/rootfs.sh DEST}
if [ -x "$dest/usr/lib/systemd/systemd" ] && [ -f "$dest/.ringfence-rootfs-ok" ]; then
  exit 0
fi
skip() { echo "pkgtest/rootfs.sh: $*" >&2; exit 3; }
[ "$(id -u)" -eq 0 ] || skip "not root: debootstrap and systemd-nspawn need root"
command -v debootstrap >/dev/null || skip "no debootstrap; 'make deps' installs it"
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn; 'make deps' installs systemd-container"
mirror=${RINGFENCE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$dest")"
log="$dest.log"
if ! debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus bookworm "$tmp" "$mirror" >"$log" 2>&1; then
  tail -5 "$log" >&2
  rm -rf "$tmp"
  skip "debootstrap from $mirror failed (log: $log)"
fi
touch "$tmp/.ringfence-rootfs-ok"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "pkgtest/rootfs.sh: Debian bookworm with systemd in $dest"
