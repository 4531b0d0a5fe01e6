//! Write counts per cache line (`--cfg balloc_contention` only): a proxy, measurable on two
//! cores, for what stops a pool from scaling on many.
//!
//! Under the cfg every atomic of the crate's pool state counts its writes (see the facade's
//! `counted`): each read-modify-write, each failed compare-and-swap, each store, and, per
//! 64-byte cache line written, how many writes it took and which threads made them. A write
//! takes its line exclusive in the writer's cache, invalidating every other core's copy; a line
//! that many threads write moves from core to core on every write, and each move costs a cache
//! miss of ~100 cycles or more that no amount of cores can run in parallel. So the writes per
//! operation to lines that many threads write bound how far the pool scales, whatever the core
//! count of the machine that measured them.
//!
//! Not counted: loads (a read shares the line and invalidates nothing), the tag words inside
//! free blocks (block memory, which the block's users write too), and the few std atomics the
//! crate uses outside the pool's protocol (per-thread statistics slots, pool ids, shard
//! assignment).
//!
//! Recording is global to the process, lock-free, and meant for one measurement at a time:
//! [`reset`] while no pool operation runs, run the operations, then [`snapshot`]. Lines live in
//! a fixed table of [`SLOTS`] entries; writes to lines that find no free entry within
//! [`MAX_PROBES`] probes are counted as [`Contention::untracked`]. Writers are told apart by an
//! index that each thread takes round-robin at its first write after a [`reset`], modulo 64:
//! up to 64 threads per measurement are counted exactly.
//!
//! This module's own counters are std atomics, so recording never records itself.

use core::ops::Range;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;
use std::cell::Cell;

use core::ptr::NonNull;

use balloc_core::SMALLEST_K;

use crate::facade::{CachePadded, Ordering};
use crate::pool::ConcurrentPool;

/// log2 of the cache line: 64 bytes, the line of x86-64 and of most aarch64 cores.
pub const LINE_SHIFT: u32 = 6;

/// Entries of the line table: far more lines than a run on a 1 GiB pool writes (its bitmaps
/// span 2^16 lines, its caches a few hundred), so the table stays under half full.
pub const SLOTS: usize = 1 << 18;

/// Probes before a write gives up on finding its line's entry (and counts as untracked).
pub const MAX_PROBES: usize = 256;

/// One line's entry: `key` is the line + 1 (0: free), `writers` one bit per writer index,
/// `last` the bit of the line's last writer, `handoffs` the writes whose writer was not the
/// line's last one.
struct Slot {
    key: AtomicU64,
    writers: AtomicU64,
    writes: AtomicU64,
    last: AtomicU64,
    handoffs: AtomicU64,
}

/// The line table. All zero, so it lies in zero-filled memory and costs nothing until written.
static TABLE: [Slot; SLOTS] = [const {
    Slot {
        key: AtomicU64::new(0),
        writers: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        last: AtomicU64::new(0),
        handoffs: AtomicU64::new(0),
    }
}; SLOTS];

static RMW: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static FAILED_CAS: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static STORES: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
static UNTRACKED: CachePadded<AtomicU64> = CachePadded::new(AtomicU64::new(0));
/// Bumped by [`reset`]: a thread whose index is from an older generation takes a new one.
static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The next writer index to hand out (modulo 64).
static NEXT_WRITER: AtomicU64 = AtomicU64::new(0);

std::thread_local! {
    /// This thread's writer index and the generation it was taken in.
    static WRITER: Cell<(u64, u32)> = const { Cell::new((u64::MAX, 0)) };
    /// The writer this thread acts as, if it says so (see [`act_as`]).
    static ACTING: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Makes this thread's writes count as writer `writer`'s (0..64) until the next call, or as
/// its own again with `None`. For simulations that run the work of many threads on one (each
/// simulated thread's writes then count as that thread's, not as the simulating thread's); the
/// pool's per-thread shards follow it too (writer `w` uses the shard thread `w` would).
pub fn act_as(writer: Option<u32>) {
    ACTING.with(|a| a.set(writer.map(|w| w % 64)));
}

/// The writer this thread acts as (see [`act_as`]), if any.
#[inline]
pub(crate) fn acting() -> Option<u32> {
    ACTING.try_with(Cell::get).ok().flatten()
}

/// This thread's bit in a line's writer mask.
#[inline]
fn writer_bit() -> u64 {
    if let Some(w) = acting() {
        return 1 << w;
    }
    let generation = GENERATION.load(Relaxed);
    let take = || (NEXT_WRITER.fetch_add(1, Relaxed) % 64) as u32;
    let index = WRITER
        .try_with(|w| {
            let (g, i) = w.get();
            if g == generation {
                i
            } else {
                let i = take();
                w.set((generation, i));
                i
            }
        })
        .unwrap_or_else(|_| take());
    1 << index
}

/// The table entry of `line`, claimed for it if need be (`None` when the table is too full).
#[inline]
fn slot_of(line: usize) -> Option<&'static Slot> {
    let key = line as u64 + 1;
    // Fibonacci hashing: consecutive lines (one structure's words) spread over the table.
    let mut i = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize;
    for _ in 0..MAX_PROBES {
        let slot = &TABLE[i];
        let k = slot.key.load(Relaxed);
        if k == key {
            return Some(slot);
        }
        if k == 0 {
            match slot.key.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return Some(slot),
                Err(now) if now == key => return Some(slot),
                Err(_) => {}
            }
        }
        i = (i + 1) % SLOTS;
    }
    None
}

/// Records a write by this thread to the line of `addr`.
#[inline]
fn record_write(addr: usize) {
    match slot_of(addr >> LINE_SHIFT) {
        Some(slot) => {
            let me = writer_bit();
            slot.writers.fetch_or(me, Relaxed);
            slot.writes.fetch_add(1, Relaxed);
            let last = slot.last.swap(me, Relaxed);
            if last != me && last != 0 {
                slot.handoffs.fetch_add(1, Relaxed);
            }
        }
        None => {
            UNTRACKED.fetch_add(1, Relaxed);
        }
    }
}

/// Records a read-modify-write of the word at `addr`.
#[inline]
pub(crate) fn record_rmw(addr: usize) {
    RMW.fetch_add(1, Relaxed);
    record_write(addr);
}

/// Records that a compare-and-swap failed (its RMW is recorded by [`record_rmw`]).
#[inline]
pub(crate) fn record_failed_cas() {
    FAILED_CAS.fetch_add(1, Relaxed);
}

/// Records a store to the word at `addr`.
#[inline]
pub(crate) fn record_store(addr: usize) {
    STORES.fetch_add(1, Relaxed);
    record_write(addr);
}

/// Forgets everything recorded so far, and the threads' writer indices. Call while no pool
/// operation runs (a write racing with it may be half forgotten).
pub fn reset() {
    for slot in &TABLE {
        if slot.key.load(Relaxed) != 0 {
            slot.writes.store(0, Relaxed);
            slot.writers.store(0, Relaxed);
            slot.last.store(0, Relaxed);
            slot.handoffs.store(0, Relaxed);
            slot.key.store(0, Relaxed);
        }
    }
    for c in [&RMW, &FAILED_CAS, &STORES, &UNTRACKED] {
        c.store(0, Relaxed);
    }
    NEXT_WRITER.store(0, Relaxed);
    GENERATION.fetch_add(1, Relaxed);
}

/// What was recorded since the last [`reset`]. Take it while no pool operation runs.
pub fn snapshot() -> Contention {
    let mut lines: Vec<LineWrites> = TABLE
        .iter()
        .filter_map(|slot| {
            let key = slot.key.load(Relaxed);
            let writes = slot.writes.load(Relaxed);
            (key != 0 && writes != 0).then(|| LineWrites {
                line: (key - 1) as usize,
                writers: slot.writers.load(Relaxed).count_ones(),
                writes,
                handoffs: slot.handoffs.load(Relaxed),
            })
        })
        .collect();
    lines.sort_by(|a, b| b.writes.cmp(&a.writes).then(a.line.cmp(&b.line)));
    Contention {
        rmw: RMW.load(Relaxed),
        failed_cas: FAILED_CAS.load(Relaxed),
        stores: STORES.load(Relaxed),
        untracked: UNTRACKED.load(Relaxed),
        lines,
    }
}

/// Writes to one cache line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineWrites {
    /// The line: its address `>> LINE_SHIFT`.
    pub line: usize,
    /// Distinct threads that wrote it (by writer index, see the module docs).
    pub writers: u32,
    /// Writes to it: RMWs (failed CASes included) and stores.
    pub writes: u64,
    /// Writes by another writer than the line's previous one: each moves the line from one
    /// core's cache to another's (with a core per thread). A run of stores by one thread (a
    /// magazine's contents) is one handoff, not one per store.
    pub handoffs: u64,
}

impl LineWrites {
    /// The address of the line's first byte.
    pub fn addr(&self) -> usize {
        self.line << LINE_SHIFT
    }
}

/// Counts recorded between a [`reset`] and a [`snapshot`].
#[derive(Clone, Debug, Default)]
pub struct Contention {
    /// Atomic read-modify-writes, failed CASes included.
    pub rmw: u64,
    /// Compare-and-swaps that failed.
    pub failed_cas: u64,
    /// Atomic stores.
    pub stores: u64,
    /// Writes whose line found no entry in the table (so they are missing from `lines`);
    /// anything but 0 makes the per-line figures an underestimate.
    pub untracked: u64,
    /// Every line written, most writes first.
    pub lines: Vec<LineWrites>,
}

impl Contention {
    /// All writes: RMWs and stores.
    pub fn writes(&self) -> u64 {
        self.rmw + self.stores
    }

    /// Writes to lines that at least `min_writers` threads wrote.
    pub fn shared_writes(&self, min_writers: u32) -> u64 {
        self.shared(min_writers).map(|l| l.writes).sum()
    }

    /// Handoffs (see [`LineWrites::handoffs`]) over all lines.
    pub fn handoffs(&self) -> u64 {
        self.lines.iter().map(|l| l.handoffs).sum()
    }

    /// How many lines at least `min_writers` threads wrote.
    pub fn shared_lines(&self, min_writers: u32) -> usize {
        self.shared(min_writers).count()
    }

    /// The lines that at least `min_writers` threads wrote, most writes first.
    pub fn shared(&self, min_writers: u32) -> impl Iterator<Item = &LineWrites> {
        self.lines.iter().filter(move |l| l.writers >= min_writers)
    }
}

/// A named range of addresses of a pool's shared state (see
/// [`ConcurrentPool::contention_structures`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Structure {
    /// What it is, e.g. `depot k=6 m0` (the first magazine of order 6).
    pub name: String,
    /// Its bytes.
    pub range: Range<usize>,
}

/// The names of the structures that `line` overlaps, most specific first: a structure that
/// contains another one the line overlaps (the region around its depot) is left out. `None`
/// when it overlaps none.
pub fn structure_of(structures: &[Structure], line: usize) -> Option<String> {
    let bytes = line << LINE_SHIFT..(line + 1) << LINE_SHIFT;
    let overlaps = |s: &&Structure| s.range.start < bytes.end && bytes.start < s.range.end;
    let hit: Vec<&Structure> = structures.iter().filter(overlaps).collect();
    let contains = |outer: &Structure, inner: &Structure| {
        !core::ptr::eq(outer, inner)
            && outer.range.start <= inner.range.start
            && inner.range.end <= outer.range.end
    };
    let names: Vec<&str> = hit
        .iter()
        .filter(|s| !hit.iter().any(|t| contains(s, t)))
        .map(|s| s.name.as_str())
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// The bytes of `v`.
fn bytes_of<T>(v: &T) -> Range<usize> {
    let start = core::ptr::from_ref(v).addr();
    start..start + size_of::<T>()
}

/// The bytes of the words `w`.
fn words_of<T>(w: &[T]) -> Range<usize> {
    let start = w.as_ptr().addr();
    start..start + size_of_val(w)
}

impl ConcurrentPool {
    /// Where the pool's shared structures lie, to name the lines of a [`Contention`] (see
    /// [`structure_of`]): reference counts, pressure epoch, cache registry, exhaustion latch,
    /// transit shards, each depot magazine, the free and live bitmaps of each order, their
    /// summaries, purge and zero-page words, each registered cache, and the region and shared
    /// state around them.
    #[doc(hidden)]
    pub fn contention_structures(&self) -> Vec<Structure> {
        let shared = self.shared();
        let region = self.region();
        let maps = &region.maps;
        let mut out = Vec::new();
        let mut add = |name: String, range: Range<usize>| {
            if !range.is_empty() {
                out.push(Structure { name, range });
            }
        };
        add("pool refs".into(), bytes_of(&*shared.refs));
        add("pressure epoch".into(), bytes_of(&*shared.pressure));
        add("registry head".into(), bytes_of(&shared.registry));
        add("exhaustion latch".into(), bytes_of(&region.exhaustion));
        add("transit shards".into(), bytes_of(&maps.transits));
        for (k, shard, slot, words) in region.depot.magazine_words() {
            add(
                format!("depot k={} s{shard} m{slot}", k.get()),
                words_of(words),
            );
        }
        let geometry = &maps.geometry;
        let (free, live) = (maps.free_words(), maps.live_words());
        for k in SMALLEST_K..=self.kval() {
            let words = geometry.word_base(k)..geometry.word_base(k) + geometry.words_of(k);
            add(format!("free bitmap k={k}"), words_of(&free[words.clone()]));
            add(format!("live bitmap k={k}"), words_of(&live[words]));
        }
        add("summary".into(), words_of(maps.summary.get()));
        add("purge words".into(), words_of(region.purge.lines.get()));
        add("zero-page bits".into(), words_of(region.zero.bits.get()));
        // Acquire: as the registry's own walks, so each listed cache's fields are visible.
        let mut c = shared.registry.head.load(Ordering::Acquire);
        while let Some(cache) = NonNull::new(c) {
            // SAFETY: listed caches live as long as the registry, which the pool keeps alive.
            let cache = unsafe { cache.as_ref() };
            add("thread cache".into(), bytes_of(cache));
            c = cache.next;
        }
        add("region (other fields)".into(), bytes_of(region));
        add("pool shared state (other fields)".into(), bytes_of(shared));
        out
    }
}
