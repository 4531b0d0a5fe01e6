//! The report survives runs that never end: they are killed at the time limit, marked
//! `stalled` everywhere, and every other run still produces its number.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use balloc_bench::registry::{AllocKind, Workload};
use balloc_bench::worker::{Ended, Request, Worker, STALL_ENV};

const BIN: &str = env!("CARGO_BIN_EXE_balloc-bench");

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("balloc-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn stalled_runs_are_reported_and_the_report_goes_on() {
    let dir = out_dir("stall");
    let limit = Duration::from_millis(1500);
    let started = Instant::now();
    let out = Command::new(BIN)
        .args([
            "--workloads",
            "pair-64,batch",
            "--allocators",
            "balloc-local,system",
            "--threads",
            "1,2",
            "--reps",
            "2",
            "--duration-ms",
            "10",
            "--warmup-ms",
            "2",
        ])
        .arg("--cell-timeout-ms")
        .arg(limit.as_millis().to_string())
        .arg("--out")
        .arg(&dir)
        // Every run of pair-64 × balloc-local × 2 threads hangs (its warm-up and 2 repetitions),
        // and the second repetition of batch × system × 1 thread.
        .env(STALL_ENV, "pair-64/balloc-local/2,batch/system/1/1")
        .output()
        .expect("run the report");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    // Four stalls, each waited for up to the limit and no longer (the rest of the runs take
    // well under a second, but the host may be busy).
    let stalls = 4;
    assert!(
        wall >= limit * stalls,
        "{wall:?}: a stall was not waited for"
    );
    assert!(
        wall < (limit + Duration::from_secs(1)) * stalls + Duration::from_secs(20),
        "{wall:?}: stalls were not cut at the limit"
    );
    assert!(
        stdout.contains("WARNING: 4 runs did not finish"),
        "{stdout}"
    );

    // The CSV: the stalled runs have their status and no numbers; every other run has both.
    let csv = std::fs::read_to_string(dir.join("results.csv")).expect("results.csv");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().ends_with(",status"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 2 * 2 * 2, "{csv}");
    for r in &rows {
        let stalled = matches!(
            r[..4],
            ["pair-64", "balloc-local", "2", _] | ["batch", "system", "1", "1"]
        );
        if stalled {
            assert!(r[4..15].iter().all(|c| c.is_empty()), "{csv}");
            assert_eq!(r[15], "stalled", "{csv}");
        } else {
            assert_eq!(r[15], "ok", "{csv}");
            let mops: f64 = r[7].parse().expect("a number");
            assert!(mops > 0.0, "{csv}");
            // Latency: samples, then p50 <= p99 <= p99.9 <= max.
            let lat: Vec<u64> = r[10..15]
                .iter()
                .map(|c| c.parse().expect("a number"))
                .collect();
            assert!(lat[0] > 0, "{csv}");
            assert!(lat[1..].windows(2).all(|w| w[0] <= w[1]), "{csv}");
        }
    }

    // The tables: `stalled` where the number would be, a count where some runs finished.
    let md = std::fs::read_to_string(dir.join("results.md")).expect("results.md");
    let row = |title: &str, label: &str| -> Vec<String> {
        let table = &md[md.find(title).unwrap_or_else(|| panic!("{title}: {md}"))..];
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("{label} in {title}: {md}"));
        line.split(" | ")
            .skip(1)
            .map(|c| c.trim_end_matches(" |").to_owned())
            .collect()
    };
    let balloc = row("#### pair-64: throughput", "balloc LocalCache");
    assert_eq!(balloc[1], "stalled", "{md}");
    assert!(balloc[0].ends_with("1.00×"), "{md}");
    let system = row("#### pair-64: throughput", "system (glibc)");
    assert!(system.iter().all(|c| c.contains('[')), "{md}");
    assert_eq!(
        row("#### pair-64: speedup", "balloc LocalCache")[1],
        "stalled"
    );
    let system = row("#### batch: throughput", "system (glibc)");
    assert!(system[0].ends_with("(1/2 stalled)"), "{md}");
    assert!(md.contains("**4 runs did not finish**"), "{md}");
    assert!(md.contains("left out of the medians"), "{md}");
    assert!(stdout.contains("stalled"), "{stdout}");
    assert!(
        md.contains("#### batch: latency of one allocator call"),
        "{md}"
    );
    for text in [&md[..], &stdout[..]] {
        let wide = text.lines().find(|l| l.chars().count() > 100);
        assert_eq!(wide, None, "a line over 100 columns");
    }

    let svg = std::fs::read_to_string(dir.join("scaling.svg")).expect("scaling.svg");
    assert!(svg.contains("<svg"), "{svg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_crashed_worker_is_reported_and_replaced() {
    let mut worker = Worker::new(PathBuf::from(BIN));
    let req = |workload, alloc| Request {
        workload,
        alloc,
        threads: 1,
        duration: Duration::from_millis(5),
        seed: 1,
        rep: Some(0),
    };
    let limit = Duration::from_secs(60);
    let ok = |ended| matches!(ended, Ended::Done(o) if o.ops > 0);
    assert!(ok(worker
        .run(&req(Workload::Pair64, AllocKind::System), limit)
        .unwrap()));
    // `fragmentation` does not run on the system allocator: the worker panics and dies (its
    // panic message on stderr is expected).
    eprintln!("a_crashed_worker_is_reported_and_replaced: the worker's panic below is expected");
    let ended = worker
        .run(&req(Workload::Fragmentation, AllocKind::System), limit)
        .unwrap();
    assert!(matches!(ended, Ended::Crashed(exit) if !exit.success()));
    assert_eq!(worker.lost(), 1);
    // The next run gets a new worker.
    assert!(ok(worker
        .run(&req(Workload::Pair64, AllocKind::BallocLocal), limit)
        .unwrap()));
    assert_eq!(worker.lost(), 1);
}
