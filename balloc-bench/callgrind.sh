#!/usr/bin/env bash
# Instructions per alloc + free pair, counted by callgrind (immune to a noisy machine).
#
#   balloc-bench/callgrind.sh [allocator...] (default: buddy-pool heap balloc-local balloc-global
#                                             system mimalloc jemalloc)
#   SIZE=4096 balloc-bench/callgrind.sh heap
#   balloc-bench/callgrind.sh buddy-pool-batch heap-batch   (core/batch; N1, N2 multiples of 1000)
#   balloc-bench/callgrind.sh balloc-pc-local balloc-local   (producer-consumer on one thread: two
#       LocalCaches of one pool, bursts of 32 allocs on one, freed in order on the other)
#   balloc-bench/callgrind.sh full-pool full-local full-global system   (running out of memory:
#       failing calls on a full pool, per call; GlobalPool pairs served by its system fallback;
#       where a failing call is slow, a smaller N1 and N2, e.g. 2000 and 4000, keep the run short)
#
# Each allocator runs twice, with N1 and N2 pairs; (Ir(N2) - Ir(N1)) / (N2 - N1) cancels the
# setup (pool reservation, process start), leaving the loop: alloc, free, ~11 instructions of
# loop and black_box. snmalloc is left out: it aborts under valgrind (it reserves 256 GiB).
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-100000}
N2=${N2:-200000}
SIZE=${SIZE:-64}
allocs=("$@")
[ ${#allocs[@]} -gt 0 ] || allocs=(buddy-pool heap balloc-local balloc-global system mimalloc jemalloc)
cargo build --release -q -p balloc-bench --bin callgrind_pair
bin="${CARGO_TARGET_DIR:-target}/release/callgrind_pair"
count() { # allocator iterations -> total instructions (Ir)
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$SIZE" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-14s %12s   (%s B pairs, N = %s and %s)\n' allocator instr/pair "$SIZE" "$N1" "$N2"
for a in "${allocs[@]}"; do
  i1=$(count "$a" "$N1"); i2=$(count "$a" "$N2")
  awk -v a="$a" -v i1="$i1" -v i2="$i2" -v n1="$N1" -v n2="$N2" \
    'BEGIN { printf "%-14s %12.1f\n", a, (i2 - i1) / (n2 - n1) }'
done
