#!/usr/bin/env bash
# balloc-concurrent's concurrent stress tests built with `--cfg balloc_chaos`, in release: the
# pool yields inside its out-of-memory decision, so races that need many cores (many threads
# deciding out-of-memory at once) show on two. Runs tests/all's stress, exhaustion and
# serve-after-free tests, tests/chaos.rs (rounds of threads exhausting a pool together, under
# a watchdog) and tests/fork.rs (children forked while threads churn the pool). Every step
# runs even when an earlier one failed, each under a time limit (a call that never returns
# must fail the run, not hang it); any failure fails the run with a banner naming the steps.
# A separate target directory keeps the chaos build from invalidating the normal one.
# Usage: ci/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/chaos"
export RUSTFLAGS="--cfg balloc_chaos"
# Per step. Without chaos these tests take seconds; with it, under a minute when every
# out-of-memory decision ends promptly.
limit=240
start=$(date +%s)
failures=()

step() {
    local what="$1"
    shift
    echo "--- chaos: $what"
    local t0 rc=0
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" cargo test -p balloc-concurrent --release "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        failures+=("$what: still running after $limit s, killed")
    elif [ "$rc" -ne 0 ]; then
        failures+=("$what: exit $rc")
    fi
    echo "chaos: $what: $(( $(date +%s) - t0 )) s, exit $rc"
}

echo "--- chaos: build (--cfg balloc_chaos, --release)"
cargo test -p balloc-concurrent --release --no-run --test all --test chaos --test fork
step "stress, exhaustion and serve-after-free tests (tests/all)" \
    --test all -- stress:: exhaustion:: serve_after_free::
step "threads exhausting a pool together, round after round (tests/chaos.rs)" \
    --test chaos -- --nocapture
step "children forked while threads churn the pool (tests/fork.rs)" --test fork

if [ ${#failures[@]} -gt 0 ]; then
    echo "=================================================================="
    echo "FAILED: chaos stress (--cfg balloc_chaos, --release):"
    printf '  - %s\n' "${failures[@]}"
    echo "=================================================================="
    exit 1
fi
echo "chaos: all passed in $(( $(date +%s) - start )) s"
