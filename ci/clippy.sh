#!/usr/bin/env bash
# Lints: every target of every crate, warnings are errors (undocumented unsafe included).
set -euo pipefail
rustup component add clippy >/dev/null 2>&1 || true
cargo clippy --workspace --all-targets --all-features -- -D warnings
