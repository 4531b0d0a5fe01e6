#!/usr/bin/env bash
# Documentation: rustdoc on every crate of the workspace, warnings (broken links included) as
# errors; then the library crates as docs.rs builds them (nightly, `--cfg docsrs`, every
# feature), so that the feature badges and the docs.rs metadata stay buildable.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features
. ci/nightly.sh
if nightly_or_skip "docs.rs build of the library crates (--cfg docsrs)"; then
    RUSTDOCFLAGS="--cfg docsrs -D warnings" RUSTFLAGS="--cfg docsrs" \
        cargo +nightly doc --no-deps -p balloc-core -p balloc-concurrent --all-features \
        --target-dir target/docsrs
fi
