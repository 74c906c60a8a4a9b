#!/usr/bin/env bash
# Creates <repo>/.venv for the Python conformance suite and installs the pinned
# tests/conformance/requirements.txt into it.
#
# Idempotent: the install runs only when the requirements file (or the interpreter
# the venv was built from) changed since the last successful install; the stamp lives
# in .venv/.berth-requirements.sha256. Safe with no stdin and with CI=true.
#
# Agents' own packages are not installed here: Berth's builder installs each test agent's
# tests/conformance/agents/<name>/requirements.txt (pinned there the same way) into that agent's
# environment. ADOT in particular (aws-opentelemetry-distro 0.21.0, for agents/strands_adot) could
# not live in this venv: it pins opentelemetry-api/-sdk ==1.44.0 against the 1.45.1 pinned here.
#
# Environment:
#   PYTHON   interpreter to build the venv from (default: python3), must be >= 3.10
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
requirements="$repo/tests/conformance/requirements.txt"
stamp="$venv/.berth-requirements.sha256"
python="${PYTHON:-python3}"

die() {
    echo "setup-python: $*" >&2
    exit 1
}

command -v "$python" >/dev/null 2>&1 || die "'$python' not found on PATH; install Python 3.10 or newer"
[ -f "$requirements" ] || die "missing $requirements"

# Check the version with the interpreter itself so the message names what was found.
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    found="$("$python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null || echo unknown)"
    die "'$python' is Python $found; Python 3.10 or newer is required"
fi
"$python" -c 'import venv, ensurepip' 2>/dev/null \
    || die "'$python' lacks the venv/ensurepip modules (on Debian: apt-get install python3-venv)"

# The stamp covers both the requirements and the interpreter, so a changed python3
# (for example a new minor version) rebuilds wheels with compiled parts.
py_id="$("$python" -c 'import sys; print(sys.version)')"
want="$( { sha256sum "$requirements" | cut -d' ' -f1; echo "$py_id"; } | sha256sum | cut -d' ' -f1)"

# A venv whose interpreter no longer runs (moved repo, removed python) is rebuilt
# rather than patched.
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'pass' >/dev/null 2>&1; then
    echo "setup-python: $venv is broken, recreating it"
    rm -rf "$venv"
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-python: $venv is up to date"
    exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup-python: creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

# Remove the stamp first: an interrupted install must not look complete next time.
rm -f "$stamp"
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
echo "setup-python: installing $requirements"
"$venv/bin/python" -m pip install --quiet --no-input -r "$requirements" </dev/null
"$venv/bin/python" -m pip check
echo "$want" >"$stamp"
echo "setup-python: ready ($venv)"
