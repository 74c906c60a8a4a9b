#!/usr/bin/env bash
# Debian packages the test suite drives as real components, installed idempotently with apt-get
# when missing (as root; otherwise it says which are missing and the tests needing them fail with
# that name):
#   skopeo           copies images into Berth's registry and the external one (container agents)
#   buildah          builds the test images from a Dockerfile, offline
#   docker-registry  the separate Distribution registry (with auth) Berth pulls from
#   debootstrap      makes the Debian base image, cached between runs
#   apache2-utils    htpasswd, for that registry's basic auth
#   busybox-static   a static shell and tools: the base layer of the image-root sandbox tests
#   postgresql-15    initdb/postgres for the store conformance suite's throwaway cluster (crates/pgtest)
set -euo pipefail

packages=(skopeo buildah docker-registry debootstrap apache2-utils busybox-static postgresql-15)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && { echo "setup-debian: all present"; exit 0; }
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-debian: missing ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
    exit 0
fi
echo "setup-debian: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
# Debian's docker-registry package starts a system service on port 5000; the tests run their own.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
# Debian's postgresql package starts a cluster on port 5432 as a system service; the tests start
# their own throwaway cluster in a temp dir, so nothing of Debian's needs to run.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
fi
