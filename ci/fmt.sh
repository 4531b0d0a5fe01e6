#!/usr/bin/env bash
# Formatting: rustfmt's verdict on the whole workspace.
set -euo pipefail
rustup component add rustfmt >/dev/null 2>&1 || true
cargo fmt --all --check
