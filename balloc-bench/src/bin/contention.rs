//! A contention proxy that runs on a two-core machine: per allocator operation, how many atomic
//! read-modify-writes and stores balloc makes on its pool state, and how many of those writes
//! land on cache lines that many threads write.
//!
//! ```text
//! balloc-bench/contention.sh [--threads 2,4,8,16] [--ops 1000000] [--lines 5] [--out FILE]
//! ```
//!
//! It needs balloc-concurrent built with `--cfg balloc_contention`, under which every atomic of
//! the pool's state records its writes (`balloc_concurrent::contention`); `contention.sh`
//! builds it so, in `target-contention/` (the flag changes every crate's build, and a separate
//! target directory keeps it from invalidating the normal one). Built without the cfg, this
//! binary says so and exits with status 2.
//!
//! # Why writes to shared lines
//!
//! A core writes a line only while it holds it exclusive, so each write to a line that other
//! cores also write first invalidates their copies and pulls the line over (a cache miss that
//! takes ~100 cycles or more, and that no other core can overlap with its own write to that
//! line). Writes to lines one thread writes alone stay in its cache and cost nothing extra. So
//! a pool's scaling is bounded by its writes per operation to lines that many threads write,
//! and that count does not need many cores to measure: it is the same on two cores as on
//! sixteen, wherever the threads' time slices interleave finely enough to mix their writes
//! (they do: every workload runs for many time slices).
//!
//! # What runs
//!
//! For each thread count, the `producer-consumer` and `larson` workloads of `balloc-bench` (see
//! its README) on the threads of a rayon pool, through both front-ends: `balloc LocalCache`
//! (each thread its own `LocalCache`) and `balloc GlobalAlloc` (`GlobalAlloc` called on the
//! `ConcurrentPool`, which serves each thread from its implicit thread cache; the pool is not
//! installed as the process's global allocator, so the harness's own allocations do not reach
//! it, and nothing outside balloc's atomics is counted anyway). One pool of
//! `registry::BIG_POOL` bytes per front-end serves every run. Each run is made twice with the
//! same number of rounds: once to warm the pool and caches up, then, after
//! `contention::reset`, once measured. Rounds per thread are `--ops` divided by the ops a
//! round makes at that thread count, so every run makes about `--ops` operations.
//!
//! On two cores, runs of more than two threads are oversubscribed: a producer runs for a time
//! slice while its consumer waits, empties its own supply, and takes blocks wherever it finds
//! them. So each thread count also runs `producer-consumer, lockstep`: `threads / 2` pairs of
//! `LocalCache`s on one thread, every pair in turn allocating a burst of `PC_BURST` blocks and
//! freeing it, each cache's writes counted as its own simulated thread's
//! (`contention::act_as`, which the pool's per-thread shards follow too). That is the steady
//! state of a machine with a core per thread where each consumer keeps pace with its producer.
//!
//! # Columns
//!
//! An op is the workload's unit (one alloc + one free: see the README). Per op:
//! - `RMW`: atomic read-modify-writes (`fetch_*`, `swap`, compare-and-swaps, failed or not) on
//!   pool state: bitmaps and summaries, depot, transit shards, latch, registry, reference
//!   counts. Tag words inside free blocks are block memory and are not counted;
//! - `failed CAS`: compare-and-swaps that failed (each also counts as an RMW: a failed
//!   `lock cmpxchg` takes its line exclusive too);
//! - `stores`: atomic stores, mostly each cache's own stack tops (one per cache hit, on a line
//!   only its thread writes) and the depot's magazine contents;
//! - `handoffs`: writes whose writer was not the previous writer of the line: each moves the
//!   line from one core to another when every thread has a core (a thread's run of stores to
//!   one line, such as a magazine's contents, is one handoff). On two cores, threads that share
//!   a core run in time slices, so the threaded runs see fewer handoffs than sixteen cores
//!   would; the lockstep run (below) interleaves its simulated threads burst by burst;
//! - `≥3 writers`: writes (RMWs + stores) to lines that at least 3 threads wrote during the run;
//! - `≥ n/2 writers`: writes to lines that at least half of the run's `n` threads wrote, and
//!   `lines`: how many such lines (shown from 4 threads on);
//! - `hottest shared line`: of the lines at least 2 threads wrote, the one with the most
//!   writes: its writers, its writes per op, and which of the pool's structures it holds
//!   (`ConcurrentPool::contention_structures`).
//!
//! Below the table, for each run: its writes per op to lines with at least 3 writers, summed by
//! kind of structure (depot, free bitmap, summary, ...), and its `--lines` most written shared
//! lines with their address and structure. The threaded runs include their rare setup work:
//! `larson` fills and empties a window of 1,000 blocks per thread, and every `LocalCache` is
//! flushed when its thread ends.

#[cfg(not(balloc_contention))]
fn main() {
    eprintln!(
        "balloc: the contention proxy needs balloc-concurrent built with \
         `--cfg balloc_contention`: run `balloc-bench/contention.sh`, or \
         `RUSTFLAGS=\"--cfg balloc_contention\" CARGO_TARGET_DIR=target-contention \
         cargo run --release -p balloc-bench --bin contention`"
    );
    std::process::exit(2);
}

#[cfg(balloc_contention)]
fn main() {
    counting::main();
}

#[cfg(balloc_contention)]
mod counting {
    use std::fmt::Write as _;
    use std::path::PathBuf;
    use std::time::Instant;

    use balloc_bench::alloc::BenchAlloc;
    use balloc_bench::balloc::{BallocGlobal, BallocLocal};
    use balloc_bench::registry::{AllocKind, Run, ThreadPools, Visit, Workload, BIG_POOL};
    use balloc_bench::workload::{Budget, Outcome};
    use balloc_bench::workload::{PC_BURST, PC_SIZE};
    use balloc_concurrent::contention::{self, structure_of, Contention, Structure};
    use balloc_concurrent::{ConcurrentPool, LocalCache};
    use clap::Parser;
    use core::alloc::Layout;

    /// Seed of `larson`'s random sizes and choices (the scaling report's default).
    const SEED: u64 = 0x5EED;

    /// balloc's contention proxy: atomic writes per op, and writes to lines many threads write.
    #[derive(Parser, Debug)]
    #[command(about)]
    struct Args {
        /// Thread counts (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "2,4,8,16")]
        threads: Vec<usize>,
        /// Operations per run (all threads together); rounds per thread follow from it.
        #[arg(long, default_value_t = 1_000_000)]
        ops: u64,
        /// Most written shared lines to list per run.
        #[arg(long, default_value_t = 5)]
        lines: usize,
        /// Also write the tables, as markdown, to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Exit with status 1 unless every lockstep run with 8 or more threads wrote at most
        /// [`CHECK_SHARED`] times per op to lines that 3 or more threads write (the steady state
        /// of remote frees writes no such line; the lockstep run is one thread, so its counts
        /// do not depend on scheduling).
        #[arg(long)]
        check: bool,
    }

    /// `--check`'s bound on writes per op to lines 3 or more threads write, in the lockstep
    /// runs from 8 threads on: 1 in 10,000 ops (the depot shared by every thread, which this
    /// replaced, wrote such lines about once per op).
    const CHECK_SHARED: f64 = 1e-4;

    /// One measured run.
    struct Row {
        workload: String,
        /// The lockstep simulation (see the module docs), not a threaded run.
        lockstep: bool,
        kind: AllocKind,
        threads: usize,
        outcome: Outcome,
        counts: Contention,
        structures: Vec<Structure>,
    }

    impl Row {
        fn per_op(&self, n: u64) -> f64 {
            n as f64 / self.outcome.ops.max(1) as f64
        }

        /// Writers that make a line "shared by half the threads", from 4 threads on.
        fn half(&self) -> Option<u32> {
            (self.threads >= 4).then_some(self.threads as u32 / 2)
        }

        fn name(&self, line: usize) -> String {
            structure_of(&self.structures, line).unwrap_or_else(|| "?".into())
        }

        /// Writes per op to lines at least `min_writers` threads wrote, summed by kind of
        /// structure (the first structure a line holds, without its order and magazine),
        /// most first.
        fn by_kind(&self, min_writers: u32) -> Vec<(String, f64)> {
            let mut kinds: Vec<(String, u64)> = Vec::new();
            for l in self.counts.shared(min_writers) {
                let name = self.name(l.line);
                let first = name.split(", ").next().unwrap_or_default();
                let kind = first.split(" k=").next().unwrap_or_default().to_string();
                match kinds.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, w)) => *w += l.writes,
                    None => kinds.push((kind, l.writes)),
                }
            }
            kinds.sort_by_key(|k| core::cmp::Reverse(k.1));
            kinds
                .into_iter()
                .map(|(k, w)| (k, self.per_op(w)))
                .collect()
        }

        fn cells(&self) -> Vec<String> {
            let c = &self.counts;
            let (half_writes, half_lines) = match self.half() {
                Some(h) => (
                    format!("{:.3}", self.per_op(c.shared_writes(h))),
                    c.shared_lines(h).to_string(),
                ),
                None => ("-".into(), "-".into()),
            };
            let (hot_writers, hot_writes, hot_name) = match c.shared(2).next() {
                Some(l) => (
                    l.writers.to_string(),
                    format!("{:.3}", self.per_op(l.writes)),
                    self.name(l.line),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            vec![
                self.workload.clone(),
                self.kind.label().into(),
                self.threads.to_string(),
                self.outcome.ops.to_string(),
                format!("{:.3}", self.per_op(c.rmw)),
                format!("{:.3}", self.per_op(c.failed_cas)),
                format!("{:.3}", self.per_op(c.stores)),
                format!("{:.3}", self.per_op(c.handoffs())),
                format!("{:.3}", self.per_op(c.shared_writes(3))),
                half_writes,
                half_lines,
                hot_writers,
                hot_writes,
                hot_name,
            ]
        }
    }

    const HEADER: [&str; 14] = [
        "workload",
        "front-end",
        "threads",
        "ops",
        "RMW/op",
        "failed CAS/op",
        "stores/op",
        "handoffs/op",
        "writes/op ≥3 writers",
        "writes/op ≥ n/2 writers",
        "lines ≥ n/2",
        "hottest shared: writers",
        "hottest: writes/op",
        "hottest: structure",
    ];

    fn table_row(cells: &[String]) -> String {
        format!("| {} |\n", cells.join(" | "))
    }

    /// The summary table and the per-run line lists, as markdown.
    fn markdown(rows: &[Row], lines: usize) -> String {
        let mut s = String::new();
        let header: Vec<String> = HEADER.iter().map(|h| h.to_string()).collect();
        s += &table_row(&header);
        s += &table_row(&vec!["---".to_string(); HEADER.len()]);
        for r in rows {
            s += &table_row(&r.cells());
        }
        let untracked: u64 = rows.iter().map(|r| r.counts.untracked).sum();
        if untracked > 0 {
            let _ = writeln!(
                s,
                "\n**WARNING: {untracked} writes found no entry in the line table: the per-line \
                 columns are underestimates.**"
            );
        }
        let errors: u64 = rows.iter().map(|r| r.outcome.errors).sum();
        if errors > 0 {
            let _ = writeln!(s, "\n**WARNING: {errors} allocations failed.**");
        }
        if lines == 0 {
            return s;
        }
        let _ = writeln!(
            s,
            "\nPer run: writes/op to lines with ≥ 3 writers by kind of structure, then the most \
             written shared lines (≥ 2 writers):\n"
        );
        for r in rows {
            let kinds: Vec<String> = r
                .by_kind(3)
                .iter()
                .map(|(k, w)| format!("{k} {w:.3}"))
                .collect();
            let _ = writeln!(
                s,
                "- {} / {} / {} threads: {}",
                r.workload,
                r.kind.label(),
                r.threads,
                if kinds.is_empty() {
                    "no line with ≥ 3 writers".to_string()
                } else {
                    kinds.join(", ")
                }
            );
            for l in r.counts.shared(2).take(lines) {
                let _ = writeln!(
                    s,
                    "  - `{:#x}`: {} writers, {:.3} writes/op, {:.3} handoffs/op, {}",
                    l.addr(),
                    l.writers,
                    r.per_op(l.writes),
                    r.per_op(l.handoffs),
                    r.name(l.line)
                );
            }
        }
        s
    }

    /// `producer-consumer` as `pairs` pairs of caches of `pool` running in lockstep on this
    /// thread, each cache counted as its own writer (`contention::act_as`): in each round,
    /// every pair's producer allocates a burst of [`PC_BURST`] blocks of [`PC_SIZE`] bytes and
    /// its consumer frees them. What a machine with a core per thread would do if every thread
    /// kept pace with its partner, free of the time slices that mix the threaded runs on two
    /// cores. `rounds` rounds warm the caches and depot up, then `rounds` more are measured (the
    /// steady state: the caches' creation and final flush are outside). Returns the blocks
    /// freed in the measured rounds (the ops) and what they wrote.
    fn lockstep(pool: &ConcurrentPool, pairs: usize, rounds: u64) -> (u64, Contention) {
        let layout = Layout::from_size_align(PC_SIZE, 8).expect("a valid layout");
        // Each cache is made and dropped (flushed) as its simulated thread too.
        let caches: Vec<(LocalCache<'_>, LocalCache<'_>)> = (0..pairs)
            .map(|i| {
                contention::act_as(Some(2 * i as u32));
                let producer = pool.local();
                contention::act_as(Some(2 * i as u32 + 1));
                (producer, pool.local())
            })
            .collect();
        let mut burst = Vec::with_capacity(PC_BURST);
        let mut run = |rounds: u64| {
            for _ in 0..rounds {
                for (i, (producer, consumer)) in caches.iter().enumerate() {
                    contention::act_as(Some(2 * i as u32));
                    for _ in 0..PC_BURST {
                        burst.push(producer.alloc_layout(layout).expect("a 1 GiB pool"));
                    }
                    contention::act_as(Some(2 * i as u32 + 1));
                    for p in burst.drain(..) {
                        // SAFETY: allocated just above with `layout`, freed once.
                        unsafe { consumer.dealloc(p, layout) };
                    }
                }
            }
        };
        run(rounds);
        contention::reset();
        run(rounds);
        let counts = contention::snapshot();
        for (i, (producer, consumer)) in caches.into_iter().enumerate() {
            contention::act_as(Some(2 * i as u32));
            drop(producer);
            contention::act_as(Some(2 * i as u32 + 1));
            drop(consumer);
        }
        contention::act_as(None);
        (rounds * (pairs * PC_BURST) as u64, counts)
    }

    /// Warms up with one run, then measures a second one.
    struct Measure<'p> {
        run: Run<'p>,
    }

    impl Visit for Measure<'_> {
        type Out = (Outcome, Contention);

        fn visit<A: BenchAlloc>(self, a: &A) -> (Outcome, Contention) {
            self.run.visit(a);
            contention::reset();
            let outcome = self.run.visit(a);
            (outcome, contention::snapshot())
        }
    }

    pub(super) fn main() {
        let args = Args::parse();
        let pools = ThreadPools::new();
        let local = BallocLocal::new(BIG_POOL);
        let global = BallocGlobal::new(BIG_POOL);
        let started = Instant::now();
        let mut rows = Vec::new();
        for &threads in &args.threads {
            for workload in [Workload::ProducerConsumer, Workload::Larson] {
                for kind in [AllocKind::BallocLocal, AllocKind::BallocGlobal] {
                    let rounds = (args.ops / workload.ops_per_round(threads)).max(1);
                    let run = Run {
                        workload,
                        pool: pools.get(threads),
                        budget: Budget::Rounds(rounds),
                        seed: SEED,
                    };
                    let m = Measure { run };
                    let (pool, (outcome, counts)): (&ConcurrentPool, _) = match kind {
                        AllocKind::BallocLocal => (&local.0, m.visit(&local)),
                        _ => (&global.0, m.visit(&global)),
                    };
                    eprintln!(
                        "{} / {} / {threads} threads: {} ops, {:.1} s so far",
                        workload.id(),
                        kind.label(),
                        outcome.ops,
                        started.elapsed().as_secs_f64()
                    );
                    rows.push(Row {
                        lockstep: false,
                        workload: workload.id(),
                        kind,
                        threads,
                        outcome,
                        counts,
                        structures: pool.contention_structures(),
                    });
                }
            }
        }
        for &threads in &args.threads {
            let pairs = (threads / 2).max(1);
            let pool = ConcurrentPool::new(BIG_POOL).expect("reserve the pool");
            let rounds = (args.ops / (pairs * PC_BURST) as u64).max(1);
            let (ops, counts) = lockstep(&pool, pairs, rounds);
            rows.push(Row {
                lockstep: true,
                workload: "producer-consumer, lockstep".into(),
                kind: AllocKind::BallocLocal,
                threads: pairs * 2,
                outcome: Outcome {
                    ops,
                    errors: 0,
                    elapsed: Default::default(),
                    frag: None,
                    lat: None,
                },
                counts,
                structures: pool.contention_structures(),
            });
        }
        let text = markdown(&rows, args.lines);
        print!("{text}");
        if args.check {
            let mut failed = false;
            for r in rows.iter().filter(|r| r.lockstep && r.threads >= 8) {
                let shared = r.per_op(r.counts.shared_writes(3));
                let verdict = if shared <= CHECK_SHARED {
                    "ok"
                } else {
                    "FAILED"
                };
                failed |= shared > CHECK_SHARED;
                println!(
                    "check: lockstep, {} threads: {shared:.5} writes/op to lines with >= 3 \
                     writers (at most {CHECK_SHARED}): {verdict}",
                    r.threads
                );
            }
            if failed {
                eprintln!("balloc: the remote-free steady state writes lines shared by 3+ threads");
                std::process::exit(1);
            }
        }
        if let Some(path) = args.out {
            let doc = format!(
                "# balloc contention proxy\n\n`contention --threads {} --ops {}`\n\n{text}",
                args.threads
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                args.ops
            );
            if let Err(e) = std::fs::write(&path, doc) {
                eprintln!("balloc: cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
        }
    }
}
