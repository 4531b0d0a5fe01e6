#!/usr/bin/env bash
# A long run, for use outside CI: every fuzz target for MINUTES each (ci/fuzz.sh: libFuzzer, then
# the corpus replayed under AddressSanitizer with debug-fill), then the chaos stress
# (ci/chaos.sh: concurrent stress, exhaustion, fork and watchdog tests under --cfg
# balloc_chaos) round after round for MINUTES more. Stops at the first failure, naming it; the
# fuzz corpora grow under fuzz/target/ci and carry over from one soak to the next.
# Usage: ci/soak.sh MINUTES
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-}"
case "$minutes" in
    '' | *[!0-9]* | 0) echo "usage: ci/soak.sh MINUTES (a positive whole number)" >&2; exit 2 ;;
esac
start=$(date +%s)
echo "=== soak: fuzzing every target for $minutes min"
ci/fuzz.sh $(( minutes * 60 ))
echo "=== soak: chaos stress, round after round, for $minutes min"
deadline=$(( $(date +%s) + minutes * 60 ))
round=0
while [ "$(date +%s)" -lt "$deadline" ]; do
    round=$(( round + 1 ))
    echo "--- soak: chaos round $round"
    if ! ci/chaos.sh; then
        echo "soak: FAILED in chaos round $round"
        exit 1
    fi
done
echo "soak: passed: fuzzing $minutes min per target, $round chaos rounds, $(( ($(date +%s) - start) / 60 )) min in all"
