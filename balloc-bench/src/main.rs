//! The scaling report: every workload × allocator × thread count, side by side in one process.
//!
//! `cargo run --release -p balloc-bench -- --help` for the flags. Prints the tables and writes
//! `scaling.svg`, `results.csv` and `results.md` to `target/balloc-report/` (or `--out`).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use balloc_bench::machine::Machine;
use balloc_bench::registry::{AllocKind, Instances, Run, ThreadPools, Workload};
use balloc_bench::report::{self, Report, Sample};
use balloc_bench::workload::Budget;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// balloc's scaling report: throughput of balloc and its peers across thread counts.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Workloads to run (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<Workload>,
    /// Allocators to run (comma-separated; default: all); the first is the reference for ratios.
    #[arg(long, value_delimiter = ',')]
    allocators: Vec<AllocKind>,
    /// Thread counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    threads: Vec<usize>,
    /// Length of one measured run, in milliseconds.
    #[arg(long, default_value_t = 80)]
    duration_ms: u64,
    /// Repetitions of each run; the report shows their median and min–max.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Unmeasured warm-up run before the repetitions of each cell, in milliseconds.
    #[arg(long, default_value_t = 10)]
    warmup_ms: u64,
    /// Seed for the random workloads.
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// A smoke run for CI: 5 ms runs, one repetition, no warm-up (numbers meaningless).
    #[arg(long)]
    quick: bool,
    /// Where to write the report (default: `$CARGO_TARGET_DIR` or `<workspace>/target`, then
    /// `balloc-report/`).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::parse();
    if args.quick {
        args.duration_ms = 5;
        args.reps = 1;
        args.warmup_ms = 0;
    }
    if args.reps == 0 || args.threads.contains(&0) {
        return Err("--reps and every --threads value must be at least 1".into());
    }
    if args.workloads.is_empty() {
        args.workloads = Workload::ALL.to_vec();
    }
    if args.allocators.is_empty() {
        args.allocators = AllocKind::ALL.to_vec();
    }
    let machine = Machine::detect();
    let duration = Duration::from_millis(args.duration_ms);
    let warmup = Duration::from_millis(args.warmup_ms);

    // What to run, per workload: the allocators it applies to.
    let plan: Vec<(Workload, Vec<AllocKind>)> = args
        .workloads
        .iter()
        .map(|&w| {
            let allocs: Vec<AllocKind> = args
                .allocators
                .iter()
                .copied()
                .filter(|&a| w.applies_to(a))
                .collect();
            (w, allocs)
        })
        .filter(|p| !p.1.is_empty())
        .collect();
    let total: usize =
        plan.iter().map(|p| p.1.len()).sum::<usize>() * args.threads.len() * args.reps;

    println!("balloc scaling report");
    println!("machine: {machine}");
    if let Some(note) = machine.oversubscription(&args.threads) {
        println!("note: {note}");
    }
    println!(
        "runs: {} ms each, {} repetitions (median and min–max shown), {} ms warm-up per cell, seed {:#x}",
        args.duration_ms, args.reps, args.warmup_ms, args.seed
    );
    std::io::stdout().flush()?;

    let instances = Instances::new();
    let pools = ThreadPools::new();
    let bar = ProgressBar::new(total as u64).with_style(ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} runs, ~{eta} left  {msg}",
    )?);
    let started = Instant::now();
    let mut samples = Vec::with_capacity(total);
    let log = !std::io::stderr().is_terminal();
    for (w, allocs) in &plan {
        let run = |n: usize, budget, seed| Run {
            workload: *w,
            pool: pools.get(n),
            budget,
            seed,
        };
        if w.is_throughput() && !warmup.is_zero() {
            for &n in &args.threads {
                bar.set_message(format!("{} × {n} threads: warm-up", w.id()));
                for &a in allocs {
                    run(n, Budget::Time(warmup), args.seed).on(&instances, a);
                }
            }
        }
        // Repetitions are the outer loop and thread counts the inner one, so that a slow phase of
        // a shared host (another tenant's burst) hits every thread count of a repetition alike:
        // the paired ratios of the scaling table compare runs seconds apart, not minutes.
        for rep in 0..args.reps {
            if log {
                eprintln!(
                    "[{:5.1} s] {} repetition {}/{}",
                    started.elapsed().as_secs_f64(),
                    w.id(),
                    rep + 1,
                    args.reps
                );
            }
            for &n in &args.threads {
                // Rotate the order each repetition, so no allocator always runs right after another.
                for i in 0..allocs.len() {
                    let a = allocs[(i + rep) % allocs.len()];
                    bar.set_message(format!("{} × {n} threads × {}", w.id(), a.id()));
                    // Throughput workloads replay the same random sequence every repetition;
                    // `fragmentation` draws a new one, so its spread shows the seed's influence.
                    let seed = if w.is_throughput() {
                        args.seed
                    } else {
                        args.seed + rep as u64
                    };
                    let outcome = run(n, Budget::Time(duration), seed).on(&instances, a);
                    samples.push(Sample {
                        workload: *w,
                        alloc: a,
                        threads: n,
                        rep,
                        outcome,
                    });
                    bar.inc(1);
                }
            }
        }
    }
    bar.finish_and_clear();
    let wall = started.elapsed();

    let cells = report::summarize(&samples);
    let report = Report {
        cells: &cells,
        workloads: &args.workloads,
        allocs: &args.allocators,
        threads: &args.threads,
    };
    print!("{}", report.text());
    let errors: u64 = samples.iter().map(|s| s.outcome.errors).sum();
    if errors > 0 {
        println!("\nWARNING: {errors} allocations failed in throughput workloads (marked above)");
    }
    println!("\ntotal {:.1} s", wall.as_secs_f64());

    let dir = args.out.unwrap_or_else(report::default_dir);
    std::fs::create_dir_all(&dir)?;
    let mut header = format!(
        "# balloc scaling report\n\nMachine: {machine}.  \nRuns: {} ms each, {} repetitions, \
         {} ms warm-up per cell, seed {:#x}; {} s in all.  \nOp = one allocation and its free. \
         Cells: median [min–max] over the repetitions, then the ratio of the median to the first \
         row's.\n",
        args.duration_ms,
        args.reps,
        args.warmup_ms,
        args.seed,
        wall.as_secs()
    );
    if let Some(note) = machine.oversubscription(&args.threads) {
        header.push_str(&format!("\nNote: {note}.\n"));
    }
    std::fs::write(dir.join("results.md"), header + &report.markdown())?;
    std::fs::write(dir.join("results.csv"), report::csv(&samples))?;
    let subtitle = format!(
        "{machine}; median of {} runs of {} ms; op = one allocation and its free",
        args.reps, args.duration_ms
    );
    report::svg(&report, &dir.join("scaling.svg"), &subtitle)?;
    println!(
        "wrote {}/{{scaling.svg,results.csv,results.md}}",
        dir.display()
    );
    Ok(())
}
