#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this).
# Sets up everything it needs on a fresh machine (Python venv with pinned clients, the pinned
# npm packages of the JavaScript SDK suite), idempotently.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each phase's header says when it started (seconds since this script did).
phase() { echo "== $1 (at ${SECONDS} s)"; }

# Work that runs beside a phase: `background NAME LOG COMMAND...` starts it with its output in LOG
# (killed if the suite exits first); `finish NAME` waits for it, shows its log and returns its
# exit status.
declare -A job_pid job_log
background() {
    local name=$1 log=$2
    shift 2
    "$@" >"$log" 2>&1 </dev/null &
    job_pid[$name]=$!
    job_log[$name]=$log
    trap 'kill "${job_pid[@]}" 2>/dev/null || true' EXIT
}
finish() {
    local status=0
    wait "${job_pid[$1]}" || status=$?
    cat "${job_log[$1]}"
    return "$status"
}

# Setup (downloads and package installs) runs while the Rust code is checked and built (CPU);
# nothing before the tests needs it.
phase "setup, in the background until the tests"
mkdir -p target
# As root, what the container images build on (the Debian base by debootstrap, the wheels, the
# shared layers: tests/conformance/images.py) is made here too, off the tests' critical path.
prepare_images() { [ "$(id -u)" != 0 ] || .venv/bin/python tests/conformance/images.py; }
setup() {
    scripts/setup-python.sh && scripts/setup-node.sh && scripts/setup-debian.sh \
        && scripts/fetch-model.sh && prepare_images
}
background setup target/test-setup.log setup

phase "format (unformatted code fails the suite)"
cargo fmt --all --check

# Clippy lints the workspace while it is built: clippy-driver is rustc with clippy's lint passes,
# and as the compiler of the workspace's own crates (cargo's RUSTC_WORKSPACE_WRAPPER) it lints
# every target as it compiles it. `cargo clippy` then `cargo build` compiled every dependency twice
# (once checked, once built): about five of the suite's minutes. `-D warnings` reaches the driver
# as `cargo clippy -- -D warnings` passes it (CLIPPY_ARGS); RUSTFLAGS would change every
# dependency's fingerprint, and a developer's next plain build would rebuild them all. Exported,
# so that every cargo command below (the tests, the bench smoke) finds the same artifacts fresh.
clippy_driver="$(command -v clippy-driver)" || { echo "clippy-driver not found: rustup component add clippy" >&2; exit 1; }
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
phase "build, linted by clippy (any clippy or compiler warning fails the suite)"
cargo build --workspace --locked --all-targets

phase "setup finishing"
setup_ok=0
finish setup || setup_ok=$?
[ "$setup_ok" = 0 ] || { echo "setup failed (exit $setup_ok)" >&2; exit 1; }

phase "rust tests"
cargo test --workspace --locked

phase "conformance (boto3, the bedrock-agentcore SDK, the AWS SDKs for JavaScript v3 and Rust against a real berth serve)"
# Two workers: most of a conformance test is waiting (builds, sandbox starts, lifecycle timers), so
# two at once nearly halve the phase on two cores. A test module runs on one worker (its
# module-scoped server is started once); each worker has its own session-scoped servers.
BERTH_BIN="$PWD/target/debug/berth" .venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=15 tests/conformance "$@"

# The bench smoke runs beside the security phase: both are mostly waiting (sandbox starts, timers,
# image pulls), the smoke's timings are not judged, and its servers, ports and process groups are
# its own, as a third worker's would be. Its output follows the security phase's.
phase "security (hostile agents and clients against a real berth serve), with the bench smoke beside it"
background smoke target/test-bench-smoke.log bench/run.sh --smoke
# Two workers, a module on each, as for conformance. The two modules that route the same test
# addresses through the host (test_egress's namespace, shared by test_container_confinement) take
# turns on a lock (test_egress.ROUTES_LOCK).
security_ok=0
BERTH_BIN="$PWD/target/debug/berth" .venv/bin/python -m pytest -q -n 2 --dist loadfile --durations=10 tests/security \
    || security_ok=$?

phase "bench smoke (every benchmark path runs; timings are not judged)"
smoke_ok=0
finish smoke || smoke_ok=$?
[ "$security_ok" = 0 ] || { echo "security tests failed (exit $security_ok)" >&2; exit 1; }
[ "$smoke_ok" = 0 ] || { echo "bench smoke failed (exit $smoke_ok)" >&2; exit 1; }
phase "done"
