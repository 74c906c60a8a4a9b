#!/usr/bin/env bash
# A Debian (bookworm, minbase) root filesystem with Python 3 and pip, made with debootstrap from
# Debian's own archive, as a tarball the container-agent tests turn into a base image with buildah
# (no Docker Hub). Cached: the tarball is made once per cache directory, atomically.
# Usage: scripts/debian-base.sh [CACHE_DIR]   (default .cache/debian-base); prints the tarball's path.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${1:-.cache/debian-base}"
out="$cache/rootfs.tar"
[ -s "$out" ] && { echo "$out"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "debian-base: debootstrap needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debian-base: debootstrap missing (scripts/setup-debian.sh)" >&2; exit 1; }
mkdir -p "$cache"
work="$(mktemp -d "$cache/.work.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$work/root" "$mirror" >"$work/log" 2>&1 || { tail -20 "$work/log" >&2; exit 1; }
# Nothing of the build host's apt state or caches in the image.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar --numeric-owner -C "$work/root" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$out"
echo "$out"
