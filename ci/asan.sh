#!/usr/bin/env bash
# AddressSanitizer (nightly, std rebuilt with the sanitizer) over the unit and integration tests
# of balloc-core and balloc-concurrent, with all features (as ci/test.sh). Catches
# out-of-bounds and use-after-free on the heap and stack (metadata, caches, test code) and leaks.
# ASan does not watch the pools' own mmap'd regions; the fuzz targets' content checks and
# debug-fill cover those.
# Usage: ci/asan.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/nightly.sh
nightly_or_skip "AddressSanitizer" || exit 0
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
case "$host" in
    x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;;
    *)
        echo "=================================================================="
        echo "SKIPPED: AddressSanitizer -- not set up for host $host"
        echo "=================================================================="
        exit 0
        ;;
esac
if ! rustup component add --toolchain nightly rust-src >/dev/null 2>&1; then
    echo "=================================================================="
    echo "SKIPPED: AddressSanitizer -- rust-src (for -Zbuild-std) could not be installed"
    echo "=================================================================="
    exit 0
fi

export RUSTFLAGS="-Zsanitizer=address"
export RUSTDOCFLAGS="-Zsanitizer=address"
# Sanitized builds share nothing with normal ones: keep them apart.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1}"

echo "--- AddressSanitizer: balloc-core, balloc-concurrent (lib + tests, all features; $CARGO_TARGET_DIR)"
cargo +nightly test -Zbuild-std --target "$host" \
    -p balloc-core -p balloc-concurrent --all-features --lib --tests "$@"
