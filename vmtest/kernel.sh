#!/usr/bin/env bash
# Fetches and extracts the kernel the VM test boots: Debian's linux-image
# package for amd64 (the unsigned build when there is one), unpacked with
# dpkg-deb, never installed. Usage: vmtest/kernel.sh DEST
# Exit 0: DEST holds boot/vmlinuz-* and lib/modules/*. Exit 3: no kernel could
# be had here (no apt, no package lists, no network); the caller skips.
# RINGFENCE_VM_KERNEL_DEB=FILE.deb uses a package you downloaded yourself.
set -euo pipefail
dest=${1:?usage: vmtest/kernel.sh DEST}
if compgen -G "$dest/boot/vmlinuz-*" >/dev/null && [ -d "$dest/lib/modules" ]; then
  exit 0
fi
skip() { echo "vmtest/kernel.sh: $*" >&2; exit 3; }
command -v dpkg-deb >/dev/null || skip "no dpkg-deb to unpack a Debian kernel package"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deb=${RINGFENCE_VM_KERNEL_DEB:-}
if [ -z "$deb" ]; then
  command -v apt-get >/dev/null || skip "no apt-get to download linux-image-amd64; set RINGFENCE_VM_KERNEL_DEB"
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || skip "apt knows no linux-image-amd64 (run 'apt-get update' as root, or set RINGFENCE_VM_KERNEL_DEB)"
  # The -unsigned package holds the same kernel without the Secure Boot
  # signature; either boots under QEMU's direct kernel boot.
  ( cd "$tmp" && { apt-get download -qq "${pkg%-unsigned}-unsigned" >/dev/null 2>&1 || apt-get download -qq "$pkg" >/dev/null 2>&1; } ) \
    || skip "could not download $pkg (no network to the Debian mirror?)"
  deb=$(ls "$tmp"/*.deb)
fi
mkdir -p "$tmp/x"
dpkg-deb -x "$deb" "$tmp/x"
compgen -G "$tmp/x/boot/vmlinuz-*" >/dev/null || skip "$deb holds no boot/vmlinuz-*"
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/x/boot" "$tmp/x/lib" "$dest/"
echo "vmtest/kernel.sh: $(basename "$deb") unpacked into $dest"
