# Sourced by the nightly-only checks: sets NIGHTLY=1 when a nightly toolchain is usable, or
# prints a loud SKIPPED banner for the caller's check.
nightly_or_skip() {
    local what="$1"
    if cargo +nightly --version >/dev/null 2>&1 || rustup toolchain install nightly --profile minimal >/dev/null 2>&1; then
        return 0
    fi
    echo "=================================================================="
    echo "SKIPPED: $what -- no nightly toolchain could be found or installed"
    echo "=================================================================="
    return 1
}
