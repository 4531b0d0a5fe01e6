//! The depot: full magazines of cached blocks, passed from one thread's cache to another's
//! without going through the bitmaps. This is the remote-free path: blocks that one thread
//! allocates and another frees come back to an allocating thread here.
//!
//! A cache whose stack of order `k` is full hands its `batch` oldest blocks to the depot as one
//! magazine (one CAS); a cache whose stack is empty takes a magazine (one CAS) before it refills
//! from the bitmaps. A producer/consumer pair then exchanges a batch with two CASes and two
//! copies, where the bitmaps would take a merge per block on one side and a split and a
//! re-tag per block on the other. Blocks in the depot are what they were in the cache: live in
//! the bitmaps and tagged, so a validated free of one is a double free, and `stats` counts them
//! as cached.
//!
//! **Shards, so that no line is written by every thread.** Per cached order the depot has up
//! to [`SHARDS`] shards of up to [`SLOTS`] magazines each, every magazine on its own cache
//! lines. A cache *deposits* into its home shard (a number it takes at its first deposit, so
//! the caches that free blocks, a consumer's, get the shards in turn and the caches that never
//! deposit take none), and only when that shard is full into the next one with room. A cache
//! *takes* from its affinity shard first (per order: the shard it last took a magazine from,
//! at first shard 0), then looks at the other shards in turn with plain loads, and remembers
//! where it found one. In a steady producer/consumer pair the producer's affinity settles on
//! its consumer's home shard: each magazine then crosses between exactly two threads, and no
//! word of the depot is written by a third (`balloc-bench/contention.sh` counts it). Where a
//! consumer outruns its producer, its overflow goes to other shards rather than to the
//! bitmaps: any allocating thread takes it from there with one CAS, where the bitmaps would
//! cost every thread RMWs on the same summary and bitmap words.
//!
//! Protocol, per magazine: `state` goes EMPTY → BUSY (CAS, Acquire) → FULL (store, Release) →
//! BUSY (CAS, Acquire) → EMPTY (store, Release). Only the thread that moved it to BUSY touches
//! `len` and `blocks` (Relaxed: the state's Release/Acquire pairs order them), so a magazine
//! is filled and emptied by one thread at a time and its blocks are handed on exactly once.
//! Which shard a cache picks is a choice, not part of the protocol: any shard is safe.
//!
//! No false out-of-memory: every full flush of a cache (thread exit, `flush_thread_cache`, a
//! pressure epoch) and every out-of-memory decision drain every shard into the bitmaps. Each
//! cache's last flush comes after its last deposit, so once no cache is alive the depot is
//! empty. Bound: per cached order, as many magazines as fit the per-order byte cap of one
//! cache (at least one, at most `SHARDS × SLOTS`; see `CacheConfig`):
//! `ConcurrentPool::max_depot_bytes`.

use core::cell::Cell;

use balloc_core::{InitError, SMALLEST_K};

use crate::config::MAX_CACHED_K;
use crate::facade::{
    depot_peek, shard_mutant, AtomicU64, Ordering, ShardMutant, Words, LOOM, MUTANTS,
};
use crate::units::Order;

/// Most shards per cached order: as many as the transit counters have (one per thread up to
/// 16 threads). Two under loom and Miri: the fewest that can put a magazine where a cache does
/// not look first (and every drain looks at every shard, which interpreters pay for).
pub(crate) const SHARDS: usize = if LOOM || cfg!(miri) { 2 } else { 16 };
/// Most magazines per shard: two, so that a consumer can deposit while its producer still
/// holds the last magazine's blocks. One under loom, to keep the models small.
pub(crate) const SLOTS: usize = if LOOM { 1 } else { 2 };
/// Most blocks in one magazine: the largest batch a pool allows (see `CacheConfig`). Under loom
/// smaller, matching its tiny caches; larger batches then bypass the depot.
pub(crate) const MAGAZINE: usize = if LOOM { 4 } else { 64 };
/// Orders that can be cached: `SMALLEST_K..=MAX_CACHED_K`.
const ORDERS: usize = (MAX_CACHED_K - SMALLEST_K + 1) as usize;

/// Words per magazine: its state, its length and its blocks, rounded up to whole 128-byte
/// lines (as `CachePadded` on x86-64 and aarch64, whose prefetchers fetch 64-byte lines in
/// pairs) so that no two magazines share one (under loom, which has no lines, not rounded).
const STRIDE: usize = if LOOM {
    2 + MAGAZINE
} else {
    (2 + MAGAZINE).next_multiple_of(16)
};

const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const FULL: u64 = 2;

/// How order `k`'s part of the depot is laid out in one pool: `shards` (a power of two) shards
/// of `slots` magazines each. No shards: the order has no depot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shape {
    pub(crate) shards: u8,
    pub(crate) slots: u8,
}

impl Shape {
    /// The layout for at most `magazines` magazines of an order: as many shards as fit, up to
    /// [`SHARDS`] (a power of two), then up to [`SLOTS`] magazines in each. Under loom always
    /// [`SHARDS`] shards of [`SLOTS`], so the models see more than one shard.
    pub(crate) fn for_magazines(magazines: usize) -> Shape {
        if LOOM {
            return Shape {
                shards: SHARDS as u8,
                slots: SLOTS as u8,
            };
        }
        let m = magazines.clamp(1, SHARDS * SLOTS);
        let shards = (1usize << m.ilog2()).min(SHARDS);
        Shape {
            shards: shards as u8,
            slots: (m / shards).min(SLOTS) as u8,
        }
    }

    /// Magazines in all.
    pub(crate) fn magazines(self) -> usize {
        self.shards as usize * self.slots as usize
    }

    /// The shard that `home` (any number, e.g. a cache's) maps to.
    #[inline]
    fn shard_of(self, home: usize) -> usize {
        home & (self.shards as usize).wrapping_sub(1)
    }
}

/// One magazine: `STRIDE` words of the depot.
struct Magazine<'a> {
    /// `state`, `len`, then the blocks: `len` and the blocks are written only by the thread
    /// holding the magazine BUSY, and meaningful while it is FULL.
    words: &'a [AtomicU64],
}

impl Magazine<'_> {
    #[inline]
    fn state(&self) -> &AtomicU64 {
        &self.words[0]
    }

    #[inline]
    fn len(&self) -> &AtomicU64 {
        &self.words[1]
    }

    #[inline]
    fn blocks(&self) -> &[AtomicU64] {
        &self.words[2..2 + MAGAZINE]
    }

    /// Moves the state from `from` to BUSY if it is `from`: the caller then owns the contents.
    ///
    /// MUTANT (loom-tests, [`MUTANTS`]): a load, then a separate store of BUSY. Two threads
    /// can both see the magazine FULL and both take its blocks; model 8 must catch it.
    #[inline]
    fn acquire(&self, from: u64) -> bool {
        if MUTANTS {
            return self.state().load(Ordering::Acquire) == from && {
                self.state().store(BUSY, Ordering::Relaxed);
                true
            };
        }
        // Relaxed peek first: a slot in another state costs no RMW, and a look at a shard
        // writes nothing to its line (see `depot_peek` for why one loom model turns it off).
        (!depot_peek() || self.state().load(Ordering::Relaxed) == from)
            // Acquire: the contents written before the Release that set `from` are visible.
            && self
                .state()
                .compare_exchange(from, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Empties a magazine the caller holds BUSY from FULL into `out`, if its blocks fit.
    /// Returns how many (0 when they did not fit: the magazine stays FULL).
    fn empty_into(&self, out: &mut [usize]) -> usize {
        let n = self.len().load(Ordering::Relaxed) as usize;
        let Some(out) = out.get_mut(..n) else {
            // Not for us (another configuration's batch cannot happen in one pool, but stay
            // safe): put it back.
            self.state().store(FULL, Ordering::Release);
            return 0;
        };
        for (dst, slot) in out.iter_mut().zip(self.blocks()) {
            *dst = slot.load(Ordering::Relaxed) as usize;
        }
        // Release: our reads of the contents happen before the next filler's writes.
        self.state().store(EMPTY, Ordering::Release);
        n
    }
}

/// The depot of one pool: `ORDERS × SHARDS × SLOTS` magazines in one lazily backed mapping
/// (only the magazines used are ever touched).
pub(crate) struct Depot {
    words: Words,
}

impl Depot {
    pub(crate) fn new() -> Result<Self, InitError> {
        Ok(Self {
            words: Words::zeroed(ORDERS * SHARDS * SLOTS * STRIDE)?,
        })
    }

    /// Magazine `slot` of shard `shard` of order `k` (a cached order).
    #[inline]
    fn magazine(&self, k: Order, shard: usize, slot: usize) -> Magazine<'_> {
        let order = (k.get() - SMALLEST_K) as usize;
        let at = ((order * SHARDS + shard) * SLOTS + slot) * STRIDE;
        Magazine {
            words: &self.words.get()[at..at + STRIDE],
        }
    }

    /// Whether order `k` can have magazines at all.
    #[inline]
    fn holds(k: Order) -> bool {
        (SMALLEST_K..=MAX_CACHED_K).contains(&k.get())
    }

    /// Stores `blocks` (1..=MAGAZINE addresses of blocks of order `k`, owned by the caller) as
    /// one magazine in the shard of `home` (a cache's home, see the module docs), or, when that
    /// shard's magazines are all in use, in the next shard with room. False, with nothing
    /// taken, when every magazine of the order is in use.
    pub(crate) fn deposit(&self, k: Order, shape: Shape, home: usize, blocks: &[usize]) -> bool {
        if blocks.is_empty() || blocks.len() > MAGAZINE || !Self::holds(k) || shape.shards == 0 {
            return false;
        }
        for i in 0..shape.shards as usize {
            let shard = shape.shard_of(home + i);
            for slot in 0..shape.slots as usize {
                let m = self.magazine(k, shard, slot);
                if m.acquire(EMPTY) {
                    for (word, &addr) in m.blocks().iter().zip(blocks) {
                        word.store(addr as u64, Ordering::Relaxed);
                    }
                    m.len().store(blocks.len() as u64, Ordering::Relaxed);
                    // Release: the contents before FULL, for the taker's Acquire.
                    m.state().store(FULL, Ordering::Release);
                    return true;
                }
            }
        }
        false
    }

    /// Takes one magazine of order `k` whose blocks fit `out`, writing their addresses there:
    /// from the shard `affinity` names first, then from the others in turn; `affinity` is set
    /// to the shard it came from. Returns how many blocks.
    ///
    /// MUTANT (loom-tests, [`ShardMutant::TakeFromAffinityOnly`]): only the affinity shard is
    /// looked at, so a magazine deposited in another shard waits for a drain; model 8b must
    /// catch it.
    pub(crate) fn take(
        &self,
        k: Order,
        shape: Shape,
        affinity: &Cell<u8>,
        out: &mut [usize],
    ) -> usize {
        if !Self::holds(k) || shape.shards == 0 {
            return 0;
        }
        let first = affinity.get() as usize;
        let shards = if shard_mutant(ShardMutant::TakeFromAffinityOnly) {
            1
        } else {
            shape.shards as usize
        };
        for i in 0..shards {
            let shard = shape.shard_of(first + i);
            let n = self.take_from(k, shard, shape.slots as usize, out);
            if n > 0 {
                affinity.set(shard as u8);
                return n;
            }
        }
        0
    }

    /// Takes one magazine from `slots` magazines of `shard` of order `k`, as [`Self::take`].
    fn take_from(&self, k: Order, shard: usize, slots: usize, out: &mut [usize]) -> usize {
        for slot in 0..slots {
            let m = self.magazine(k, shard, slot);
            if m.acquire(FULL) {
                let n = m.empty_into(out);
                if n > 0 {
                    return n;
                }
            }
        }
        0
    }

    /// Takes magazines of order `k` from the first `shards` shards (every one, unless a loom
    /// mutant says otherwise), each handed whole to `each` (for draining the depot).
    pub(crate) fn drain(
        &self,
        k: Order,
        shape: Shape,
        shards: usize,
        mut each: impl FnMut(&[usize]),
    ) {
        if !Self::holds(k) {
            return;
        }
        for shard in 0..shards.min(shape.shards as usize) {
            for slot in 0..shape.slots as usize {
                let m = self.magazine(k, shard, slot);
                if m.acquire(FULL) {
                    let mut addrs = [0usize; MAGAZINE];
                    let n = m.empty_into(&mut addrs);
                    each(&addrs[..n]);
                }
            }
        }
    }

    /// Bytes in full magazines (a snapshot; magazines being filled or emptied are not counted).
    /// `shape(k)` is order `k`'s layout: only its magazines are read (the others are never
    /// used, and their lines are never touched).
    pub(crate) fn cached_bytes(&self, shape: impl Fn(Order) -> Shape) -> usize {
        let mut total = 0;
        for k in Self::orders() {
            let shape = shape(k);
            for shard in 0..shape.shards as usize {
                for slot in 0..shape.slots as usize {
                    let m = self.magazine(k, shard, slot);
                    if m.state().load(Ordering::Acquire) == FULL {
                        total += (m.len().load(Ordering::Relaxed) as usize) << k.get();
                    }
                }
            }
        }
        total
    }

    /// Every magazine's words, with its order, shard and slot (to name the lines a
    /// contention count saw written).
    #[cfg(balloc_contention)]
    pub(crate) fn magazine_words(
        &self,
    ) -> impl Iterator<Item = (Order, usize, usize, &[AtomicU64])> + '_ {
        Self::orders().flat_map(move |k| {
            (0..SHARDS).flat_map(move |shard| {
                (0..SLOTS).map(move |slot| (k, shard, slot, self.magazine(k, shard, slot).words))
            })
        })
    }

    /// The orders that have magazines, for draining.
    pub(crate) fn orders() -> impl Iterator<Item = Order> {
        Order(SMALLEST_K).through(Order(MAX_CACHED_K))
    }
}

/// The layouts these tests use have up to 16 shards: natively only (under Miri the depot has 2,
/// and the pool's own tests drive it there).
#[cfg(all(test, not(balloc_loom), not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn shapes_use_shards_first_within_the_bound() {
        // (magazines allowed, shards, slots per shard)
        for (m, shards, slots) in [
            (0, 1, 1),
            (1, 1, 1),
            (3, 2, 1),
            (16, 16, 1),
            (31, 16, 1),
            (32, 16, 2),
            (1000, 16, 2),
        ] {
            assert_eq!(
                Shape::for_magazines(m),
                Shape { shards, slots },
                "{m} magazines"
            );
        }
        for m in 1..100 {
            assert!(Shape::for_magazines(m).magazines() <= m.max(1));
        }
    }

    #[test]
    fn deposit_then_take_hands_each_block_on_once() {
        let depot = Depot::new().expect("depot");
        let k = Order(8);
        let shape = Shape {
            shards: 4,
            slots: 2,
        };
        let one = Shape {
            shards: 1,
            slots: 1,
        };
        assert!(depot.deposit(k, one, 5, &[64]), "one slot allowed");
        assert!(!depot.deposit(k, one, 5, &[128]), "only one slot allowed");
        let here = Cell::new(0);
        let mut out = [0usize; 64];
        assert_eq!(depot.take(k, one, &here, &mut out), 1);
        assert_eq!(out[0], 64);
        // Home 2 fills its own shard's two slots first, then spills into shards 3, 0 and 1.
        let mut deposited = Vec::new();
        let mut n = 0;
        while depot.deposit(k, shape, 2, &[n * 256, n * 256 + 64]) {
            deposited.extend([n * 256, n * 256 + 64]);
            n += 1;
        }
        assert_eq!(n, 8, "every slot of every shard");
        let spill = Cell::new(3);
        assert_eq!(depot.take(k, shape, &spill, &mut out), 2);
        let first = out[..2].to_vec();
        assert!(
            first[0] / 256 == 2 || first[0] / 256 == 3,
            "shard 3 holds the 3rd or 4th: {first:?}"
        );
        assert_eq!(
            depot.cached_bytes(|_| shape),
            (deposited.len() - 2) << k.get()
        );
        assert!(
            !depot.deposit(k.up(1), shape, 0, &[]),
            "empty magazines are refused"
        );
        // A taker whose affinity is shard 2 takes shard 2's magazines first, then moves on.
        let affinity = Cell::new(2);
        assert_eq!(
            depot.take(k, shape, &affinity, &mut out[..1]),
            0,
            "too little room"
        );
        assert_eq!(depot.take(k, shape, &affinity, &mut out), 2);
        let mut got = out[..2].to_vec();
        assert!(got.iter().all(|&a| a / 256 < 2), "shard 2 first: {got:?}");
        got.extend(first);
        loop {
            let n = depot.take(k, shape, &affinity, &mut out);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&out[..n]);
        }
        got.sort_unstable();
        deposited.sort_unstable();
        assert_eq!(got, deposited);
        assert_eq!(depot.cached_bytes(|_| shape), 0);
        assert_eq!(
            depot.take(k.up(1), shape, &affinity, &mut out),
            0,
            "other orders"
        );
        assert!(
            !depot.deposit(Order(MAX_CACHED_K + 1), shape, 0, &[64]),
            "no magazines above"
        );
        // A drain empties every shard.
        for home in 0..4 {
            assert!(depot.deposit(k, shape, home, &[home * 64]));
        }
        let mut drained = Vec::new();
        depot.drain(k, shape, SHARDS, |m| drained.extend_from_slice(m));
        drained.sort_unstable();
        assert_eq!(drained, vec![0, 64, 128, 192]);
        assert_eq!(depot.cached_bytes(|_| shape), 0);
    }
}
