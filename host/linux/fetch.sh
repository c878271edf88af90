#!/usr/bin/env bash
# Fetches Debian's ppc64le kernel and static busybox (foreign-architecture packages, downloaded
# and unpacked, never installed) into ${VIOBOOT_CACHE:-~/.cache/vioboot}/debian-ppc64el and
# prints two lines: the vmlinux path and the busybox path. Cached: instant once fetched.
set -euo pipefail
cache="${VIOBOOT_CACHE:-$HOME/.cache/vioboot}/debian-ppc64el"
mkdir -p "$cache"
exec 9>"$cache.lock"
flock 9
if ! ls "$cache"/root/boot/vmlinux-* >/dev/null 2>&1 || [ ! -x "$cache/root/bin/busybox" ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg --print-foreign-architectures | grep -qx ppc64el; then
    dpkg --add-architecture ppc64el
  fi
  # A mirror in mid-sync may fail one index; what it has is enough.
  apt-get update -qq >/dev/null 2>&1 || true
  kernel=$(apt-cache search --names-only '^linux-image-[0-9].*-powerpc64le$' | cut -d' ' -f1 | sort -V | tail -n 1)
  [ -n "$kernel" ] || { echo "fetch.sh: no linux-image-*-powerpc64le package found" >&2; exit 1; }
  rm -rf "$cache/debs" "$cache/root"
  mkdir -p "$cache/debs" "$cache/root"
  chmod 777 "$cache/debs"
  (cd "$cache/debs" && apt-get download "$kernel:ppc64el" busybox-static:ppc64el >&2)
  for d in "$cache"/debs/*.deb; do dpkg-deb -x "$d" "$cache/root"; done
  rm -rf "$cache/debs"
fi
ls "$cache"/root/boot/vmlinux-* | sort -V | tail -n 1
echo "$cache/root/bin/busybox"
