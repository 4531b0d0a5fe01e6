#!/usr/bin/env bash
# The contention proxy's check (balloc-bench/src/bin/contention.rs): built with
# `--cfg balloc_contention`, every pool atomic counts its writes per cache line. The lockstep
# producer-consumer runs (pairs of caches simulated on one thread, so the counts do not depend
# on scheduling) must write no line that three or more threads write, from 8 threads on: the
# remote-free path's steady state. The threaded runs' table is printed for the record.
set -euo pipefail
cd "$(dirname "$0")/.."
bash balloc-bench/contention.sh --threads 4,8,16,32 --ops 200000 --lines 3 --check
