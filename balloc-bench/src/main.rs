//! The scaling report: every workload × allocator × thread count, side by side.
//!
//! `cargo run --release -p balloc-bench -- --help` for the flags. Prints the tables and writes
//! `scaling.svg`, `results.csv` and `results.md` to `target/balloc-report/` (or `--out`). After
//! the throughput cells it runs the memory workload (`balloc_bench::memory`: peak RSS and RSS
//! after a service-like load, one child process per allocator) and adds its table, also to
//! `memory.md`; `--no-memory` skips it.
//!
//! The runs happen in a worker process (this binary with `--worker`, see
//! `balloc_bench::worker`), each under a time limit, so that a run that hangs is reported as
//! stalled instead of hanging the report.

use std::collections::HashSet;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use balloc_bench::machine::Machine;
use balloc_bench::memory;
use balloc_bench::registry::{AllocKind, Workload};
use balloc_bench::report::{self, Report, Sample, Status};
use balloc_bench::worker::{self, Ended, Request, Worker};
use balloc_bench::workload::Outcome;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// The default time limit of a run is this many times a run's length (warm-up included) ...
const LIMIT_RUNS: u32 = 40;
/// ... and at least this. Generous, because a limit that cuts a slow but working run would
/// report a stall that is not there: an oversubscribed run overshoots its deadline by its
/// slowest ops, `fragmentation` has no deadline (it runs until its pool is full), and the
/// first run in a worker also starts the process and makes the allocator.
const LIMIT_MIN: Duration = Duration::from_secs(20);

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
    /// Seed for the random workloads (`larson`, `fragmentation`).
    #[arg(long, default_value_t = 0x5EED)]
    seed: u64,
    /// A smoke run for CI: 5 ms runs, one repetition, no warm-up (numbers meaningless).
    #[arg(long)]
    quick: bool,
    /// Where to write the report (default: `$CARGO_TARGET_DIR` or `<workspace>/target`, then
    /// `balloc-report/`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Time limit of one run, warm-up runs included, in milliseconds: a run without a result by
    /// then is killed and reported as stalled (default: 40 × (warm-up + duration), at least
    /// 20,000).
    #[arg(long)]
    cell_timeout_ms: Option<u64>,
    /// Skip the memory workload (RSS per allocator, after the throughput tables).
    #[arg(long)]
    no_memory: bool,
    /// Serve runs on stdin/stdout (the report starts itself with this; see `worker.rs`).
    #[arg(long, hide = true)]
    worker: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if memory::serve_child(&argv) {
        return Ok(());
    }
    let mut args = Args::parse();
    if args.worker {
        return worker::serve();
    }
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
    let limit = args.cell_timeout_ms.map_or_else(
        || LIMIT_MIN.max((warmup + duration) * LIMIT_RUNS),
        Duration::from_millis,
    );

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
    let mut head = vec![format!("machine: {machine}")];
    if let Some(note) = machine.oversubscription(&args.threads) {
        head.push(format!("note: {note}"));
    }
    head.push(format!(
        "runs: {} ms each, {} repetitions (median and min–max shown), {} ms warm-up per cell, \
         seed {}",
        args.duration_ms, args.reps, args.warmup_ms, args.seed
    ));
    head.push(format!(
        "time limit: {:.1} s a run (a run without a result by then is killed and reported as \
         stalled)",
        limit.as_secs_f64()
    ));
    for line in head.iter().flat_map(|p| report::wrap(p, report::WIDTH)) {
        println!("{line}");
    }
    std::io::stdout().flush()?;

    let mut runner = Runner {
        worker: Worker::new(std::env::current_exe()?),
        limit,
        warmup,
        seed: args.seed,
        warm: HashSet::new(),
        warm_lost: 0,
        warm_failed: HashSet::new(),
        incidents: Vec::new(),
        started: Instant::now(),
    };
    let bar = ProgressBar::new(total as u64).with_style(ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} runs, ~{eta} left  {msg}",
    )?);
    let started = runner.started;
    let mut samples = Vec::with_capacity(total);
    let log = !std::io::stderr().is_terminal();
    for (w, allocs) in &plan {
        let w = *w;
        for &n in &args.threads {
            bar.set_message(format!("{} × {n} threads: warm-up", w.id()));
            for &a in allocs {
                runner.warm_up(w, n, a, &bar)?;
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
                    // Only after a lost worker is there anything to warm up here.
                    runner.warm_up(w, n, a, &bar)?;
                    // Throughput workloads replay the same random sequence every repetition;
                    // `fragmentation` draws a new one, so its spread shows the seed's influence.
                    let seed = if w.is_throughput() {
                        args.seed
                    } else {
                        args.seed + rep as u64
                    };
                    let req = Request {
                        workload: w,
                        alloc: a,
                        threads: n,
                        duration,
                        seed,
                        rep: Some(rep),
                    };
                    let (status, outcome) = runner.send(req, &bar)?;
                    samples.push(Sample {
                        workload: w,
                        alloc: a,
                        threads: n,
                        rep,
                        status,
                        outcome,
                    });
                    bar.inc(1);
                }
            }
        }
    }
    let incidents = std::mem::take(&mut runner.incidents);
    // Its worker exits now rather than idle while the report is written.
    drop(runner);
    bar.finish_and_clear();
    let wall = started.elapsed();

    let cells = report::summarize(&samples);
    let report = Report {
        cells: &cells,
        workloads: &args.workloads,
        allocs: &args.allocators,
        threads: &args.threads,
        cpus: machine.cpus,
    };
    print!("{}", report.text());
    let errors: u64 = samples.iter().map(|s| s.outcome.errors).sum();
    if errors > 0 {
        println!("\nWARNING: {errors} allocations failed in throughput workloads (marked above)");
    }
    if !incidents.is_empty() {
        println!(
            "\nWARNING: {} runs did not finish (marked above, left out of every number):",
            incidents.len()
        );
        for line in &incidents {
            for (i, part) in report::wrap(line, report::WIDTH - 4).iter().enumerate() {
                println!("{}{part}", if i == 0 { "  " } else { "    " });
            }
        }
    }
    println!("\ntotal {:.1} s", wall.as_secs_f64());

    let dir = args.out.unwrap_or_else(report::default_dir);
    std::fs::create_dir_all(&dir)?;
    let mut setup = vec![
        format!("**Machine**: {machine}."),
        format!(
            "**Runs**: {} ms each, {} repetitions, {} ms warm-up per cell, seed {}, time limit \
             {:.1} s a run; {} s in all.",
            args.duration_ms,
            args.reps,
            args.warmup_ms,
            args.seed,
            limit.as_secs_f64(),
            wall.as_secs()
        ),
    ];
    if let Some(note) = machine.oversubscription(&args.threads) {
        setup.push(format!("**Note**: {note}."));
    }
    let (how, what) = report::guide(&args.workloads);
    let mut header = format!(
        "# balloc scaling report\n\n{}\n## How to read it\n\n{}\n## Workloads\n\n{}",
        report::bullets(&setup),
        report::bullets(&how),
        report::bullets(&what)
    );
    if !incidents.is_empty() {
        header.push_str(&format!(
            "\n**{} runs did not finish** (killed at the time limit, or crashed), marked in\nthe \
             tables and left out of every number:\n\n",
            incidents.len()
        ));
        header.push_str(&report::bullets(&incidents));
    }
    header.push_str("\n## Results\n");
    let mut results = header + &report.markdown();
    if !args.no_memory {
        // A small load under --quick: the smoke test checks that it runs, not its ratios.
        let params = if args.quick {
            memory::Params {
                threads: 2,
                objects: 300,
                waves: 2,
                light: 50,
                ..memory::Params::default()
            }
        } else {
            memory::Params::default()
        };
        println!("\nmemory workload (one child process per allocator) ...");
        let table = memory::table(&std::env::current_exe()?, &memory::ALLOCATORS, &params);
        println!("\n{table}");
        std::fs::write(dir.join("memory.md"), &table)?;
        results.push_str("\n## Memory use\n\n");
        results.push_str(&table);
    }
    std::fs::write(dir.join("results.md"), results)?;
    std::fs::write(dir.join("results.csv"), report::csv(&samples))?;
    let mut subtitle = format!(
        "{machine}; median of {} runs of {} ms; op = one allocation and its free",
        args.reps, args.duration_ms
    );
    if !incidents.is_empty() {
        subtitle.push_str("; cells with a stalled or crashed run left out");
    }
    report::svg(&report, &dir.join("scaling.svg"), &subtitle)?;
    println!(
        "wrote {}/{{scaling.svg,results.csv,results.md{}}}",
        dir.display(),
        if args.no_memory { "" } else { ",memory.md" }
    );
    Ok(())
}

/// Sends runs to the worker, keeps the warm-up state of the current worker, and logs the runs
/// that do not finish.
struct Runner {
    worker: Worker,
    limit: Duration,
    warmup: Duration,
    seed: u64,
    /// The cells warmed up in the current worker: a new worker (after a stall or a crash) has
    /// new allocators, so each cell is warmed up again before its next measured run.
    warm: HashSet<(Workload, usize, AllocKind)>,
    /// `worker.lost()` when `warm` was last valid.
    warm_lost: u64,
    /// Cells whose warm-up did not finish: not tried again (it would not finish either).
    warm_failed: HashSet<(Workload, usize, AllocKind)>,
    /// One line per run that did not finish, for the summary.
    incidents: Vec<String>,
    started: Instant,
}

impl Runner {
    /// Sends one run to the worker and says how it ended.
    fn send(&mut self, req: Request, bar: &ProgressBar) -> std::io::Result<(Status, Outcome)> {
        let (status, what) = match self.worker.run(&req, self.limit)? {
            Ended::Done(o) => return Ok((Status::Done, o)),
            Ended::Stalled => (
                Status::Stalled,
                format!(
                    "stalled (no result within {:.1} s); its worker was killed",
                    self.limit.as_secs_f64()
                ),
            ),
            Ended::Crashed(exit) => (
                Status::Crashed,
                format!("crashed ({exit}); the worker's stderr says why"),
            ),
        };
        let run = match req.rep {
            Some(r) => format!("repetition {}", r + 1),
            None => "warm-up".to_owned(),
        };
        let line = format!(
            "{} × {} threads × {}, {run}: {what}",
            req.workload.id(),
            req.threads,
            req.alloc.id()
        );
        let t = self.started.elapsed().as_secs_f64();
        bar.suspend(|| eprintln!("[{t:5.1} s] {line}"));
        self.incidents.push(line);
        Ok((status, Outcome::default()))
    }

    /// Warms `(w, n, a)` up, unless it already was in the current worker (or its warm-up did
    /// not finish before).
    fn warm_up(
        &mut self,
        w: Workload,
        n: usize,
        a: AllocKind,
        bar: &ProgressBar,
    ) -> std::io::Result<()> {
        if !w.is_throughput() || self.warmup.is_zero() || self.warm_failed.contains(&(w, n, a)) {
            return Ok(());
        }
        if self.worker.lost() != self.warm_lost {
            self.warm.clear();
            self.warm_lost = self.worker.lost();
        }
        if self.warm.contains(&(w, n, a)) {
            return Ok(());
        }
        let req = Request {
            workload: w,
            alloc: a,
            threads: n,
            duration: self.warmup,
            seed: self.seed,
            rep: None,
        };
        if self.send(req, bar)?.0 == Status::Done {
            self.warm.insert((w, n, a));
        } else {
            self.warm_failed.insert((w, n, a));
        }
        Ok(())
    }
}
