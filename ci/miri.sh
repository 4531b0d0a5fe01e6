#!/usr/bin/env bash
# Miri with strict provenance over the crates' tests (small pools under cfg(miri)).
# Usage: ci/miri.sh [CRATE...]   (default: balloc-core)
set -euo pipefail
cd "$(dirname "$0")/.."
. ci/nightly.sh
nightly_or_skip "Miri" || exit 0
if ! rustup component add --toolchain nightly miri rust-src >/dev/null 2>&1; then
    echo "=================================================================="
    echo "SKIPPED: Miri -- the miri component could not be installed on nightly"
    echo "=================================================================="
    exit 0
fi
crates=("$@")
[ ${#crates[@]} -gt 0 ] || crates=(balloc-core)
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance}"
# balloc-concurrent writes tags atomically into block memory that callers write non-atomically
# (allowed, never racing); this nightly's weak-memory emulation ICEs on that mix
# ("cannot have empty store buffer when previous write was atomic", cf. rust-lang/miri#5185).
# Data races, Stacked Borrows and provenance are still checked; loom-tests model the orderings.
concurrent_flags="-Zmiri-disable-weak-memory-emulation"
cargo +nightly miri setup >/dev/null
for c in "${crates[@]}"; do
    flags="$MIRIFLAGS"
    [ "$c" = balloc-concurrent ] && flags="$flags $concurrent_flags"
    echo "--- miri: $c ($flags)"
    if [ "$c" = balloc-concurrent ] && [ -z "${MIRI_FULL:-}" ]; then
        # The whole integration suite takes over 20 minutes on 2 cores; CI runs the unit tests
        # (bitmaps, summaries, transit, cache limits) and the bad-input tests (two-thread
        # double-free races included). MIRI_FULL=1 runs everything (it passed in full before
        # stress::, see the README).
        # Where the time goes (measured 2026-12-03): not in Miri's exit. libtest's "finished in"
        # is Miri's virtual clock under isolation (5 us per basic block executed), so it reads
        # far below the wall time when each block is costly. Here they are: every bitmap access
        # makes a fresh `&[AtomicU64]` of the whole bitmap (`free_words()`, `live_words()`,
        # `summary()`), and Stacked Borrows retags all of it, visiting each UnsafeCell. Pool
        # `validate()` did that twice per bitmap word: about 10 s per call on a 1 MiB pool,
        # most of tests/all's matrix:: (a pool per row, ~270 s) and bad_input:: (~110 s).
        # `validate()` now makes each slice once per call: this crate's Miri run went from
        # about 7 minutes to 105 s.
        MIRIFLAGS="$flags" cargo +nightly miri test -p "$c" --lib
        MIRIFLAGS="$flags" cargo +nightly miri test -p "$c" --test all -- bad_input:: matrix::
        echo "NOTE: miri ran $c lib + tests/all (bad_input, matrix); MIRI_FULL=1 for the rest"
    else
        MIRIFLAGS="$flags" cargo +nightly miri test -p "$c" --lib --test all
        echo "NOTE: miri ran $c lib + tests/all"
    fi
    echo "NOTE: RSS, debug-fill and #[global_allocator] tests need a real OS; they run in ci/test.sh"
done
