#!/usr/bin/env bash
# Fetches what the benchmark's peers need besides Debian's kernel and busybox: GNU dd from
# Debian's coreutils and the C library it links (the Linux peer), and GRUB's powerpc-ieee1275
# modules (the GRUB peer) (foreign-architecture packages, downloaded and unpacked, never installed) into ${VIOBOOT_CACHE:-~/.cache/vioboot}/debian-ppc64el-peer and prints that
# folder. busybox's dd cannot be the peer: it falls back to buffered reads when O_DIRECT refuses
# its unaligned buffer, and it prints no timing. Cached: instant once fetched.
set -euo pipefail
cache="${VIOBOOT_CACHE:-$HOME/.cache/vioboot}/debian-ppc64el-peer"
mkdir -p "$cache"
exec 9>"$cache.lock"
flock 9
if [ ! -x "$cache/root/bin/dd" ] || [ ! -e "$cache/root/lib64/ld64.so.2" ] ||
   [ ! -e "$cache/root/usr/lib/grub/powerpc-ieee1275/ext2.mod" ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx ppc64el; then
    dpkg --add-architecture ppc64el
    apt-get update -qq >/dev/null 2>&1 || true
  fi
  rm -rf "$cache/debs" "$cache/root"
  mkdir -p "$cache/debs" "$cache/root"
  chmod 777 "$cache/debs"
  (cd "$cache/debs" && apt-get download coreutils:ppc64el libc6:ppc64el grub-ieee1275-bin:ppc64el >&2)
  for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$cache/root"; done
  rm -rf "$cache/debs"
fi
echo "$cache/root"
