//! The depot: full magazines of cached blocks, passed from one thread's cache to another's
//! without going through the bitmaps.
//!
//! A cache whose stack of order `k` is full hands its `batch` oldest blocks to the depot as one
//! magazine (one CAS); a cache whose stack is empty takes a magazine (one CAS) before it refills
//! from the bitmaps. A producer/consumer pair then exchanges a batch with two CASes and two
//! copies, where the bitmaps would take a merge per block on one side and a split and a
//! re-tag per block on the other. Blocks in the depot are what they were in the cache: live in
//! the bitmaps and tagged, so a validated free of one is a double free, and `stats` counts them
//! as cached.
//!
//! Protocol, per magazine: `state` goes EMPTY → BUSY (CAS, Acquire) → FULL (store, Release) →
//! BUSY (CAS, Acquire) → EMPTY (store, Release). Only the thread that moved it to BUSY touches
//! `len` and `blocks` (Relaxed: the state's Release/Acquire pairs order them), so a magazine
//! is filled and emptied by one thread at a time and its blocks are handed on exactly once.
//!
//! No false out-of-memory: every full flush of a cache (thread exit, `flush_thread_cache`, a
//! pressure epoch) and every out-of-memory decision drain the depot into the bitmaps. Each
//! cache's last flush comes after its last deposit, so once no cache is alive the depot is
//! empty. Bound: per cached order, as many magazines as fit the per-order byte cap of one
//! cache (at least one, at most `MAGAZINES_PER_ORDER`): `ConcurrentPool::max_depot_bytes`.

use balloc_core::SMALLEST_K;

use crate::config::MAX_CACHED_K;
use crate::facade::{depot_peek, AtomicUsize, Ordering, LOOM, MUTANTS};
use crate::units::Order;

/// Most magazines per cached order (the pool's configuration may allow fewer: see
/// `CacheConfig::depot_magazines`). Under loom one, to keep the models small.
pub(crate) const MAGAZINES_PER_ORDER: usize = if LOOM { 1 } else { 4 };
/// Most blocks in one magazine: the largest batch a pool allows (see `CacheConfig`). Under loom
/// smaller, matching its tiny caches; larger batches then bypass the depot.
pub(crate) const MAGAZINE: usize = if LOOM { 4 } else { 64 };
/// Orders that can be cached: `SMALLEST_K..=MAX_CACHED_K`.
pub(crate) const ORDERS: usize = (MAX_CACHED_K - SMALLEST_K + 1) as usize;

const EMPTY: usize = 0;
const BUSY: usize = 1;
const FULL: usize = 2;

struct Magazine {
    state: AtomicUsize,
    /// Blocks held; meaningful while FULL, written only by the thread holding it BUSY.
    len: AtomicUsize,
    /// Block addresses (as the caches hold them).
    blocks: [AtomicUsize; MAGAZINE],
}

impl Magazine {
    fn new() -> Self {
        Self {
            state: AtomicUsize::new(EMPTY),
            len: AtomicUsize::new(0),
            blocks: core::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// Moves the state from `from` to BUSY if it is `from`: the caller then owns the contents.
    ///
    /// MUTANT (loom-tests, [`MUTANTS`]): a load, then a separate store of BUSY. Two threads
    /// can both see the magazine FULL and both take its blocks; model 8 must catch it.
    #[inline]
    fn acquire(&self, from: usize) -> bool {
        if MUTANTS {
            return self.state.load(Ordering::Acquire) == from && {
                self.state.store(BUSY, Ordering::Relaxed);
                true
            };
        }
        // Relaxed peek first: a slot in another state costs no RMW (see `depot_peek` for why
        // one loom model turns it off).
        (!depot_peek() || self.state.load(Ordering::Relaxed) == from)
            // Acquire: the contents written before the Release that set `from` are visible.
            && self
                .state
                .compare_exchange(from, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }
}

pub(crate) struct Depot {
    magazines: [[Magazine; MAGAZINES_PER_ORDER]; ORDERS],
}

impl Depot {
    pub(crate) fn new() -> Self {
        Self {
            magazines: core::array::from_fn(|_| core::array::from_fn(|_| Magazine::new())),
        }
    }

    #[inline]
    fn slots(&self, k: Order) -> &[Magazine] {
        match k.get().checked_sub(SMALLEST_K) {
            Some(i) if (i as usize) < ORDERS => &self.magazines[i as usize],
            _ => &[],
        }
    }

    /// Stores `blocks` (1..=MAGAZINE addresses of blocks of order `k`, owned by the caller) as
    /// one magazine in one of the first `slots` magazines of order `k`. False, with nothing
    /// taken, when those are all in use.
    pub(crate) fn deposit(&self, k: Order, slots: usize, blocks: &[usize]) -> bool {
        if blocks.is_empty() || blocks.len() > MAGAZINE {
            return false;
        }
        for m in self.slots(k).iter().take(slots) {
            if m.acquire(EMPTY) {
                for (slot, &addr) in m.blocks.iter().zip(blocks) {
                    slot.store(addr, Ordering::Relaxed);
                }
                m.len.store(blocks.len(), Ordering::Relaxed);
                // Release: the contents before FULL, for the taker's Acquire.
                m.state.store(FULL, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Takes one magazine of order `k` if there is one whose blocks fit `room`, handing each
    /// block address to `push`. Returns how many.
    pub(crate) fn take(&self, k: Order, room: usize, mut push: impl FnMut(usize)) -> usize {
        for m in self.slots(k) {
            if m.acquire(FULL) {
                let n = m.len.load(Ordering::Relaxed);
                if n > room {
                    // Not for us (another configuration's batch cannot happen in one pool, but
                    // stay safe): put it back.
                    m.state.store(FULL, Ordering::Release);
                    continue;
                }
                for slot in &m.blocks[..n] {
                    push(slot.load(Ordering::Relaxed));
                }
                // Release: our reads of the contents happen before the next filler's writes.
                m.state.store(EMPTY, Ordering::Release);
                return n;
            }
        }
        0
    }

    /// Bytes in full magazines (a snapshot; magazines being filled or emptied are not counted).
    pub(crate) fn cached_bytes(&self) -> usize {
        let mut total = 0;
        for (i, slots) in self.magazines.iter().enumerate() {
            for m in slots {
                if m.state.load(Ordering::Acquire) == FULL {
                    total += m.len.load(Ordering::Relaxed) << (SMALLEST_K as usize + i);
                }
            }
        }
        total
    }

    /// The orders that have magazines, for draining.
    pub(crate) fn orders() -> impl Iterator<Item = Order> {
        Order(SMALLEST_K).through(Order(MAX_CACHED_K))
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn deposit_then_take_hands_each_block_on_once() {
        let depot = Depot::new();
        let k = Order(8);
        let mut deposited = 0;
        assert!(depot.deposit(k, 1, &[64]), "one slot allowed");
        assert!(!depot.deposit(k, 1, &[128]), "only one slot allowed");
        assert_eq!(depot.take(k, 64, |a| assert_eq!(a, 64)), 1);
        while depot.deposit(
            k,
            MAGAZINES_PER_ORDER,
            &[deposited * 256 + 4096, deposited * 256 + 8192],
        ) {
            deposited += 1;
        }
        assert_eq!(deposited, MAGAZINES_PER_ORDER, "one magazine per slot");
        assert_eq!(depot.cached_bytes(), (MAGAZINES_PER_ORDER * 2) << k.get());
        assert!(
            !depot.deposit(k.up(1), MAGAZINES_PER_ORDER, &[]),
            "empty magazines are refused"
        );
        let mut got = Vec::new();
        assert_eq!(depot.take(k, 1, |a| got.push(a)), 0, "too little room");
        while depot.take(k, 64, |a| got.push(a)) > 0 {}
        got.sort_unstable();
        let mut want: Vec<usize> = (0..MAGAZINES_PER_ORDER)
            .flat_map(|i| [i * 256 + 4096, i * 256 + 8192])
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(depot.cached_bytes(), 0);
        assert_eq!(depot.take(k.up(1), 64, |_| {}), 0, "other orders untouched");
        assert!(
            !depot.deposit(Order(MAX_CACHED_K + 1), MAGAZINES_PER_ORDER, &[64]),
            "no magazines above"
        );
    }
}
