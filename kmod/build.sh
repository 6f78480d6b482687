#!/usr/bin/env bash
# Builds the reference kernel agent (kmod/rfguard.ko) for the kernel the VM
# test boots, against Debian's headers for exactly that kernel:
# linux-headers-<release> (the flavour's config and Module.symvers), the
# -common tree it includes, and linux-kbuild-<major.minor> (the build
# scripts), fetched with `apt-get download` and unpacked with dpkg-deb, never
# installed. Usage: kmod/build.sh KERNEL-TREE OUT-DIR
#   KERNEL-TREE  the unpacked linux-image package (vmtest/kernel.sh makes it);
#                its lib/modules/<release> names the headers to fetch
#   OUT-DIR      receives rfguard.ko (and keeps the headers for the next run)
# The module is built with gcc-12 (Debian 12's kernel compiler, so the
# vermagic matches) and -Werror.
# Exit 0: OUT-DIR/rfguard.ko is built. Exit 3: the headers or the compiler
# cannot be had here; the caller skips and says why. Anything else: the
# module does not build, which is a failure.
set -euo pipefail
ktree=${1:?usage: kmod/build.sh KERNEL-TREE OUT-DIR}
out=${2:?usage: kmod/build.sh KERNEL-TREE OUT-DIR}
src=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out" && out=$(cd "$out" && pwd)
skip() { echo "kmod/build.sh: $*" >&2; exit 3; }

mods=("$ktree"/lib/modules/*)
[ ${#mods[@]} -eq 1 ] && [ -d "${mods[0]}" ] || skip "$ktree holds no single lib/modules/<release> (run vmtest/kernel.sh first)"
rel=$(basename "${mods[0]}")                   # 6.1.0-57-amd64
abi=${rel%-*}                                  # 6.1.0-57
mm=$(echo "$rel" | cut -d. -f1,2)              # 6.1
cc=${KMOD_CC:-gcc-12}
command -v "$cc" >/dev/null || skip "no $cc, the compiler Debian built $rel with; 'make deps' installs gcc-12"
command -v make >/dev/null || skip "no make"

hdr=$out/headers/$rel
if [ ! -f "$hdr/.ready" ] || ! grep -q "^include $hdr/" "$hdr/usr/src/linux-headers-$rel/Makefile"; then
  command -v dpkg-deb >/dev/null || skip "no dpkg-deb to unpack Debian's kernel headers"
  command -v apt-get >/dev/null || skip "no apt-get to download linux-headers-$rel"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$tmp" && apt-get download -qq "linux-headers-$rel" "linux-headers-$abi-common" "linux-kbuild-$mm" >/dev/null 2>&1 ) \
    || skip "could not download linux-headers-$rel, linux-headers-$abi-common and linux-kbuild-$mm (no network to the Debian mirror, or 'apt-get update' needed)"
  rm -rf "$hdr"
  mkdir -p "$hdr"
  for d in "$tmp"/*.deb; do dpkg-deb -x "$d" "$hdr"; done
  # The flavour's Makefile includes the -common tree by its installed path
  # (/usr/src/...): point it at the unpacked one. Its scripts and tools are
  # relative links into the unpacked linux-kbuild, which resolve as they are.
  sed -i "s|^include /usr/src/|include $hdr/usr/src/|" "$hdr/usr/src/linux-headers-$rel/Makefile"
  touch "$hdr/.ready"
fi
kdir=$hdr/usr/src/linux-headers-$rel

# Build in a copy of kmod/ (Kbuild writes its objects beside the sources);
# the shared C sources are not copied: kmod/*.c include them from
# bootguard/c and sensor/c by path, so the kernel compiles those very files.
work=$out/build
rm -rf "$work"
mkdir -p "$work"
cp -r "$src"/Kbuild "$src"/*.c "$src"/include "$work"/
make -s -C "$kdir" M="$work" CC="$cc" RFSRC="$(dirname "$src")" modules 2>&1 | tee "$work/build.log" | grep -v "Skipping BTF generation" >&2 || true
[ -f "$work/rfguard.ko" ] || { echo "kmod/build.sh: the module did not build (log: $work/build.log)" >&2; exit 1; }
if grep -q "warning:" "$work/build.log"; then
  echo "kmod/build.sh: the build printed warnings (log: $work/build.log)" >&2; exit 1
fi
cp "$work/rfguard.ko" "$out/rfguard.ko"
echo "kmod/build.sh: $out/rfguard.ko built for $rel ($(modinfo -F vermagic "$out/rfguard.ko" 2>/dev/null || echo "vermagic unknown"))"
