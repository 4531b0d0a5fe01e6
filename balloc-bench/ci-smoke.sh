#!/usr/bin/env bash
# CI smoke test of balloc-bench: every criterion bench runs once in test mode, and the scaling
# report runs end to end with 5 ms runs (`--quick`, which also runs the memory workload tiny)
# and writes its four files. The numbers are meaningless here; this only proves that benches and
# report build and work.
# About 1 minute after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p balloc-bench -- --test
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --release -p balloc-bench -- --quick --out "$out"
for f in scaling.svg results.csv results.md memory.md; do
  test -s "$out/$f" || { echo "balloc-bench: $f missing or empty" >&2; exit 1; }
done
grep -q '^| balloc-global |' "$out/memory.md" || { echo "balloc-bench: no balloc row in memory.md" >&2; exit 1; }
echo "balloc-bench smoke: benches and report ran"
