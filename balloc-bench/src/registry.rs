//! Which allocators and workloads exist, and how a (workload, allocator) pair is run.
//!
//! Workload functions are generic over [`BenchAlloc`]; [`Instances::visit`] turns an
//! [`AllocKind`] chosen at run time into a call of a generic [`Visit`] with the concrete type.

use std::alloc::System;
use std::sync::OnceLock;

use rayon::ThreadPool;

use crate::alloc::{BenchAlloc, Global, LockedBuddyHeap, MutexBuddy, RingOnly};
use crate::balloc::{BallocGlobal, BallocLocal};
use crate::workload::{self, Budget, Outcome, FRAG_POOL};

/// Pool size for the pool allocators in the throughput workloads: 1 GiB of address space,
/// reserved lazily, so that no workload comes near running out (the largest, `larson` at 16
/// threads, holds ~10 MiB).
pub const BIG_POOL: usize = 1 << 30;

/// An allocator under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum AllocKind {
    /// balloc's `ConcurrentPool`, each thread through its own `LocalCache`.
    BallocLocal,
    /// balloc's `ConcurrentPool` through `GlobalAlloc`, as a `#[global_allocator]`.
    BallocGlobal,
    /// `balloc_core::BuddyPool` under one `std::sync::Mutex`.
    MutexBuddy,
    /// `buddy_system_allocator` 0.13 `LockedHeap<32>` (spin lock).
    LockedHeap,
    /// The system allocator (glibc malloc here).
    System,
    /// mimalloc.
    Mimalloc,
    /// jemalloc (tikv-jemallocator).
    Jemalloc,
    /// snmalloc (snmalloc-rs).
    Snmalloc,
    /// No allocator: the producer-consumer ring's own cost.
    RingOnly,
}

impl AllocKind {
    /// Every allocator, in report order (the first is the reference for ratios).
    pub const ALL: [AllocKind; 9] = [
        AllocKind::BallocLocal,
        AllocKind::BallocGlobal,
        AllocKind::MutexBuddy,
        AllocKind::LockedHeap,
        AllocKind::System,
        AllocKind::Mimalloc,
        AllocKind::Jemalloc,
        AllocKind::Snmalloc,
        AllocKind::RingOnly,
    ];

    /// The name in tables and charts.
    pub fn label(self) -> &'static str {
        match self {
            AllocKind::BallocLocal => "balloc LocalCache",
            AllocKind::BallocGlobal => "balloc GlobalAlloc",
            AllocKind::MutexBuddy => "Mutex<BuddyPool>",
            AllocKind::LockedHeap => "bsa LockedHeap<32>",
            AllocKind::System => "system (glibc)",
            AllocKind::Mimalloc => "mimalloc",
            AllocKind::Jemalloc => "jemalloc",
            AllocKind::Snmalloc => "snmalloc",
            AllocKind::RingOnly => "ring only (no alloc)",
        }
    }

    /// The name on the command line and in the CSV.
    pub fn id(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .expect("no skipped variants")
            .get_name()
            .to_owned()
    }

    /// True for the allocators that manage one fixed region (the only ones that can run out).
    pub fn is_pool(self) -> bool {
        matches!(
            self,
            AllocKind::BallocLocal
                | AllocKind::BallocGlobal
                | AllocKind::MutexBuddy
                | AllocKind::LockedHeap
        )
    }
}

/// A workload (see `balloc-bench/README.md` for each one's constants and why).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Workload {
    /// Alloc + free of 64 B in a loop.
    #[value(name = "pair-64")]
    Pair64,
    /// Alloc + free of 4 KiB in a loop.
    #[value(name = "pair-4k")]
    Pair4k,
    /// Alloc + free of 64 KiB in a loop.
    #[value(name = "pair-64k")]
    Pair64k,
    /// 1,000 allocs of sizes cycling 64..4096, then 1,000 frees.
    Batch,
    /// Larson & Krishnan's server simulation.
    Larson,
    /// Blocks allocated on one thread and freed on another.
    ProducerConsumer,
    /// Random sizes and lifetimes until the first out-of-memory (pool allocators only).
    Fragmentation,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 7] = [
        Workload::Pair64,
        Workload::Pair4k,
        Workload::Pair64k,
        Workload::Batch,
        Workload::Larson,
        Workload::ProducerConsumer,
        Workload::Fragmentation,
    ];

    /// The name on the command line, in tables and in the CSV.
    pub fn id(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .expect("no skipped variants")
            .get_name()
            .to_owned()
    }

    /// What the workload does, in a sentence for the report's readers.
    pub fn about(self) -> &'static str {
        match self {
            Workload::Pair64 => "each thread allocates 64 B and frees it at once, in a loop",
            Workload::Pair4k => "the same with 4 KiB blocks",
            Workload::Pair64k => "the same with 64 KiB blocks",
            Workload::Batch => {
                "each thread allocates 1,000 blocks (64 B to 4 KiB, each power of two in turn), \
                 then frees them in the same order"
            }
            Workload::Larson => {
                "a server simulation (Larson & Krishnan): each thread holds 1,000 blocks of \
                 8-1,000 B and replaces a random one per op; one freed block in 8 goes to the \
                 next thread, which frees it"
            }
            Workload::ProducerConsumer => {
                "threads in pairs: one allocates 64 B blocks and passes them through a ring, the \
                 other frees them (every free is a cross-thread free); `ring only` is the ring \
                 with no allocator, its ceiling"
            }
            Workload::Fragmentation => {
                "random sizes (17 B to 64 KiB) and lifetimes on a 64 MiB pool until the first \
                 out-of-memory; the result is how much of the pool was live then (pool \
                 allocators only)"
            }
        }
    }

    /// True for the workloads that measure throughput (all but `fragmentation`).
    pub fn is_throughput(self) -> bool {
        self != Workload::Fragmentation
    }

    /// Whether `kind` takes part in this workload.
    pub fn applies_to(self, kind: AllocKind) -> bool {
        match self {
            Workload::Fragmentation => kind.is_pool(),
            Workload::ProducerConsumer => true,
            _ => kind != AllocKind::RingOnly,
        }
    }

    /// Ops one round of every thread does, on `threads` threads (criterion's throughput).
    pub fn ops_per_round(self, threads: usize) -> u64 {
        let t = threads as u64;
        match self {
            Workload::Batch => t * workload::BATCH_LEN as u64,
            Workload::ProducerConsumer => (t / 2).max(1),
            _ => t,
        }
    }
}

/// Something to do with an allocator whose type is known only at run time.
pub trait Visit {
    /// What it returns.
    type Out;
    /// Does it with `a`.
    fn visit<A: BenchAlloc>(self, a: &A) -> Self::Out;
}

/// The allocators of a process, each made on first use and kept, so that the pools' pages stay
/// touched between runs as a long-lived process's would.
#[derive(Default)]
pub struct Instances {
    balloc_local: OnceLock<BallocLocal>,
    balloc_global: OnceLock<BallocGlobal>,
    mutex_buddy: OnceLock<MutexBuddy>,
    locked_heap: OnceLock<LockedBuddyHeap>,
}

impl Instances {
    /// No allocator made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `v` with the long-lived instance of `kind` (pools of [`BIG_POOL`] bytes).
    pub fn visit<V: Visit>(&self, kind: AllocKind, v: V) -> V::Out {
        match kind {
            AllocKind::BallocLocal => {
                v.visit(self.balloc_local.get_or_init(|| BallocLocal::new(BIG_POOL)))
            }
            AllocKind::BallocGlobal => v.visit(
                self.balloc_global
                    .get_or_init(|| BallocGlobal::new(BIG_POOL)),
            ),
            AllocKind::MutexBuddy => {
                v.visit(self.mutex_buddy.get_or_init(|| MutexBuddy::new(BIG_POOL)))
            }
            AllocKind::LockedHeap => v.visit(
                self.locked_heap
                    .get_or_init(|| LockedBuddyHeap::new(BIG_POOL)),
            ),
            _ => visit_stateless(kind, v),
        }
    }
}

/// Runs `v` with a fresh instance of `kind`; pool allocators get a new pool of `pool_size` bytes.
pub fn visit_fresh<V: Visit>(kind: AllocKind, pool_size: usize, v: V) -> V::Out {
    match kind {
        AllocKind::BallocLocal => v.visit(&BallocLocal::new(pool_size)),
        AllocKind::BallocGlobal => v.visit(&BallocGlobal::new(pool_size)),
        AllocKind::MutexBuddy => v.visit(&MutexBuddy::new(pool_size)),
        AllocKind::LockedHeap => v.visit(&LockedBuddyHeap::new(pool_size)),
        _ => visit_stateless(kind, v),
    }
}

fn visit_stateless<V: Visit>(kind: AllocKind, v: V) -> V::Out {
    match kind {
        AllocKind::System => v.visit(&Global(System)),
        AllocKind::Mimalloc => v.visit(&Global(mimalloc::MiMalloc)),
        AllocKind::Jemalloc => v.visit(&Global(tikv_jemallocator::Jemalloc)),
        AllocKind::Snmalloc => v.visit(&Global(snmalloc_rs::SnMalloc)),
        AllocKind::RingOnly => v.visit(&RingOnly),
        _ => unreachable!("pool allocators are handled by the caller"),
    }
}

/// One run of `workload` on the threads of `pool`.
#[derive(Clone, Copy, Debug)]
pub struct Run<'p> {
    /// What to run.
    pub workload: Workload,
    /// The threads to run it on (all of them take part).
    pub pool: &'p ThreadPool,
    /// How long (ignored by `fragmentation`, which runs until out-of-memory).
    pub budget: Budget,
    /// Seed for the workloads that draw random numbers.
    pub seed: u64,
}

impl Visit for Run<'_> {
    type Out = Outcome;

    fn visit<A: BenchAlloc>(self, a: &A) -> Outcome {
        let Run {
            workload,
            pool,
            budget,
            seed,
        } = self;
        match workload {
            Workload::Pair64 => workload::pair(a, pool, 64, budget),
            Workload::Pair4k => workload::pair(a, pool, 4096, budget),
            Workload::Pair64k => workload::pair(a, pool, 65536, budget),
            Workload::Batch => workload::batch(a, pool, budget),
            Workload::Larson => workload::larson(a, pool, budget, seed),
            Workload::ProducerConsumer => workload::producer_consumer(a, pool, budget),
            Workload::Fragmentation => workload::fragmentation(a, pool, FRAG_POOL, seed),
        }
    }
}

impl Run<'_> {
    /// Runs on `kind`: `fragmentation` on a fresh pool of `FRAG_POOL` bytes, the others on the
    /// long-lived instance in `instances`.
    ///
    /// # Panics
    /// When the workload does not apply to `kind`.
    pub fn on(self, instances: &Instances, kind: AllocKind) -> Outcome {
        assert!(
            self.workload.applies_to(kind),
            "{} does not run on {}",
            self.workload.id(),
            kind.id()
        );
        if self.workload == Workload::Fragmentation {
            visit_fresh(kind, FRAG_POOL, self)
        } else {
            instances.visit(kind, self)
        }
    }
}

/// One rayon pool per thread count, made on first use.
#[derive(Default)]
pub struct ThreadPools(std::sync::Mutex<std::collections::BTreeMap<usize, &'static ThreadPool>>);

impl ThreadPools {
    /// No pool made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pool of `n` threads. Pools live for the rest of the process (their threads sleep when
    /// idle).
    ///
    /// # Panics
    /// When the OS will not start the threads.
    pub fn get(&self, n: usize) -> &'static ThreadPool {
        self.0.lock().unwrap().entry(n).or_insert_with(|| {
            Box::leak(Box::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .thread_name(move |i| format!("bench-{n}-{i}"))
                    .build()
                    .expect("start a rayon pool"),
            ))
        })
    }
}
