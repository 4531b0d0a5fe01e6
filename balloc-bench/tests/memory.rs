//! The memory binary runs end to end: one child per allocator, each with a result row (the
//! workload is tiny here, so the ratios mean little; that they exist and are sane is checked).

use std::process::Command;

#[test]
fn memory_runs_every_allocator_in_its_own_child() {
    let out = Command::new(env!("CARGO_BIN_EXE_memory"))
        .args([
            "--threads",
            "2",
            "--objects",
            "300",
            "--waves",
            "2",
            "--light",
            "50",
        ])
        .output()
        .expect("run memory");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "a child failed: {stderr}");
    for name in ["glibc", "mimalloc", "jemalloc", "balloc-global"] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"));
        let peak_ratio: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
        assert!(
            peak_ratio > 0.5,
            "{name}: peak RSS below the live bytes: {row}"
        );
    }
    assert!(stdout.contains("Rounding alone"), "{stdout}");
}
