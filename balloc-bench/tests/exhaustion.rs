//! The exhaustion binary runs end to end (a few calls per loop: the numbers mean nothing here).

use std::process::Command;

#[test]
fn exhaustion_runs_and_prints_every_case() {
    let out = Command::new(env!("CARGO_BIN_EXE_exhaustion"))
        .args(["--iters", "50", "--reps", "1", "--threads", "1,2"])
        .output()
        .expect("run exhaustion");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for row in [
        "(a) pool.alloc(64), fails",
        "(a) pool.local().alloc(64), fails",
        "(b) System alloc + dealloc 64 B",
        "(c) GlobalPool alloc + dealloc 64 B, full",
        "over (b), paired by repetition",
    ] {
        assert!(stdout.contains(row), "{row}: {stdout}");
    }
    assert!(!stdout.contains("WARNING"), "{stdout}");
}
