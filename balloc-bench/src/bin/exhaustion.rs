//! What running out of memory costs: a failing allocation on a full balloc pool, and a
//! `GlobalPool` serving from its system fallback, next to the system allocator's own
//! malloc + free, in one run.
//!
//! ```text
//! cargo run --release -p balloc-bench --bin exhaustion [-- --ms 150 --reps 7 --threads 1,2]
//! ```
//!
//! Cases, each 64 B requests on 16 MiB pools made full by [`fill`] (every byte allocated, the
//! thread cache flushed):
//! - (a) `ConcurrentPool::alloc(64)`, failing; and `LocalCache::alloc(64)` (one `pool.local()`
//!   per thread), failing;
//! - (b) `std::alloc::System`: `alloc` + `dealloc` of 64 B;
//! - (c) a `GlobalPool` (used through `GlobalAlloc` directly, not installed) whose pool is full:
//!   `alloc` + `dealloc` of 64 B, which its system fallback serves.
//!
//! Each case runs on 1 and on 2 threads at once; each thread times its own loop (after one
//! untimed call), and a case's figure is the mean over its threads of ns per call. Repetitions
//! run every thread count and case before the next, the case order rotating, so a burst of
//! noise on a shared host hits all alike; ratios to (b) are paired by repetition and thread
//! count, and shown as median [min–max]. The targets: (a) ≤ 10× (b), (c) ≤ 3× (b).

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use std::alloc::System;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use balloc_bench::exhaust::fill;
use balloc_bench::machine::Machine;
use balloc_bench::report::{fmt_num, Spread};
use balloc_concurrent::{ConcurrentPool, GlobalPool};
use clap::Parser;

/// Pool size: 16 MiB, as in the core benches.
const POOL: usize = 1 << 24;
/// Request size: the smallest block.
const SIZE: usize = 64;
/// A timed loop reads the clock about this often (its batch of calls doubles until it takes
/// this long): often enough to stop near the deadline, rarely enough to cost nothing per call.
const CLOCK_EVERY: Duration = Duration::from_micros(100);
/// Targets, as multiples of (b): (a) and (c).
const TARGET_FAIL: f64 = 10.0;
const TARGET_FALLBACK: f64 = 3.0;

/// The cost of running out of memory in balloc, next to the system allocator's malloc + free.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Length of each timed loop, per thread, in milliseconds.
    #[arg(long, default_value_t = 150)]
    ms: u64,
    /// Calls per thread per loop instead of a time (overrides `--ms`).
    #[arg(long)]
    iters: Option<u64>,
    /// Repetitions; the tables show their median and min–max.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// Thread counts (comma-separated); every thread runs the case at once.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
}

/// How long each thread's loop runs.
#[derive(Clone, Copy, Debug)]
enum Budget {
    Time(Duration),
    Calls(u64),
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// (a) `ConcurrentPool::alloc(64)` on the full pool.
    PoolFail,
    /// (a) `LocalCache::alloc(64)` on the full pool.
    LocalFail,
    /// (b) `System` alloc + dealloc.
    SystemPair,
    /// (c) `GlobalPool` alloc + dealloc on a full pool (served by `System`).
    GlobalPair,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::PoolFail,
        Case::LocalFail,
        Case::SystemPair,
        Case::GlobalPair,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::PoolFail => "(a) pool.alloc(64), fails",
            Case::LocalFail => "(a) pool.local().alloc(64), fails",
            Case::SystemPair => "(b) System alloc + dealloc 64 B",
            Case::GlobalPair => "(c) GlobalPool alloc + dealloc 64 B, full",
        }
    }

    /// The target as a multiple of (b), for the cases that have one.
    fn target(self) -> Option<f64> {
        match self {
            Case::PoolFail | Case::LocalFail => Some(TARGET_FAIL),
            Case::GlobalPair => Some(TARGET_FALLBACK),
            Case::SystemPair => None,
        }
    }
}

/// Calls `op` until `budget` is spent; returns the calls made and the time they took.
#[inline(always)]
fn timed(budget: Budget, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    match budget {
        Budget::Calls(n) => {
            for _ in 0..n {
                op();
            }
            (n, start.elapsed())
        }
        Budget::Time(d) => {
            let (mut calls, mut batch, mut last) = (0u64, 1u64, start);
            loop {
                for _ in 0..batch {
                    op();
                }
                calls += batch;
                let now = Instant::now();
                if now - start >= d {
                    return (calls, now - start);
                }
                if now - last < CLOCK_EVERY {
                    batch *= 2;
                }
                last = now;
            }
        }
    }
}

/// The allocators under test, full.
struct Subjects {
    pool: ConcurrentPool,
    global: GlobalPool,
}

/// Runs `case` on `threads` threads at once; returns the mean over threads of ns per call.
fn measure(s: &Subjects, case: Case, threads: usize, budget: Budget) -> f64 {
    let layout = Layout::from_size_align(SIZE, 8).expect("valid layout");
    let barrier = Barrier::new(threads);
    let per_thread: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let fail = |r: Result<_, _>| {
                        assert!(r.is_err(), "an allocation succeeded on a full pool")
                    };
                    let (calls, took) = match case {
                        Case::PoolFail => {
                            let one = || fail(black_box(s.pool.alloc(black_box(SIZE))));
                            one();
                            barrier.wait();
                            timed(budget, one)
                        }
                        Case::LocalFail => {
                            let local = s.pool.local();
                            let one = || fail(black_box(local.alloc(black_box(SIZE))));
                            one();
                            barrier.wait();
                            timed(budget, one)
                        }
                        Case::SystemPair => {
                            let one = || pair(&System, layout);
                            one();
                            barrier.wait();
                            timed(budget, one)
                        }
                        Case::GlobalPair => {
                            let one = || pair(&s.global, layout);
                            one();
                            barrier.wait();
                            timed(budget, one)
                        }
                    };
                    took.as_nanos() as f64 / calls as f64
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a measuring thread panicked"))
            .collect()
    });
    per_thread.iter().sum::<f64>() / per_thread.len() as f64
}

/// One alloc + dealloc of `layout` through `GlobalAlloc`.
#[inline(always)]
fn pair<A: GlobalAlloc>(a: &A, layout: Layout) {
    // SAFETY: `layout` has a non-zero size.
    let p = unsafe { a.alloc(black_box(layout)) };
    assert!(!p.is_null(), "the allocator refused 64 B");
    // SAFETY: `p` was just allocated by `a` with `layout`, and is freed once. `black_box` keeps
    // the compiler from pairing the two calls up and removing both.
    unsafe { a.dealloc(black_box(p), layout) };
}

/// Median, smallest and largest of the repetitions (at least one: `--reps` is checked).
fn spread(v: Vec<f64>) -> Spread {
    Spread::of(v).expect("at least one repetition")
}

/// Prints `rows` (label, cells) under `header`, columns aligned.
fn table(header: &[String], rows: &[(String, Vec<String>)]) {
    let cols = header.len();
    let width = |i: usize| {
        let cells = rows.iter().map(|r| {
            if i == 0 {
                r.0.chars().count()
            } else {
                r.1[i - 1].chars().count()
            }
        });
        cells.chain([header[i].chars().count()]).max().unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let line = |first: &str, rest: &[String]| {
        let mut s = format!("  {first:<w$}", w = widths[0]);
        for (c, w) in rest.iter().zip(&widths[1..]) {
            s.push_str(&format!("  {c:>w$}"));
        }
        println!("{s}");
    };
    line(&header[0], &header[1..]);
    for (label, cells) in rows {
        line(label, cells);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.reps == 0 || args.threads.is_empty() || args.threads.contains(&0) {
        return Err("--reps, --threads and every thread count must be at least 1".into());
    }
    let budget = match args.iters {
        Some(n) if n > 0 => Budget::Calls(n),
        Some(_) => return Err("--iters must be at least 1".into()),
        None => Budget::Time(Duration::from_millis(args.ms)),
    };
    let started = Instant::now();

    let subjects = Subjects {
        pool: ConcurrentPool::new(POOL)?,
        global: GlobalPool::new(POOL),
    };
    let held = fill(&subjects.pool);
    let layout = Layout::from_size_align(SIZE, 8)?;
    // One alloc + dealloc through the GlobalPool; true when the block came from its pool. The
    // first one builds the pool, which is then filled like the other.
    let global_round_trip = || {
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { subjects.global.alloc(layout) };
        assert!(!p.is_null(), "the GlobalPool refused 64 B");
        let in_pool = subjects.global.pool().is_some_and(|pool| pool.contains(p));
        // SAFETY: `p` was just allocated by the GlobalPool with `layout`, and is freed once.
        unsafe { subjects.global.dealloc(p, layout) };
        in_pool
    };
    global_round_trip();
    let global_pool = subjects
        .global
        .pool()
        .ok_or("the GlobalPool could not build its pool")?;
    // Never freed: a `GlobalPool` is made for a `static` and never gives its pool back.
    let _global_held = fill(global_pool);
    assert!(
        !global_round_trip(),
        "the full GlobalPool served 64 B from its pool"
    );

    println!("balloc exhaustion cost");
    println!("machine: {}", Machine::detect());
    let how = match budget {
        Budget::Time(d) => format!("{} ms loops", d.as_millis()),
        Budget::Calls(n) => format!("{n} calls a loop"),
    };
    println!(
        "16 MiB pools, full; {SIZE} B requests; {} repetitions of {how} per thread; each figure \
         is the mean over the threads of each thread's own ns per call; median [min–max] over \
         the repetitions",
        args.reps
    );

    // ns[rep][thread count index][case index]
    let mut ns = vec![vec![[0f64; Case::ALL.len()]; args.threads.len()]; args.reps];
    for (rep, by_threads) in ns.iter_mut().enumerate() {
        for (ti, &n) in args.threads.iter().enumerate() {
            for i in 0..Case::ALL.len() {
                let ci = (i + rep) % Case::ALL.len();
                by_threads[ti][ci] = measure(&subjects, Case::ALL[ci], n, budget);
            }
        }
    }

    let header: Vec<String> = std::iter::once("ns per call".to_owned())
        .chain(args.threads.iter().map(|n| format!("{n} thr")))
        .collect();
    let rows: Vec<(String, Vec<String>)> = Case::ALL
        .iter()
        .enumerate()
        .map(|(ci, c)| {
            let cells = (0..args.threads.len())
                .map(|ti| {
                    let v = spread(ns.iter().map(|r| r[ti][ci]).collect());
                    format!(
                        "{} [{}–{}]",
                        fmt_num(v.median),
                        fmt_num(v.min),
                        fmt_num(v.max)
                    )
                })
                .collect();
            (c.label().to_owned(), cells)
        })
        .collect();
    println!();
    table(&header, &rows);

    let b = Case::ALL
        .iter()
        .position(|&c| c == Case::SystemPair)
        .expect("listed");
    let mut header: Vec<String> = std::iter::once("over (b), paired by repetition".to_owned())
        .chain(args.threads.iter().map(|n| format!("{n} thr")))
        .collect();
    header.push("target".into());
    let mut missed = Vec::new();
    let rows: Vec<(String, Vec<String>)> = Case::ALL
        .iter()
        .enumerate()
        .filter_map(|(ci, c)| Some((ci, c, c.target()?)))
        .map(|(ci, c, target)| {
            let mut cells: Vec<String> = (0..args.threads.len())
                .map(|ti| {
                    let v = spread(ns.iter().map(|r| r[ti][ci] / r[ti][b]).collect());
                    if v.median > target {
                        missed.push(format!(
                            "{} at {} thr: {}×",
                            c.label(),
                            args.threads[ti],
                            fmt_num(v.median)
                        ));
                    }
                    format!(
                        "{}× [{}–{}]",
                        fmt_num(v.median),
                        fmt_num(v.min),
                        fmt_num(v.max)
                    )
                })
                .collect();
            cells.push(format!("≤ {target}×"));
            (c.label().to_owned(), cells)
        })
        .collect();
    println!();
    table(&header, &rows);
    println!();
    if missed.is_empty() {
        println!("every target met (medians)");
    } else {
        println!("targets missed (medians):");
        for m in &missed {
            println!("  {m}");
        }
    }

    // The failing calls must have changed nothing: once the blocks are back, the pool is whole.
    for p in held {
        subjects.pool.free(p)?;
    }
    subjects.pool.flush_thread_cache();
    let stats = subjects.pool.stats();
    if !stats.is_coalesced() {
        println!("WARNING: the pool is not whole after freeing every block: {stats:?}");
    }
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
