#!/usr/bin/env bash
# Loom model checks of balloc-concurrent's protocol (loom-tests), then the proof that they bite:
# with `--cfg balloc_loom_mutants` the claim and merge steps are made non-atomic, and the models
# that cover them must fail (should_panic tests that expect each invariant's message).
# Each model sets its own preemption bound (see loom-tests/tests/models/models.rs);
# LOOM_MAX_PREEMPTIONS, if set, overrides all of them.
# Usage: ci/loom.sh [FILTER]   (a test-name filter, e.g. m3)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
filter=("$@")

echo "--- loom models (--cfg balloc_loom, --release)"
start=$(date +%s)
CARGO_TARGET_DIR="$target/loom" RUSTFLAGS="--cfg balloc_loom" \
    cargo test -p loom-tests --release --test models -- --nocapture "${filter[@]}"
echo "loom models: $(( $(date +%s) - start )) s"

echo "--- loom mutants (--cfg balloc_loom --cfg balloc_loom_mutants): every model must catch them"
start=$(date +%s)
CARGO_TARGET_DIR="$target/loom-mutants" RUSTFLAGS="--cfg balloc_loom --cfg balloc_loom_mutants" \
    cargo test -p loom-tests --release --test models -- --nocapture "${filter[@]}"
echo "loom mutants: $(( $(date +%s) - start )) s"
