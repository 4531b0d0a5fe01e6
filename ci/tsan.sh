#!/usr/bin/env bash
# ThreadSanitizer over balloc-concurrent's tests (nightly, std rebuilt with TSan). Any report
# fails the run: TSan exits non-zero on a report (halt_on_error) and nothing is suppressed.
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/nightly.sh
nightly_or_skip "ThreadSanitizer" || exit 0
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    if ! rustup component add --toolchain nightly rust-src >/dev/null 2>&1; then
        echo "=================================================================="
        echo "SKIPPED: ThreadSanitizer -- rust-src could not be installed on nightly"
        echo "=================================================================="
        exit 0
    fi
fi
host="$(rustc +nightly -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/tsan"
export RUSTFLAGS="-Zsanitizer=thread"
export RUSTDOCFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
start=$(date +%s)
cargo +nightly test -Zbuild-std --target "$host" -p balloc-concurrent
echo "tsan: balloc-concurrent tests passed with no report in $(( $(date +%s) - start )) s"
