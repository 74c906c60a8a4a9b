#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this).
# Sets up everything it needs on a fresh machine (Python venv with pinned clients, the pinned
# npm packages of the JavaScript SDK suite), idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup"
scripts/setup-python.sh
scripts/setup-node.sh
scripts/setup-debian.sh
scripts/fetch-model.sh

echo "== format and lints (unformatted code or any clippy warning fails the suite)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --locked --all-targets

echo "== rust tests"
cargo test --workspace --locked

echo "== conformance (boto3, the bedrock-agentcore SDK and the AWS SDK for JavaScript v3 against a real berth serve)"
BERTH_BIN="$PWD/target/debug/berth" .venv/bin/python -m pytest -q tests/conformance "$@"

echo "== security (hostile agents and clients against a real berth serve)"
BERTH_BIN="$PWD/target/debug/berth" .venv/bin/python -m pytest -q tests/security

echo "== bench smoke (every benchmark path runs; timings are not judged)"
bench/run.sh --smoke
