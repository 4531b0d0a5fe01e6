#!/usr/bin/env bash
# MSRV: the `rust-version` the library crates declare holds for what they depend on, as
# `cargo metadata` resolves it (the checker is one file built with plain rustc).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/ci-msrv
mkdir -p "$out"
rustc --edition 2021 -O ci/msrv.rs -o "$out/msrv"
cargo metadata --format-version 1 --all-features --locked | "$out/msrv"
