#!/usr/bin/env bash
# Fuzzing (cargo-fuzz, libFuzzer, nightly): runs every target in fuzz/ for SECONDS each,
# starting from the committed seeds in fuzz/corpus/<target>/, then replays each corpus once more
# under AddressSanitizer with the pools' `debug-fill` hardening and libFuzzer's leak check after
# every input. Prints executions and coverage per target; fails on a crash, a leak, a timeout (a
# hang, e.g. a deadlock) or any error.
#
# The timed runs:
# - core_ops runs without a sanitizer. balloc-core's pools and metadata live in mmap'd memory,
#   which AddressSanitizer does not track, so there it checks only the target's own heap and
#   stack, at several times the cost per input; the replay checks those on every input the run
#   found interesting. Every assertion of the target runs on every input either way.
# - concurrent_ops and sized_misuse run under AddressSanitizer (balloc-concurrent's caches and
#   depot live on the heap it tracks).
# - libFuzzer's leak check after each input is off (-detect_leaks=0): the targets keep pools,
#   caches and threads from one input to the next, so an input that makes a new pool allocates
#   more than it frees, and libFuzzer then reran it and scanned the whole heap, which took most
#   of concurrent_ops' time. A leak still fails the run: LeakSanitizer checks the heap at exit,
#   and the replay checks after every input, naming the input that leaked.
# Usage: ci/fuzz.sh [SECONDS]   (default 60)
#        ci/fuzz.sh --build-only   (installs cargo-fuzz and builds the targets, runs nothing: .ci/run
#                                   does this while other checks run, so that the timed runs later
#                                   have the machine to themselves)
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=
seconds="${1:-60}"
if [ "$seconds" = --build-only ]; then
    build_only=1
    seconds=0
fi
case "$seconds" in
    '' | *[!0-9]*) echo "usage: ci/fuzz.sh [SECONDS] | --build-only" >&2; exit 2 ;;
esac
. ci/nightly.sh
nightly_or_skip "fuzzing" || exit 0
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "--- installing cargo-fuzz"
    # --debug: cargo-fuzz only assembles flags and starts cargo and the fuzz binary, so its own
    # optimisation is irrelevant; unoptimised it builds in about 25 s instead of 80 s (2 cores).
    # The fuzz targets are built exactly as before (release, ASan, debug assertions).
    if ! cargo install cargo-fuzz --locked --debug; then
        echo "=================================================================="
        echo "SKIPPED: fuzzing -- cargo-fuzz is missing and could not be installed"
        echo "=================================================================="
        exit 0
    fi
fi

targets=(core_ops concurrent_ops sized_misuse)
# The sanitizer of each target's timed run (see the top); the replay uses address for all.
sanitizer() {
    case "$1" in
        core_ops) echo none ;;
        *) echo address ;;
    esac
}
# Work corpora and logs live under fuzz/target (ignored); the committed seeds are only read.
work=fuzz/target/ci
mkdir -p "$work"
# Inputs up to 4 KiB (a few hundred operations) from the start: short inputs reach only shallow
# pool states, and libFuzzer's default length control would keep them short for minutes.
# A hang of 60 s in one input (a deadlock) counts as a crash.
flags=(-max_total_time="$seconds" -max_len=4096 -len_control=0 -timeout=60 -detect_leaks=0
    -print_final_stats=1)

echo "--- building: ${targets[*]}"
for t in "${targets[@]}"; do
    cargo +nightly fuzz build -s "$(sanitizer "$t")" "$t"
    cargo +nightly fuzz build --features debug-fill "$t"
done
if [ -n "$build_only" ]; then
    echo "fuzz: cargo-fuzz installed, ${targets[*]} built (--build-only: nothing run)"
    exit 0
fi

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "$work/corpus/$t" "fuzz/corpus/$t"
    log="$work/$t.log"
    echo "--- fuzzing $t for ${seconds}s (log: $log)"
    # Keep going after a crash so that every target runs; the exit status is collected below.
    set +e
    cargo +nightly fuzz run -s "$(sanitizer "$t")" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
        "${flags[@]}" >"$log" 2>&1
    rc=$?
    set -e
    grep -E '^stat::|^#[0-9]+[[:space:]]+DONE' "$log" || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n1)
    summary+=("$(printf '%-15s executions %-9s %s' "$t" "${execs:-?}" "${cov:-cov: ?}")")
    if [ "$rc" -ne 0 ]; then
        echo "!!! $t FAILED (exit $rc); the end of its log:"
        tail -n 60 "$log"
        failed+=("$t")
    fi
done

# debug-fill makes every free fill the block and every allocation check it byte by byte, which
# makes core_ops run many times as many instructions; so it does not fuzz, it replays every
# input the runs above found interesting (-runs=0), under AddressSanitizer and with libFuzzer's
# leak check after every input, checking on all of them that neither pool writes into free
# memory.
for t in "${targets[@]}"; do
    log="$work/$t-debug-fill.log"
    echo "--- replaying the $t corpus with debug-fill and AddressSanitizer (log: $log)"
    set +e
    cargo +nightly fuzz run "$t" --features debug-fill "$work/corpus/$t" "fuzz/corpus/$t" -- \
        -runs=0 -timeout=60 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    grep -E 'INITED|DONE' "$log" | tail -n 2 || true
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    summary+=("$(printf '%-15s executions %-9s (corpus replay: debug-fill, ASan, leak check)' "$t" "${execs:-?}")")
    if [ "$rc" -ne 0 ]; then
        echo "!!! $t with debug-fill FAILED (exit $rc); the end of its log:"
        tail -n 60 "$log"
        failed+=("$t (debug-fill)")
    fi
done

echo
echo "=== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}; reproducers in fuzz/artifacts/<target>/ (cargo +nightly fuzz run <target> <file>)"
    exit 1
fi
