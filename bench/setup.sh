#!/usr/bin/env bash
# Installs what bench/run.sh needs beyond the Rust toolchain, idempotently and without stdin:
#   - nginx (Debian's nginx-light), the reference proxy;
#   - the repository's Python venv (.venv: boto3 + bedrock-agentcore), via scripts/setup-python.sh;
#   - the memory embedder B6 seeds and queries with (.cache/models), via scripts/fetch-model.sh;
#   - oha, the established open-loop HTTP load generator, built from crates.io into bench/.tools
#     (skipped with BENCH_SKIP_OHA=1; the harness then uses berth-bench for every figure).
# Needs root (or sudo) for apt-get when nginx is missing.
set -euo pipefail

bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$bench")"
OHA_VERSION=1.16.0

say() { echo "bench/setup: $*"; }
die() { echo "bench/setup: $*" >&2; exit 1; }

nginx_bin() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

if [ -n "$(nginx_bin)" ]; then
    say "nginx present: $("$(nginx_bin)" -v 2>&1)"
else
    command -v apt-get >/dev/null 2>&1 || die "nginx is missing and apt-get is not available: install nginx yourself"
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing nginx needs root: run as root or install sudo"
        sudo="sudo -n"
    fi
    export DEBIAN_FRONTEND=noninteractive
    say "installing nginx-light"
    # A stale package list is the usual reason an install fails on a fresh machine.
    if ! $sudo apt-get install -y -q --no-install-recommends nginx-light </dev/null; then
        $sudo apt-get update -q </dev/null
        $sudo apt-get install -y -q --no-install-recommends nginx-light </dev/null
    fi
    [ -n "$(nginx_bin)" ] || die "nginx-light installed but no nginx binary found"
fi

"$repo/scripts/setup-python.sh"
# B6 embeds its corpus with the model the server loads; a run without it stopped at B6.
"$repo/scripts/fetch-model.sh"

if [ "${BENCH_SKIP_OHA:-0}" = 1 ]; then
    say "skipping oha (BENCH_SKIP_OHA=1)"
elif [ -x "$bench/.tools/bin/oha" ] && "$bench/.tools/bin/oha" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    say "oha $OHA_VERSION present"
else
    say "building oha $OHA_VERSION from crates.io into bench/.tools (a few minutes, once)"
    # Its own target dir: oha's dependencies must not churn the workspace's build cache.
    CARGO_TARGET_DIR="$bench/.tools/target" cargo install --quiet --locked \
        oha --version "$OHA_VERSION" --root "$bench/.tools" </dev/null
    rm -rf "$bench/.tools/target"
fi
say "ready"
