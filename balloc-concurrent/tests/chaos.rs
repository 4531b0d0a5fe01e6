//! Many threads run a small pool out of memory together, round after round. Each round every
//! thread starts at a barrier and allocates until an allocation fails, through every front end
//! (`alloc`, `alloc_layout`, `GlobalAlloc`, a `LocalCache`) and several block sizes, cached and
//! uncached. Then the blocks handed out must tile the pool exactly (none twice, none left
//! free), and once every block is freed (by other threads, through every free path) the pool
//! must be whole again.
//!
//! Built with `RUSTFLAGS="--cfg balloc_chaos"` (see `ci/chaos.sh`) the pool yields inside its
//! out-of-memory decision, so that races which need many cores to show (many threads deciding
//! out-of-memory at once) show on two. Without it this is a plain exhaustion race.
//!
//! Every call must end, so a watchdog bounds each round: the rounds run on their own thread,
//! and a round that does not finish within [`ROUND_DEADLINE`] fails the test with a
//! `balloc: watchdog:` message naming the round, the phase and the call each thread is in,
//! instead of hanging the test run.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use balloc_concurrent::{AllocError, ConcurrentPool, LocalCache};

/// The pool: the smallest size, so that every round ends in out-of-memory quickly.
const POOL: usize = 1 << 20;

/// Rounds in all, spread over the pool configurations in [`pools`].
const ROUNDS: usize = 100;

/// How long one round may take. A round is a few milliseconds of work on a 2-core machine:
/// this leaves room for chaos's yields, sanitizers and a loaded machine, so a round that takes
/// this long has a call that does not end (or ends only by luck of the scheduler).
const ROUND_DEADLINE: Duration = Duration::from_secs(10);

/// Block orders the threads ask for. In a 1 MiB pool orders up to 12 (4 KiB) go through the
/// caches (each order's cache is capped at 1/256 of the pool) and the rest do not.
const ORDERS: [u32; 7] = [6, 8, 10, 12, 14, 16, 17];

/// Which entry of [`ORDERS`] a draw of `0..16` picks: mostly small blocks, so that a round is
/// thousands of calls and its last ones split the pool's last large blocks.
const PICK: [usize; 16] = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6];

/// Threads per round: at least 4 per core, so that most threads are descheduled while inside a
/// call, and at least 16, so that many threads reach their out-of-memory decision at once
/// even on a machine with few cores.
fn thread_count() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (4 * cores).max(16)
}

/// The pools the rounds take turns on: default caches, small caches (more refills, flushes and
/// depot traffic per block), and no caches (every call goes to the shared bitmaps).
fn pools() -> [ConcurrentPool; 3] {
    let build = |capacity: Option<usize>| {
        let b = ConcurrentPool::builder().size(POOL);
        match capacity {
            None => b,
            Some(0) => b.cache_capacity(0),
            Some(c) => b.cache_capacity(c).cache_batch(c / 4),
        }
        .build()
        .expect("a 1 MiB pool")
    };
    [build(None), build(Some(8)), build(Some(0))]
}

/// The pools' names, as [`pools`] builds them.
const POOL_NAMES: [&str; 3] = ["default caches", "8-block caches", "no caches"];

/// A front end: how a block is allocated, and how it is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Pool,
    PoolLayout,
    Global,
    Local,
    LocalLayout,
}

impl Way {
    const ALL: [Way; 5] = [
        Way::Pool,
        Way::PoolLayout,
        Way::Global,
        Way::Local,
        Way::LocalLayout,
    ];

    /// Whether this way goes through the thread's `LocalCache` (else through its implicit
    /// thread cache).
    fn uses_local(self) -> bool {
        matches!(self, Way::Local | Way::LocalLayout)
    }

    fn alloc_name(self) -> &'static str {
        match self {
            Way::Pool => "pool.alloc",
            Way::PoolLayout => "pool.alloc_layout",
            Way::Global => "GlobalAlloc::alloc",
            Way::Local => "local.alloc",
            Way::LocalLayout => "local.alloc_layout",
        }
    }

    fn free_name(self) -> &'static str {
        match self {
            Way::Pool => "pool.free",
            Way::PoolLayout => "pool.dealloc",
            Way::Global => "GlobalAlloc::dealloc",
            Way::Local => "local.free",
            Way::LocalLayout => "local.dealloc",
        }
    }
}

/// A block handed out, with the layout it was asked for (which `dealloc` takes back).
#[derive(Clone, Copy, Debug)]
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    order: u32,
}

// SAFETY: a block is memory owned by whichever thread holds this value; it moves with it.
unsafe impl Send for Block {}

impl Block {
    fn addr(&self) -> usize {
        self.ptr.as_ptr().addr()
    }

    fn size(&self) -> usize {
        1 << self.order
    }
}

/// Allocates a block of `order` through `way`, with a request that rounds up to it (size in
/// `(2^order / 2, 2^order]`, alignment up to `2^order`). `None` on out-of-memory, the only error
/// these requests can get.
fn alloc(
    pool: &ConcurrentPool,
    local: &LocalCache<'_>,
    way: Way,
    order: u32,
    rng: &mut Rng,
) -> Option<Block> {
    let block = 1usize << order;
    let size = block / 2 + 1 + rng.below(block as u64 / 2) as usize;
    let align = 1usize << rng.below(u64::from(order) + 1);
    let layout = Layout::from_size_align(size, align).expect("a valid layout");
    let r = match way {
        Way::Pool => pool.alloc(size),
        Way::PoolLayout => pool.alloc_layout(layout),
        Way::Local => local.alloc(size),
        Way::LocalLayout => local.alloc_layout(layout),
        Way::Global => {
            // SAFETY: `layout` has a non-zero size.
            let p = unsafe { GlobalAlloc::alloc(pool, layout) };
            NonNull::new(p).ok_or(AllocError::OutOfMemory { order })
        }
    };
    match r {
        Ok(ptr) => Some(Block { ptr, layout, order }),
        Err(AllocError::OutOfMemory { order: k }) => {
            assert_eq!(
                k,
                order,
                "{}: out-of-memory for the wrong order",
                way.alloc_name()
            );
            None
        }
        Err(e) => panic!("{}({size}, align {align}): {e:?}", way.alloc_name()),
    }
}

/// Frees `b` through `way`.
fn free(pool: &ConcurrentPool, local: &LocalCache<'_>, b: Block, way: Way) {
    let what = || format!("{} of the live block {:p}", way.free_name(), b.ptr);
    match way {
        Way::Pool => pool
            .free(b.ptr)
            .unwrap_or_else(|e| panic!("{}: {e:?}", what())),
        Way::Local => local
            .free(b.ptr)
            .unwrap_or_else(|e| panic!("{}: {e:?}", what())),
        // SAFETY: `b` was allocated from this pool with `b.layout` and is freed once.
        Way::PoolLayout => unsafe { pool.dealloc(b.ptr, b.layout) },
        // SAFETY: as above.
        Way::LocalLayout => unsafe { local.dealloc(b.ptr, b.layout) },
        // SAFETY: as above (`GlobalAlloc` on the pool is the same sized path).
        Way::Global => unsafe { GlobalAlloc::dealloc(pool, b.ptr.as_ptr(), b.layout) },
    }
}

/// One thread's share of a round: allocates until it gets out-of-memory for the smallest
/// order through both of its caches, one after the other. A thread gives up an order (and
/// every larger one) at its first out-of-memory there.
fn exhaust(
    pool: &ConcurrentPool,
    local: &LocalCache<'_>,
    rng: &mut Rng,
    me: &ThreadState,
) -> Vec<Block> {
    let mut got = Vec::new();
    // ORDERS[..open] may still succeed.
    let mut open = ORDERS.len();
    loop {
        let mut i = PICK[rng.below(16) as usize];
        if i >= open {
            i = rng.below(open as u64) as usize;
        }
        let way = Way::ALL[rng.below(Way::ALL.len() as u64) as usize];
        let order = ORDERS[i];
        if let Some(b) = me.call(way.alloc_name(), order, || {
            alloc(pool, local, way, order, rng)
        }) {
            got.push(b);
            continue;
        }
        if i > 0 {
            open = i;
            continue;
        }
        // An allocation reports out-of-memory only after emptying the cache it went through;
        // the thread's other cache (its handle's, or its implicit one) may still hold blocks,
        // which only this thread can hand out.
        let other = if way.uses_local() {
            Way::Pool
        } else {
            Way::Local
        };
        match me.call(other.alloc_name(), order, || {
            alloc(pool, local, other, order, rng)
        }) {
            Some(b) => got.push(b),
            None => return got,
        }
    }
}

/// All threads exhaust the pool together; returns every block handed out. Each thread's
/// caches are empty when its last call fails, and are returned when it ends (a join waits for
/// thread-local destructors, unlike the end of a scope).
fn exhaust_together(
    pool: &ConcurrentPool,
    threads: usize,
    round: usize,
    progress: &Progress,
) -> Vec<Block> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                let me = &progress.threads[t];
                s.spawn(move || {
                    let local = pool.local();
                    let mut rng = Rng::new(round, t);
                    me.set(AT_BARRIER);
                    barrier.wait();
                    me.set(BETWEEN_CALLS);
                    let got = exhaust(pool, &local, &mut rng, me);
                    drop(local);
                    me.set(FINISHED);
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an allocating thread panicked"))
            .collect()
    })
}

/// All threads free `blocks` together, each a shuffled share, through every free path.
fn free_together(
    pool: &ConcurrentPool,
    threads: usize,
    mut blocks: Vec<Block>,
    round: usize,
    progress: &Progress,
) {
    let mut rng = Rng::new(round, threads);
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // Round-robin shares: every thread gets one (perhaps empty), so all reach the barrier.
    let shares: Vec<Vec<Block>> = (0..threads)
        .map(|t| blocks.iter().skip(t).step_by(threads).copied().collect())
        .collect();
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, share)| {
                let barrier = &barrier;
                let me = &progress.threads[t];
                s.spawn(move || {
                    let local = pool.local();
                    let mut rng = Rng::new(round, threads + 1 + t);
                    me.set(AT_BARRIER);
                    barrier.wait();
                    me.set(BETWEEN_CALLS);
                    for b in share {
                        let way = Way::ALL[rng.below(Way::ALL.len() as u64) as usize];
                        me.call(way.free_name(), b.order, || free(pool, &local, b, way));
                    }
                    drop(local);
                    me.set(FINISHED);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a freeing thread panicked");
        }
    });
}

/// The blocks handed out in a round tile the pool: each inside it, aligned to its size and
/// live at that size, no two overlapping, and together the whole pool (every thread got
/// out-of-memory for the smallest order after flushing its caches, so nothing was left free).
fn check_tiling(pool: &ConcurrentPool, blocks: &mut [Block], round: usize, pool_name: &str) {
    let at = || format!("round {round} ({pool_name})");
    for b in blocks.iter() {
        assert!(
            pool.contains(b.ptr.as_ptr()),
            "{}: {b:?} outside the pool",
            at()
        );
        assert_eq!(b.addr() % b.size(), 0, "{}: {b:?} misaligned", at());
        assert_eq!(
            pool.usable_size(b.ptr),
            Some(b.size()),
            "{}: {b:?} is not live at its order",
            at()
        );
    }
    blocks.sort_unstable_by_key(Block::addr);
    for w in blocks.windows(2) {
        assert!(
            w[0].addr() + w[0].size() <= w[1].addr(),
            "{}: {:?} and {:?} overlap: memory handed out twice",
            at(),
            w[0],
            w[1]
        );
    }
    let total: usize = blocks.iter().map(Block::size).sum();
    let stats = pool.stats();
    assert_eq!(
        total,
        POOL,
        "{}: {} blocks handed out add up to {total} of {POOL} bytes: an allocation reported \
         out-of-memory while memory was free ({stats:?})",
        at(),
        blocks.len()
    );
    assert_eq!(stats.allocated_bytes, POOL, "{}: {stats:?}", at());
    assert_eq!(stats.cached_bytes, 0, "{}: {stats:?}", at());
    pool.validate()
        .unwrap_or_else(|e| panic!("{}: exhausted pool invalid: {e}", at()));
}

/// The pool is one free block again, with nothing cached.
fn check_whole(pool: &ConcurrentPool, round: usize, pool_name: &str) {
    let s = pool.stats();
    let at = format!("round {round} ({pool_name}), after every block was freed");
    assert_eq!(s.cached_bytes, 0, "{at}: {s:?}");
    assert_eq!(s.allocated_bytes, 0, "{at}: {s:?}");
    assert!(s.is_coalesced(), "{at}: not one free block: {s:?}");
    pool.validate()
        .unwrap_or_else(|e| panic!("{at}: invalid: {e}"));
}

/// The rounds; reports each finished round and how long it took on `done`.
fn rounds(threads: usize, progress: &Progress, done: &mpsc::Sender<(usize, Duration)>) {
    let pools = pools();
    for round in 0..ROUNDS {
        let start = Instant::now();
        let (pool, name) = (&pools[round % pools.len()], POOL_NAMES[round % pools.len()]);
        progress.start_round(round, round % pools.len());
        let mut blocks = exhaust_together(pool, threads, round, progress);
        progress.set_phase(Phase::CheckTiling);
        check_tiling(pool, &mut blocks, round, name);
        progress.set_phase(Phase::Free);
        free_together(pool, threads, blocks, round, progress);
        progress.set_phase(Phase::CheckWhole);
        check_whole(pool, round, name);
        if done.send((round, start.elapsed())).is_err() {
            return; // the watchdog gave up on us
        }
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri: dozens of threads exhausting a pool for dozens of rounds take hours; \
              tests/all's exhaustion races cover the paths"
)]
fn threads_exhaust_a_small_pool_together_round_after_round() {
    let threads = thread_count();
    let progress = Arc::new(Progress::new(threads));
    let (done_tx, done_rx) = mpsc::channel();
    let body = {
        let progress = Arc::clone(&progress);
        std::thread::Builder::new()
            .name("chaos rounds".into())
            .spawn(move || rounds(threads, &progress, &done_tx))
            .expect("spawn the rounds' thread")
    };
    let start = Instant::now();
    let mut slowest = (0, Duration::ZERO);
    loop {
        match done_rx.recv_timeout(ROUND_DEADLINE) {
            Ok((round, took)) => {
                if took > slowest.1 {
                    slowest = (round, took);
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!(
                "balloc: watchdog: {} did not finish within {} s ({:.1} s into the test, \
                 {threads} threads): a call has not returned. {}",
                progress.round_name(),
                ROUND_DEADLINE.as_secs(),
                start.elapsed().as_secs_f64(),
                progress.describe()
            ),
        }
    }
    if let Err(panic) = body.join() {
        std::panic::resume_unwind(panic);
    }
    eprintln!(
        "{ROUNDS} rounds of {threads} threads in {:.2} s; slowest: round {} ({} ms)",
        start.elapsed().as_secs_f64(),
        slowest.0,
        slowest.1.as_millis()
    );
}

// ---- what the watchdog reports ----

/// Thread states besides "inside a call" (which is `CALL + name * 64 + order`).
const NOT_STARTED: u32 = 0;
const AT_BARRIER: u32 = 1;
const BETWEEN_CALLS: u32 = 2;
const FINISHED: u32 = 3;
const CALL: u32 = 16;

/// Every call's name, indexed by the state's name field.
const CALL_NAMES: [&str; 10] = [
    "pool.alloc",
    "pool.alloc_layout",
    "GlobalAlloc::alloc",
    "local.alloc",
    "local.alloc_layout",
    "pool.free",
    "pool.dealloc",
    "GlobalAlloc::dealloc",
    "local.free",
    "local.dealloc",
];

/// What one worker is doing, as a snapshot for the watchdog (written only by that worker;
/// Relaxed: nothing is ordered by it).
struct ThreadState {
    state: AtomicU32,
    calls: AtomicU64,
}

impl ThreadState {
    fn set(&self, state: u32) {
        self.state.store(state, Ordering::Relaxed);
    }

    /// Runs `f`, a call named `name` for a block of `order`, recording that it is inside it.
    fn call<R>(&self, name: &str, order: u32, f: impl FnOnce() -> R) -> R {
        let n = CALL_NAMES
            .iter()
            .position(|&c| c == name)
            .expect("a known call") as u32;
        self.set(CALL + n * 64 + order);
        self.calls
            .store(self.calls.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let r = f();
        self.set(BETWEEN_CALLS);
        r
    }

    fn describe(&self) -> String {
        let calls = self.calls.load(Ordering::Relaxed);
        match self.state.load(Ordering::Relaxed) {
            NOT_STARTED => "not started".into(),
            AT_BARRIER => "waiting at the start barrier".into(),
            BETWEEN_CALLS => format!("between calls, after {calls} calls"),
            FINISHED => format!("finished its calls ({calls} this round)"),
            s => {
                let (name, order) = ((s - CALL) / 64, (s - CALL) % 64);
                format!(
                    "inside {}({} B), its call {calls} this round",
                    CALL_NAMES[name as usize],
                    1u64 << order
                )
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Exhaust,
    CheckTiling,
    Free,
    CheckWhole,
}

impl Phase {
    const ALL: [Phase; 4] = [
        Phase::Exhaust,
        Phase::CheckTiling,
        Phase::Free,
        Phase::CheckWhole,
    ];

    fn name(self) -> &'static str {
        match self {
            Phase::Exhaust => "all threads allocating until out-of-memory",
            Phase::CheckTiling => "checking the blocks handed out",
            Phase::Free => "all threads freeing every block",
            Phase::CheckWhole => "checking the pool is whole",
        }
    }
}

/// Where the rounds are, for the watchdog.
struct Progress {
    round: AtomicUsize,
    pool: AtomicUsize,
    phase: AtomicUsize,
    threads: Vec<ThreadState>,
}

impl Progress {
    fn new(threads: usize) -> Self {
        Self {
            round: AtomicUsize::new(0),
            pool: AtomicUsize::new(0),
            phase: AtomicUsize::new(0),
            threads: (0..threads)
                .map(|_| ThreadState {
                    state: AtomicU32::new(NOT_STARTED),
                    calls: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn start_round(&self, round: usize, pool: usize) {
        self.round.store(round, Ordering::Relaxed);
        self.pool.store(pool, Ordering::Relaxed);
        self.set_phase(Phase::Exhaust);
    }

    fn set_phase(&self, phase: Phase) {
        for t in &self.threads {
            t.set(NOT_STARTED);
            t.calls.store(0, Ordering::Relaxed);
        }
        self.phase.store(phase as usize, Ordering::Relaxed);
    }

    fn round_name(&self) -> String {
        let pool = POOL_NAMES[self.pool.load(Ordering::Relaxed)];
        format!(
            "round {} of {ROUNDS} ({pool}, 1 MiB pool)",
            self.round.load(Ordering::Relaxed)
        )
    }

    fn describe(&self) -> String {
        let phase = Phase::ALL[self.phase.load(Ordering::Relaxed)];
        let mut s = format!("Phase: {}.", phase.name());
        let unfinished: Vec<String> = self
            .threads
            .iter()
            .enumerate()
            .filter(|(_, t)| t.state.load(Ordering::Relaxed) != FINISHED)
            .map(|(i, t)| format!("thread {i}: {}", t.describe()))
            .collect();
        s += &format!(
            " {} of {} threads not finished: {}",
            unfinished.len(),
            self.threads.len(),
            unfinished.join("; ")
        );
        s
    }
}

/// A small deterministic random number generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn new(round: usize, stream: usize) -> Self {
        let mix = (((round as u64) << 32) | stream as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        Rng((0x9E37_79B9_7F4A_7C15 ^ mix) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
