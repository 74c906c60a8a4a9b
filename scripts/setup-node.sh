#!/usr/bin/env bash
# Installs the JavaScript conformance suite's packages (tests/js: the AWS SDK for JavaScript v3,
# versions pinned by tests/js/package-lock.json) with `npm ci`.
#
# Idempotent: the install runs only when the lock file (or the Node.js version) changed since the
# last successful install; the stamp lives in tests/js/node_modules/.berth-lock.sha256. Safe with
# no stdin and with CI=true.
#
# Node.js 20 or newer is required (the SDK's `engines`). When it is missing and this runs as root
# on a Debian-like system whose `nodejs` package is new enough, it is installed with apt-get;
# otherwise the script says what to install and fails.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
js="$repo/tests/js"
lock="$js/package-lock.json"
stamp="$js/node_modules/.berth-lock.sha256"
min_major=20

die() {
    echo "setup-node: $*" >&2
    exit 1
}

node_major() {
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
        && [ "$(node_major)" -ge "$min_major" ]
}

# The major version of the `nodejs` package apt would install, or 0.
apt_candidate_major() {
    apt-cache policy nodejs 2>/dev/null \
        | sed -n 's/^ *Candidate: *\([0-9][0-9]*\).*/\1/p' | head -n1 | grep . || echo 0
}

[ -f "$lock" ] || die "missing $lock"

if ! node_ok; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup-node: Node.js $min_major+ with npm not found; trying apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null
        candidate="$(apt_candidate_major)"
        [ "$candidate" -ge "$min_major" ] \
            || die "apt offers nodejs $candidate, older than $min_major; install Node.js $min_major+ (https://nodejs.org)"
        apt-get install -y -qq nodejs </dev/null
        # Debian packages npm separately; NodeSource's nodejs bundles it.
        command -v npm >/dev/null 2>&1 || apt-get install -y -qq npm </dev/null
    fi
    node_ok || die "Node.js $min_major or newer with npm is required (found: $(node --version 2>/dev/null || echo none))"
fi

want="$( { sha256sum "$lock" | cut -d' ' -f1; node --version; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-node: $js/node_modules is up to date"
    exit 0
fi

# `npm ci` removes node_modules first, so an interrupted install never looks complete.
echo "setup-node: installing $lock with $(node --version), npm $(npm --version)"
(cd "$js" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error </dev/null)
echo "$want" >"$stamp"
echo "setup-node: ready ($js/node_modules)"
