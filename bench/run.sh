#!/usr/bin/env bash
# Runs Berth's benchmarks (B1-B5 of issue 6) and writes bench/RESULTS.md. See bench/README.md.
#
#   bench/run.sh            full run on the production profile (release + LTO, what deploy/ builds),
#                           < 15 minutes after the build, writes bench/RESULTS.md
#   bench/run.sh --smoke    CI: tiny counts on debug builds, < 2 minutes after the build; every path
#                           is exercised and the run fails only if one is broken, never on timings;
#                           writes bench/.work/RESULTS-smoke.md
#
# Other arguments go to bench/harness.py (--isolation process, --keep-work, --output FILE).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

smoke=0
for arg in "$@"; do
    [ "$arg" = --smoke ] && smoke=1
done

if [ "$smoke" = 1 ]; then
    # oha is a cross-check of the full run only; CI does not need to build it.
    BENCH_SKIP_OHA="${BENCH_SKIP_OHA:-1}" bench/setup.sh
    # The debug builds CI already has: the smoke run checks that paths work, not how fast. The
    # same command as the suite's build (scripts/test.sh), so it finds them fresh: building only
    # the four packages unified the dependencies' features differently (tokio without its
    # test-util, for one) and rebuilt most of the tree, about three minutes of the suite.
    cargo build --locked --workspace --all-targets
    bin_dir=target/debug
else
    bench/setup.sh
    # What a deployment runs (Cargo.toml's production profile), not the quicker release profile.
    cargo build --profile production --locked -p berth -p berth-fast-agent -p berth-bench -p berth-pgtest
    bin_dir=target/production
fi
exec .venv/bin/python bench/harness.py --bin-dir "$bin_dir" "$@"
