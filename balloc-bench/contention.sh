#!/usr/bin/env bash
# The contention proxy (src/bin/contention.rs): atomic RMWs, failed CASes and stores per op on
# balloc's pool state, and writes per op to cache lines that many threads write, for
# producer-consumer and larson through LocalCache and GlobalAlloc at several thread counts.
#
#   balloc-bench/contention.sh [--threads 2,4,8,16] [--ops 1000000] [--lines 5] [--out FILE]
#
# Builds with `--cfg balloc_contention` (every pool atomic counts its writes) in
# target-contention/, so the normal build cache in target/ stays valid.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg balloc_contention"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-contention}"
cargo build --release -q -p balloc-bench --bin contention
exec "$CARGO_TARGET_DIR/release/contention" "$@"
