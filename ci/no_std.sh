#!/usr/bin/env bash
# balloc-core without `std`: for the host, and for a bare-metal target with no OS at all.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p balloc-core --no-default-features
target=thumbv7em-none-eabihf
if rustup target add "$target" >/dev/null 2>&1; then
    cargo build -p balloc-core --no-default-features --target "$target"
    echo "no_std: built balloc-core for $target"
else
    echo "=================================================================="
    echo "SKIPPED: bare-metal build -- rustup could not install $target"
    echo "=================================================================="
fi
