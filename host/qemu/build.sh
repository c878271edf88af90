#!/usr/bin/env bash
# Builds qemu-system-ppc64 from Debian's QEMU source with the spapr-virtio-vio
# device (host/qemu/spapr_virtio_vio.c) added, and caches the binary outside
# the checkout:
#
#   ${VIOBOOT_CACHE:-$HOME/.cache/vioboot}/qemu-<key>/bin/qemu-system-ppc64
#
# <key> = first 16 hex digits of sha256 over this script, every build input in
# host/qemu/ (*.c, *.patch), the Debian source version of the installed
# qemu-system-ppc package and the dpkg architecture.  A cached binary is
# reported at once; otherwise the build takes 3-4 minutes on 2 cores.  Only
# the stripped binary and build.log are kept; after a failed build the tree
# stays in <cache>/qemu-<key>/work/ until the next attempt wipes it.
#
# The LAST line of stdout is the binary's path; everything else goes to
# stderr or to <cache>/qemu-<key>/build.log.  Needs root (or sudo) for apt.
# Concurrent runs for the same key wait on <cache>/qemu-<key>.lock (flock).
#
# Run the binary with `-L /usr/share/qemu -vga none`: its firmware (SLOF,
# VOF) comes from Debian's qemu-system-ppc package, which this script
# installs, and Debian's VGA BIOS is not installed.  Protocol and device:
# docs/vio-socket.md; check with host/qemu/selftest.py.
#
# Environment: VIOBOOT_CACHE (cache root), VIOBOOT_JOBS (ninja -j, default
# nproc), VIOBOOT_KEEP_WORK=1 (keep the source/build tree after a build).
set -euo pipefail

# The whole script is one compound command, so bash has parsed all of it
# before it runs: editing this file during a build cannot derail that build.
{
exec 3>&1 1>&2          # stdout is reserved for the final path

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${VIOBOOT_CACHE:-$HOME/.cache/vioboot}"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=(false)        # apt steps will fail with a clear message
fi

apt_updated=0
apt_update() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        "${SUDO[@]}" apt-get update -q >&2 || die "apt-get update failed"
        apt_updated=1
    fi
}

# apt_install PKG...: installs those not yet installed (one update on failure).
apt_install() {
    local missing=() p
    for p in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != *"ok installed"* ]]; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "apt-get install ${missing[*]}"
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
        apt_update
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
}

# --- key ------------------------------------------------------------------
# The installed qemu-system-ppc provides the firmware the binary runs with,
# and names the Debian source version we build from.
apt_install qemu-system-ppc
src_version="$(dpkg-query -W -f='${source:Version}' qemu-system-ppc)"
[ -n "$src_version" ] || die "cannot read the source version of qemu-system-ppc"
arch="$(dpkg --print-architecture)"

inputs=("$here/build.sh")
shopt -s nullglob
for f in "$here"/*.c "$here"/*.patch; do
    inputs+=("$f")
done
shopt -u nullglob

key="$(
    for f in "${inputs[@]}"; do
        printf '== %s\n' "$(basename "$f")"
        cat "$f"
    done
    printf 'debian-source-version=%s\narch=%s\n' "$src_version" "$arch"
)"
key="$(printf '%s' "$key" | sha256sum | cut -c1-16)"

out_dir="$cache_root/qemu-$key"
bin="$out_dir/bin/qemu-system-ppc64"

if [ -x "$bin" ]; then
    echo "$bin" >&3
    exit 0
fi

# --- lock, then check again -------------------------------------------------
mkdir -p "$cache_root"
exec 9>"$cache_root/qemu-$key.lock"
if ! flock -n 9; then
    log "another build of qemu-$key is running; waiting for it"
    flock 9
fi
if [ -x "$bin" ]; then
    echo "$bin" >&3
    exit 0
fi

mkdir -p "$out_dir"
build_log="$out_dir/build.log"
: >"$build_log"
log "building qemu-$key (Debian source $src_version); log: $build_log"
start=$(date +%s)

# --- deb-src ----------------------------------------------------------------
has_deb_src() {
    grep -Eqs '^[[:space:]]*Types:.*\bdeb-src\b' /etc/apt/sources.list.d/*.sources \
        || grep -Eqs '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list
}

if ! has_deb_src; then
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        # Same stanzas as the binary ones, with Types: deb-src.
        log "adding /etc/apt/sources.list.d/vioboot-src.sources"
        sed -E 's/^[[:space:]]*Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/vioboot-src.sources >/dev/null
    elif grep -Eqs '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list; then
        log "adding /etc/apt/sources.list.d/vioboot-src.list"
        grep -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list \
            | sed -E 's/^([[:space:]]*)deb[[:space:]]/\1deb-src /' \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/vioboot-src.list >/dev/null
    else
        die "no Debian apt source found to derive a deb-src line from"
    fi
    apt_update
fi
# (no `| grep -q` under pipefail: an early exit of grep fails the pipe)
if ! grep -q '^Version:' <<<"$(apt-cache showsrc qemu 2>/dev/null || true)"; then
    apt_update
fi

# --- build dependencies ---------------------------------------------------------
# (QEMU 7.2's configure makes no Python venv; device-tree-compiler is for
# selftest.py and for looking at `-M pseries,dumpdtb=FILE` output.)
apt_install dpkg-dev xz-utils patch gcc libc6-dev binutils make pkg-config \
    python3 ninja-build meson libglib2.0-dev zlib1g-dev libpixman-1-dev \
    libfdt-dev device-tree-compiler

# --- source -----------------------------------------------------------------
work="$out_dir/work"
rm -rf "$work"
mkdir -p "$work"
log "apt-get source qemu=$src_version"
if ! (cd "$work" && apt-get source -q "qemu=$src_version") >>"$build_log" 2>&1; then
    # The archive may have moved on past the installed version.
    log "warning: qemu=$src_version is not fetchable; using the candidate source"
    rm -rf "$work" && mkdir -p "$work"
    (cd "$work" && apt-get source -q qemu) >>"$build_log" 2>&1 \
        || die "apt-get source qemu failed (see $build_log)"
fi
src=""
for d in "$work"/qemu-*/; do
    [ -f "$d/configure" ] && src="${d%/}"
done
[ -n "$src" ] || die "no extracted QEMU source under $work"
grep -h '^Version:' "$work"/*.dsc | sed 's/^/build.sh: fetched /' >&2

# --- add the device ---------------------------------------------------------
shopt -s nullglob
for p in "$here"/*.patch; do
    log "applying $(basename "$p")"
    patch -d "$src" -p1 <"$p" >>"$build_log" 2>&1 || die "patch $p failed"
done
shopt -u nullglob
cp "$here/spapr_virtio_vio.c" "$src/hw/ppc/spapr_virtio_vio.c"
meson_build="$src/hw/ppc/meson.build"
grep -q "^hw_arch += {'ppc': ppc_ss}" "$meson_build" \
    || die "unexpected $meson_build: no hw_arch line to insert before"
sed -i "/^hw_arch += {'ppc': ppc_ss}/i\\
# vioboot: virtio over VIO transport device\\
ppc_ss.add(when: 'CONFIG_PSERIES', if_true: files('spapr_virtio_vio.c'))\\
" "$meson_build"

# --- configure and build ----------------------------------------------------
mkdir -p "$src/build"
log "configure"
(cd "$src/build" && ../configure \
    --target-list=ppc64-softmmu \
    --disable-docs --disable-tools --disable-user \
    --without-default-features \
    --enable-fdt=system \
    --enable-tpm) >>"$build_log" 2>&1 \
    || { tail -n 30 "$build_log" >&2; die "configure failed (see $build_log)"; }

jobs="${VIOBOOT_JOBS:-$(nproc)}"
log "ninja -j$jobs qemu-system-ppc64 (several minutes)"
(cd "$src/build" && ninja -j"$jobs" qemu-system-ppc64) >>"$build_log" 2>&1 \
    || { tail -n 40 "$build_log" >&2; die "build failed (see $build_log)"; }

grep -q '"spapr-virtio-vio"' <<<"$("$src/build/qemu-system-ppc64" -device help 2>&1 || true)" \
    || die "the built binary does not list the spapr-virtio-vio device"
# The vTPM tests (tests/vtpm.rs) need QEMU's tpm-spapr device and its emulator backend.
grep -q '"tpm-spapr"' <<<"$("$src/build/qemu-system-ppc64" -device help 2>&1 || true)" \
    || die "the built binary does not list the tpm-spapr device"

# --- install ----------------------------------------------------------------
mkdir -p "$out_dir/bin"
install -m 0755 "$src/build/qemu-system-ppc64" "$out_dir/bin/.qemu-system-ppc64.tmp"
strip "$out_dir/bin/.qemu-system-ppc64.tmp" 2>>"$build_log" || true
mv -f "$out_dir/bin/.qemu-system-ppc64.tmp" "$bin"

if [ "${VIOBOOT_KEEP_WORK:-0}" != 1 ]; then
    rm -rf "$work"
fi
log "built in $(( $(date +%s) - start )) s: $bin"
echo "$bin" >&3
exit 0
}
