#!/usr/bin/env bash
# CI smoke test of balloc-bench: every criterion bench runs once in test mode, and the scaling
# report runs end to end with 5 ms runs (`--quick`) and writes its three files, and the memory
# workload runs tiny. The numbers
# are meaningless here; this only proves that benches and report build and work.
# About 1 minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p balloc-bench -- --test
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --release -p balloc-bench -- --quick --out "$out"
for f in scaling.svg results.csv results.md; do
  test -s "$out/$f" || { echo "balloc-bench: $f missing or empty" >&2; exit 1; }
done
cargo run --release -p balloc-bench --bin memory -- --threads 2 --objects 300 --waves 2 \
  --out "$out/memory.md"
test -s "$out/memory.md" || { echo "balloc-bench: memory.md missing or empty" >&2; exit 1; }
echo "balloc-bench smoke: benches and report ran"
