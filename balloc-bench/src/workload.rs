//! The workloads, each a generic function over [`BenchAlloc`] run on a rayon pool whose threads
//! all start together at a [`Barrier`].
//!
//! Unit of throughput, everywhere: one **op** = one allocation and the free that matches it
//! (a `pair` round, one of the 1,000 allocations of a `batch` round, one replaced `larson` block,
//! one block passed through the `producer-consumer` ring). Elapsed time is measured from the
//! barrier's release to the last thread's end; only the measured loop sits between the two
//! (per-thread setup and teardown are outside).
//!
//! Every block a workload gets is written to (one byte at its start), as real code would, so an
//! allocator that hands out cold memory pays for it; and pointers pass through
//! [`black_box`] before they are freed, so that the compiler cannot elide an alloc/free pair.

use core::alloc::Layout;
use core::hint::black_box;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::{Backoff, CachePadded};
use rayon::ThreadPool;
use rtrb::{Consumer, Producer, PushError, RingBuffer};

use hdrhistogram::Histogram;

use crate::alloc::{BenchAlloc, Block, LocalAlloc};
use crate::latency::{self, Latency, Timed};
use crate::rng::Rng;

/// Alignment asked for in every request: what a typical struct of words asks for. (balloc's
/// blocks are aligned to their size anyway; the peers see the same `Layout`.)
pub const ALIGN: usize = 8;

/// `batch`: allocations per round (1,000, a burst of a request handler), then as many frees.
pub const BATCH_LEN: usize = 1000;
/// `batch`: the sizes cycled through, 64 B to 4 KiB, each power of two once, so every size class
/// of a buddy allocator from the smallest block to a page is hit equally often.
pub const BATCH_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 2048, 4096];

/// `larson`: live blocks each thread holds. 1,000 blocks of ~500 B is ~0.5 MiB a thread: a
/// server's working set that fits in L2/L3, so the test measures the allocator, not DRAM.
pub const LARSON_WINDOW: usize = 1000;
/// `larson`: block sizes, uniform in this range: the small objects (headers, buffers, session
/// records) of the server that Larson & Krishnan's simulation models; not a power of two in ~99 %
/// of draws, so size-class rounding is exercised.
pub const LARSON_SIZES: (usize, usize) = (8, 1000);
/// `larson`: one replaced block in this many is freed by the next thread rather than its owner
/// (12.5 % remote frees: "some freed by other threads").
pub const LARSON_REMOTE_EVERY: u64 = 8;
/// `larson`: capacity of each thread's inbox of blocks to free; when it is full the owner frees
/// the block itself (counted as a local free).
pub const LARSON_INBOX: usize = 1024;
/// `larson`: a thread frees what is in its inbox every this many replacements.
pub const LARSON_DRAIN_EVERY: u64 = 64;

/// `producer-consumer`: block size, the size of a small message or task.
pub const PC_SIZE: usize = 64;
/// `producer-consumer`: capacity of each pair's SPSC ring: enough that a producer rarely waits,
/// small enough that blocks in flight stay in cache.
pub const PC_RING: usize = 256;
/// `producer-consumer`: the consumer waits for this many blocks, then takes all that are ready,
/// as a consumer draining a queue in bursts does; item by item, each block would cost a
/// cross-core round trip on the ring's index line (~50 ns here), whatever the allocator.
pub const PC_BURST: usize = 32;

/// `fragmentation`: pool size for the pool allocators, 64 MiB: small enough to fill in a few
/// milliseconds, large enough for ~10,000 live blocks.
pub const FRAG_POOL: usize = 1 << 26;
/// `fragmentation`: sizes are drawn log-uniformly: a power `2^e`, `e` uniform in this range, then
/// uniform in `(2^e, 2^(e+1)]`: 17 B to 64 KiB, almost never a power of two.
pub const FRAG_EXPONENTS: (u32, u32) = (4, 15);
/// `fragmentation`: a step allocates with probability 3/5 and frees a random live block
/// otherwise, so the live set grows (by a fifth of a step on average) until the pool fails.
pub const FRAG_ALLOC_IN_FIVE: usize = 3;

/// Consecutive failed allocations after which a workload that must hold blocks gives up.
const GIVE_UP: u32 = 1000;

/// Ops between clock reads in the loops that run until a deadline: a clock read (~20 ns) per 32
/// ops costs under 1 ns an op, and a thread stuck behind a preempted lock holder still notices
/// its deadline within a few dozen ops.
const CHUNK: u64 = 32;

/// How long a run lasts.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Every thread does this many rounds (criterion's `iter_custom` iterations).
    Rounds(u64),
    /// Every thread runs until this long after the start.
    Time(Duration),
}

/// A thread's view of its [`Budget`]: when to read the clock and when to stop.
///
/// Under a deadline it reads the clock every [`CHUNK`] ops, or after every op once ops have
/// become slower than [`SLOW_OP`] (a thread queued behind a preempted lock holder), so that a run
/// overshoots its deadline by at most a few slow ops.
struct Clock {
    budget: Budget,
    start: Instant,
    last: Instant,
    chunk: u64,
}

/// Ops slower than this on average make [`Clock`] read the time after every op.
const SLOW_OP: Duration = Duration::from_micros(30);

impl Clock {
    /// A clock for a run that started at `start`.
    fn new(budget: Budget, start: Instant) -> Self {
        Self {
            budget,
            start,
            last: start,
            chunk: CHUNK,
        }
    }

    /// How many ops to do before asking again, given `done` so far; 0 means stop.
    #[inline]
    fn next(&mut self, done: u64) -> u64 {
        match self.budget {
            Budget::Rounds(total) => CHUNK.min(total - done),
            Budget::Time(d) => {
                let now = Instant::now();
                if done > 0 && now - self.start >= d {
                    return 0;
                }
                let slow = now - self.last > SLOW_OP * self.chunk as u32;
                self.chunk = if slow { 1 } else { CHUNK };
                self.last = now;
                self.chunk
            }
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Ops done by all threads (see the module docs for what an op is).
    pub ops: u64,
    /// Allocations the allocator refused in a throughput workload (it should be 0).
    pub errors: u64,
    /// From the barrier's release to the last thread's end.
    pub elapsed: Duration,
    /// `fragmentation` only: what was live at the first out-of-memory.
    pub frag: Option<Frag>,
    /// Runs under a deadline (the report's), all but `fragmentation` and `ring-only`: the
    /// latency of a sample of the allocator calls (see [`crate::latency`]).
    pub lat: Option<Latency>,
}

impl Outcome {
    /// Millions of ops a second.
    pub fn mops(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// What was live when the pool first ran out of memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct Frag {
    /// Bytes the callers asked for, over the pool size.
    pub requested_share: f64,
    /// Bytes in allocated blocks, as the allocator counts them, over the pool size (`NaN` when
    /// it cannot say).
    pub allocated_share: f64,
}

/// What one thread reports.
struct ThreadOut {
    ops: u64,
    errors: u64,
    start: Instant,
    end: Instant,
    /// `fragmentation`: requested bytes live at the stop, and (thread 0 only) the allocator's count.
    live: usize,
    allocated: Option<usize>,
    /// The timed calls, where this thread sampled them.
    lat: Option<Histogram<u64>>,
}

impl ThreadOut {
    fn new(start: Instant) -> Self {
        Self {
            ops: 0,
            errors: 0,
            start,
            end: start,
            live: 0,
            allocated: None,
            lat: None,
        }
    }
}

impl Budget {
    /// Whether a run samples call latencies: under a deadline (the report's runs), for real
    /// allocators; criterion's round budgets run without the clock reads.
    fn samples<A: BenchAlloc>(self) -> bool {
        A::REAL && matches!(self, Budget::Time(_))
    }
}

/// Where the threads of a run wait for each other.
struct Gate {
    barrier: Barrier,
    start: OnceLock<Instant>,
}

impl Gate {
    /// Waits for every thread, then returns the run's start: one instant for all threads, read
    /// by the first thread out. Deadlines count from it, so a thread that gets its first time
    /// slice late (16 threads on 2 cores) does less work rather than stretching the run.
    fn open(&self) -> Instant {
        self.barrier.wait();
        *self.start.get_or_init(Instant::now)
    }
}

/// Runs `body(thread_index, gate)` once on every thread of `pool`, concurrently.
fn on_threads<F>(pool: &ThreadPool, body: F) -> (Outcome, Vec<ThreadOut>)
where
    F: Fn(usize, &Gate) -> ThreadOut + Sync,
{
    let gate = Gate {
        barrier: Barrier::new(pool.current_num_threads()),
        start: OnceLock::new(),
    };
    let outs = pool.broadcast(|ctx| body(ctx.index(), &gate));
    let start = outs
        .iter()
        .map(|o| o.start)
        .min()
        .expect("at least one thread");
    let end = outs
        .iter()
        .map(|o| o.end)
        .max()
        .expect("at least one thread");
    let mut hist: Option<Histogram<u64>> = None;
    for h in outs.iter().filter_map(|o| o.lat.as_ref()) {
        match &mut hist {
            Some(all) => latency::merge(all, h),
            None => hist = Some(h.clone()),
        }
    }
    let outcome = Outcome {
        ops: outs.iter().map(|o| o.ops).sum(),
        errors: outs.iter().map(|o| o.errors).sum(),
        elapsed: end - start,
        frag: None,
        lat: hist.as_ref().and_then(Latency::of),
    };
    (outcome, outs)
}

/// Writes to the first byte of a fresh block, as its user would.
#[inline(always)]
fn touch<A: BenchAlloc>(p: NonNull<u8>, value: u8) {
    if A::REAL {
        // SAFETY: `p` is a live block of at least one byte (REAL allocators only).
        unsafe { p.as_ptr().write(value) };
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, ALIGN).expect("valid layout")
}

/// `pair`: alloc + free of one size in a loop, on every thread.
pub fn pair<A: BenchAlloc>(a: &A, pool: &ThreadPool, size: usize, budget: Budget) -> Outcome {
    let layout = layout(size);
    on_threads(pool, |t, gate| {
        let mut local = Timed::new(a.local(), budget.samples::<A>(), t as u64);
        let mut clock = Clock::new(budget, gate.open());
        let mut out = ThreadOut::new(clock.start);
        loop {
            let n = clock.next(out.ops);
            if n == 0 {
                break;
            }
            for _ in 0..n {
                match local.alloc(layout) {
                    Some(p) => {
                        touch::<A>(p, 1);
                        // SAFETY: `p` was just allocated with `layout` by `local`.
                        unsafe { local.dealloc(black_box(p), layout) };
                    }
                    None => out.errors += 1,
                }
            }
            out.ops += n;
        }
        out.end = Instant::now();
        out.lat = local.finish();
        out
    })
    .0
}

/// `batch`: per round, [`BATCH_LEN`] allocations cycling through [`BATCH_SIZES`], then their
/// frees in allocation order.
pub fn batch<A: BenchAlloc>(a: &A, pool: &ThreadPool, budget: Budget) -> Outcome {
    on_threads(pool, |t, gate| {
        let mut local = Timed::new(a.local(), budget.samples::<A>(), t as u64);
        let mut live: Vec<Block> = Vec::with_capacity(BATCH_LEN);
        let mut rounds = 0;
        let mut clock = Clock::new(budget, gate.open());
        let mut out = ThreadOut::new(clock.start);
        let timed = matches!(budget, Budget::Time(_));
        // Ops left before the next clock read (deadline runs only).
        let mut left = 0;
        let mut stop = false;
        while !stop {
            if let Budget::Rounds(total) = budget {
                if rounds == total {
                    break;
                }
            }
            for i in 0..BATCH_LEN {
                // Under a deadline a round can end early (its blocks are still all freed) so
                // that a convoy behind a preempted lock holder cannot stretch a run by seconds.
                if timed {
                    if left == 0 {
                        left = clock.next(out.ops + live.len() as u64);
                        if left == 0 {
                            stop = true;
                            break;
                        }
                    }
                    left -= 1;
                }
                let layout = layout(BATCH_SIZES[i % BATCH_SIZES.len()]);
                match local.alloc(layout) {
                    Some(ptr) => {
                        touch::<A>(ptr, i as u8);
                        live.push(Block { ptr, layout });
                    }
                    None => out.errors += 1,
                }
            }
            out.ops += live.len() as u64;
            for b in live.drain(..) {
                // SAFETY: `b` was allocated with `b.layout` by `local` in this round.
                unsafe { local.dealloc(black_box(b.ptr), b.layout) };
            }
            rounds += 1;
        }
        out.end = Instant::now();
        out.lat = local.finish();
        out
    })
    .0
}

/// `larson`: each thread holds [`LARSON_WINDOW`] live blocks of random sizes and replaces a
/// random one per op; one replaced block in [`LARSON_REMOTE_EVERY`] is passed to the next thread,
/// which frees it.
pub fn larson<A: BenchAlloc>(a: &A, pool: &ThreadPool, budget: Budget, seed: u64) -> Outcome {
    let threads = pool.current_num_threads();
    let inboxes: Vec<CachePadded<ArrayQueue<Block>>> = (0..threads)
        .map(|_| CachePadded::new(ArrayQueue::new(LARSON_INBOX)))
        .collect();
    let inboxes = &inboxes;
    on_threads(pool, |t, gate| {
        let mut setup = a.local();
        let mut rng = Rng::new(seed, t as u64);
        let mut errors = 0;
        let mut window: Vec<Block> = (0..LARSON_WINDOW)
            .map(|_| larson_block::<A, _>(&mut setup, &mut rng, &mut errors))
            .collect();
        let mut local = Timed::new(setup, budget.samples::<A>(), t as u64);
        let next = &inboxes[(t + 1) % threads];
        let mine = &inboxes[t];
        let mut clock = Clock::new(budget, gate.open());
        let start = clock.start;
        let mut ops = 0;
        loop {
            let n = clock.next(ops);
            if n == 0 {
                break;
            }
            for i in ops..ops + n {
                let slot = rng.below(LARSON_WINDOW);
                let old = window[slot];
                let remote = threads > 1 && i % LARSON_REMOTE_EVERY == 0;
                if !remote || next.push(old).is_err() {
                    // SAFETY: `old` was live in this thread's window, allocated with its layout.
                    unsafe { local.dealloc(black_box(old.ptr), old.layout) };
                }
                window[slot] = larson_block::<A, _>(&mut local, &mut rng, &mut errors);
                if i % LARSON_DRAIN_EVERY == 0 {
                    while let Some(b) = mine.pop() {
                        // SAFETY: blocks in the inbox are live and owned by the inbox now.
                        unsafe { local.dealloc(black_box(b.ptr), b.layout) };
                    }
                }
            }
            ops += n;
        }
        let end = Instant::now();
        let lat = local.finish();
        // Nobody pushes once everyone is past this barrier.
        gate.barrier.wait();
        for b in window.drain(..).chain(std::iter::from_fn(|| mine.pop())) {
            // SAFETY: as above: every block here is live and owned by this thread now.
            unsafe { local.dealloc(b.ptr, b.layout) };
        }
        ThreadOut {
            ops,
            errors,
            start,
            end,
            live: 0,
            allocated: None,
            lat,
        }
    })
    .0
}

/// A block of a random `larson` size; failures are counted in `errors` and retried.
///
/// # Panics
/// When the allocator fails [`GIVE_UP`] times in a row: it is not going to recover.
fn larson_block<A: BenchAlloc, L: LocalAlloc>(
    local: &mut L,
    rng: &mut Rng,
    errors: &mut u64,
) -> Block {
    for _ in 0..GIVE_UP {
        let layout = layout(rng.between(LARSON_SIZES.0, LARSON_SIZES.1));
        if let Some(ptr) = local.alloc(layout) {
            touch::<A>(ptr, layout.size() as u8);
            return Block { ptr, layout };
        }
        *errors += 1;
    }
    panic!("the allocator failed {GIVE_UP} allocations in a row");
}

/// `producer-consumer`: threads in pairs; the even thread allocates [`PC_SIZE`]-byte blocks,
/// writes a sequence number in each and pushes it into the pair's SPSC ring; the odd thread pops,
/// checks the number and frees the block. One thread alone does both, one item at a time
/// (no cross-thread free). An odd thread count leaves the last thread idle.
///
/// The ring is `rtrb`'s wait-free SPSC ring, whose ends cache the other end's index and so
/// touch a shared index line only when their cached view runs out, and the consumer drains it in
/// bursts of at least [`PC_BURST`]: the ring costs a few ns an item, and what differs between
/// allocators is the allocator. (Run `ring-only` to see the ring alone.)
pub fn producer_consumer<A: BenchAlloc>(a: &A, pool: &ThreadPool, budget: Budget) -> Outcome {
    let threads = pool.current_num_threads();
    let pairs = (threads / 2).max(1);
    // Each end is taken once, by the thread that uses it.
    let mut producers: Vec<Mutex<Option<Producer<Block>>>> = Vec::with_capacity(pairs);
    let mut consumers: Vec<Mutex<Option<Consumer<Block>>>> = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let (p, c) = RingBuffer::new(PC_RING);
        producers.push(Mutex::new(Some(p)));
        consumers.push(Mutex::new(Some(c)));
    }
    fn take<T>(ends: &[Mutex<Option<T>>], i: usize) -> T {
        ends[i]
            .lock()
            .expect("not poisoned")
            .take()
            .expect("each end is taken once")
    }
    let layout = layout(PC_SIZE);
    on_threads(pool, |t, gate| {
        let mut local = Timed::new(a.local(), budget.samples::<A>(), t as u64);
        let solo = threads == 1;
        let idle = t / 2 >= pairs;
        let producer = (!idle && (solo || t % 2 == 0)).then(|| take(&producers, t / 2));
        let consumer = (!idle && (solo || t % 2 == 1)).then(|| take(&consumers, t / 2));
        let mut clock = Clock::new(budget, gate.open());
        let mut out = ThreadOut::new(clock.start);
        if let Some(mut ring) = producer {
            // Producer (and, alone, consumer too).
            let mut own = consumer;
            let (mut seq, mut attempts) = (0u64, 0u64);
            loop {
                let n = clock.next(attempts);
                if n == 0 {
                    break;
                }
                attempts += n;
                for _ in 0..n {
                    let Some(ptr) = local.alloc(layout) else {
                        out.errors += 1;
                        continue;
                    };
                    if A::REAL {
                        // SAFETY: a fresh block of PC_SIZE >= 8 bytes, aligned to 8.
                        unsafe { ptr.cast::<u64>().as_ptr().write(seq) };
                    }
                    let mut item = Block { ptr, layout };
                    let backoff = Backoff::new();
                    while let Err(PushError::Full(back)) = ring.push(item) {
                        item = back;
                        backoff.snooze();
                    }
                    if let Some(own) = own.as_mut() {
                        let b = own.pop().expect("just pushed");
                        // SAFETY: `b` is the block just pushed, live, allocated with its layout.
                        unsafe { local.dealloc(black_box(b.ptr), b.layout) };
                        out.ops += 1;
                    }
                    seq += 1;
                }
            }
            // Dropping `ring` tells the consumer that nothing more comes.
        } else if let Some(mut ring) = consumer {
            let backoff = Backoff::new();
            let mut expect: u64 = 0;
            loop {
                // Abandoned first, then the count: no push can come after.
                let last = ring.is_abandoned();
                let ready = ring.slots();
                if ready == 0 && last {
                    break;
                }
                if ready < PC_BURST && !last {
                    backoff.snooze();
                    continue;
                }
                backoff.reset();
                for _ in 0..ready {
                    let b = ring.pop().expect("counted as ready");
                    if A::REAL {
                        // SAFETY: the producer wrote the u64 before pushing; the ring's push and
                        // pop order that write before this read.
                        let got = unsafe { b.ptr.cast::<u64>().as_ptr().read() };
                        assert_eq!(got, expect, "a block's contents changed in flight");
                    }
                    expect += 1;
                    // SAFETY: the block is live, allocated with its layout, and ours now.
                    unsafe { local.dealloc(black_box(b.ptr), b.layout) };
                }
                out.ops += ready as u64;
            }
        }
        out.end = Instant::now();
        out.lat = local.finish();
        // A producer alone at the end of a run has freed nothing yet: account nothing to it.
        if !solo && t % 2 == 0 {
            out.end = out.start;
        }
        out
    })
    .0
}

/// `fragmentation`: random sizes and lifetimes until the first out-of-memory; reports what was
/// live then as a share of `pool_size`. Ops are the allocations made until then.
pub fn fragmentation<A: BenchAlloc>(
    a: &A,
    pool: &ThreadPool,
    pool_size: usize,
    seed: u64,
) -> Outcome {
    let stop = AtomicBool::new(false);
    let (mut outcome, outs) = on_threads(pool, |t, gate| {
        // Sampled latency here is that of calls on a pool filling up, to its first failure.
        let mut local = Timed::new(a.local(), A::REAL, t as u64);
        let mut rng = Rng::new(seed, t as u64);
        let mut live: Vec<Block> = Vec::new();
        let mut live_bytes = 0usize;
        let mut out = ThreadOut::new(gate.open());
        while !stop.load(Ordering::Relaxed) {
            if live.is_empty() || rng.below(5) < FRAG_ALLOC_IN_FIVE {
                let e = rng.between(FRAG_EXPONENTS.0 as usize, FRAG_EXPONENTS.1 as usize);
                let size = rng.between((1 << e) + 1, 1 << (e + 1));
                let layout = layout(size);
                match local.alloc(layout) {
                    Some(ptr) => {
                        touch::<A>(ptr, 0);
                        live.push(Block { ptr, layout });
                        live_bytes += size;
                        out.ops += 1;
                    }
                    None => stop.store(true, Ordering::Relaxed),
                }
            } else {
                let b = live.swap_remove(rng.below(live.len()));
                live_bytes -= b.layout.size();
                // SAFETY: `b` was live in this thread's set, allocated with its layout.
                unsafe { local.dealloc(b.ptr, b.layout) };
            }
        }
        out.end = Instant::now();
        out.lat = local.finish();
        out.live = live_bytes;
        gate.barrier.wait();
        if t == 0 {
            out.allocated = a.allocated_bytes();
        }
        gate.barrier.wait();
        for b in live {
            // SAFETY: as above.
            unsafe { local.dealloc(b.ptr, b.layout) };
        }
        out
    });
    let requested: usize = outs.iter().map(|o| o.live).sum();
    let allocated = outs.iter().find_map(|o| o.allocated);
    outcome.frag = Some(Frag {
        requested_share: requested as f64 / pool_size as f64,
        allocated_share: allocated.map_or(f64::NAN, |b| b as f64 / pool_size as f64),
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::{Global, LockedBuddyHeap, MutexBuddy, RingOnly};

    fn pool(n: usize) -> ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    }

    #[test]
    fn round_budgets_do_exact_op_counts() {
        let a = MutexBuddy::new(1 << 24);
        for n in [1, 2, 3] {
            let p = pool(n);
            let n = n as u64;
            assert_eq!(pair(&a, &p, 64, Budget::Rounds(1000)).ops, 1000 * n);
            assert_eq!(batch(&a, &p, Budget::Rounds(2)).ops, 2000 * n);
            assert_eq!(larson(&a, &p, Budget::Rounds(500), 1).ops, 500 * n);
            let pairs = (n / 2).max(1);
            assert_eq!(
                producer_consumer(&a, &p, Budget::Rounds(300)).ops,
                300 * pairs
            );
            assert!(
                a.0.lock().unwrap().stats().is_coalesced(),
                "a workload leaked"
            );
        }
    }

    #[test]
    fn balloc_local_pool_comes_back_whole() {
        let a = crate::balloc::BallocLocal::new(1 << 24);
        let p = pool(3);
        assert_eq!(batch(&a, &p, Budget::Rounds(3)).errors, 0);
        assert_eq!(larson(&a, &p, Budget::Rounds(3000), 9).ops, 9000);
        assert_eq!(producer_consumer(&a, &p, Budget::Rounds(1000)).ops, 1000);
        // Every LocalCache was dropped (so flushed) at the end of its run.
        let stats = a.0.stats();
        assert!(stats.is_coalesced(), "{stats:?}");
    }

    #[test]
    fn time_budgets_stop() {
        let p = pool(2);
        let d = Budget::Time(Duration::from_millis(20));
        let o = larson(&Global(std::alloc::System), &p, d, 3);
        assert!(o.ops > 0 && o.errors == 0);
        assert!(o.elapsed >= Duration::from_millis(20) && o.elapsed < Duration::from_secs(5));
        assert!(producer_consumer(&RingOnly, &p, d).ops > 0);
    }

    #[test]
    fn fragmentation_fills_the_pool_and_leaves_it_empty() {
        let a = LockedBuddyHeap::new(1 << 22);
        let o = fragmentation(&a, &pool(2), 1 << 22, 5);
        let f = o.frag.unwrap();
        assert!(f.requested_share > 0.2 && f.requested_share <= 1.0, "{f:?}");
        assert!(f.allocated_share >= f.requested_share && f.allocated_share <= 1.0);
        assert_eq!(a.allocated_bytes(), Some(0));
    }

    #[test]
    fn failed_allocations_are_counted() {
        let a = MutexBuddy::new(1 << 20);
        let o = pair(&a, &pool(1), 1 << 21, Budget::Rounds(10));
        assert_eq!(o.errors, 10);
    }
}
