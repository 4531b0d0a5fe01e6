//! The allocation path: the one implementation of what happens after a cache miss, and of
//! every free that does not fit a cache. `ConcurrentPool`, `LocalCache`, `GlobalAlloc` and
//! `Allocator` are front-ends: each tries its cache's fast path inline, then calls here.
//!
//! The allocation ladder, top to bottom ([`alloc`]):
//! 1. a decided exhaustion (`exhaustion`) covers the request and the caller holds no cached
//!    block: out-of-memory at once, for the price of a few loads;
//! 2. the caller's cache: act on a pressure signal (flush), then a magazine from the depot,
//!    then a refill of `batch` blocks from the bitmaps;
//! 3. one search of the bitmaps (claim, or split a larger block);
//! 4. memory is short: flush the caller's own caches (a `LocalCache`'s and this thread's
//!    implicit cache for the pool), raise the pressure epoch (every other cache flushes at its
//!    next slow path), drain the depot;
//! 5. decide ([`decide`]): at most [`DECISION_SEARCHES`] searches, each bracketed by transit
//!    snapshots; the first quiet one that finds nothing decides out-of-memory and records it
//!    in the exhaustion latch.
//!
//! A caller that gets out-of-memory *closes* its caches (`Cache::close`): until one of its
//! allocations finds the pool no longer exhausted, the blocks its thread frees go straight to
//! the pool, where any thread's next allocation finds them, instead of waiting in a cache.
//!
//! The free ladder ([`dealloc`], [`free_validated`]): the cache's stack; when full, its oldest
//! batch goes to the depot as a magazine, or to the bitmaps when the depot is full; orders that
//! are not cached go to the bitmaps directly.
//!
//! **Out-of-memory, precisely.** An allocation of order `k` reports out-of-memory only after
//! its own caches were handed back and the depot drained, and only when one of its searches
//! found no free block of order `≥ k` while no split, merge or release was in flight or
//! finished anywhere in the pool (the transit snapshots before and after were equal with
//! nothing in flight): at that moment the bitmaps held no such block. Blocks other threads
//! hold in their caches are not counted; each such thread hands them back at its next slow
//! path, or at exit (at most `max_cached_bytes_per_thread()` per thread). If other threads
//! move memory during every one of its [`DECISION_SEARCHES`] searches, the allocation stops
//! and reports out-of-memory anyway: that is the bound on its own steps. Such an answer is
//! *contended* (counted, see `ConcurrentPool::contended_out_of_memory`): the memory may exist,
//! held by a split or merge in flight. A merge carries the blocks it has joined outside the
//! bitmaps until it marks the result, so a thread descheduled in the middle of one (for a
//! scheduler time slice, milliseconds) holds them out of every search for that long; no bounded
//! wait can cover it, and no lock-free search can take the carried block without a second
//! atomic word the merge would have to check at every step.

use core::ptr::NonNull;

use balloc_core::{AllocError, FreeError};

use crate::cache::Cache;
use crate::facade::{spin_wait, Ordering, LOOM, MUTANTS};
use crate::fault::{self, Fault};
use crate::region::{debug_fill_freed, Region};
use crate::shared::PoolShared;
use crate::thread_cache;
use crate::units::{Offset, Order};

/// Searches an out-of-memory decision may make: each one that another thread's move overlaps
/// is followed by another. Two under loom, which explores every interleaving of each search
/// (enough to show a second search after an overlapped first).
const DECISION_SEARCHES: u32 = if LOOM { 2 } else { 16 };

/// Before each search, how many times a decision re-reads the transit counters, spinning in
/// between, while another thread's split or merge is in flight. Another thread that allocates
/// and frees large blocks without pause keeps most of a nearly empty pool in transit (a split
/// cascade, then a merge cascade); a search started while one runs finds nothing and is
/// overlapped, but one started the moment it ends finds the memory it made visible. Searching
/// blindly (8 searches, no wait) gave up in 1 of 80 allocations of that churn under
/// ThreadSanitizer, which slows atomics most. Bounded: with [`DECISION_SEARCHES`] and
/// `spin_wait`'s cap, a decision spins at most about a millisecond in all.
const IN_FLIGHT_WAITS: u32 = if LOOM { 1 } else { 32 };

/// Who allocates or frees: the pool, and the cache the call goes through.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) shared: &'a PoolShared,
    /// The cache the call goes through: a `LocalCache`'s, or this thread's implicit cache for
    /// the pool; `None` when the thread has neither (all calls then use the bitmaps).
    pub(crate) cache: Option<&'a Cache>,
    /// Whether `cache` is a `LocalCache`'s: then this thread's implicit cache for the same
    /// pool is also the caller's own, and is flushed before out-of-memory too.
    pub(crate) explicit: bool,
}

impl<'a> Caller<'a> {
    #[inline]
    fn region(&self) -> &'a Region {
        self.shared.region()
    }
}

/// Allocates a block of order `k` after the caller's fast path missed.
///
/// # Errors
/// [`AllocError::OutOfMemory`] as described in the module docs.
#[inline]
pub(crate) fn alloc(who: Caller<'_>, k: Order) -> Result<NonNull<u8>, AllocError> {
    // Step 1 inline, so that a full pool costs its callers no call frame.
    if who.region().exhaustion.covers(k) && holds_nothing(who) {
        return Err(out_of_memory(who, k));
    }
    alloc_from_pool(who, k, false)
}

/// [`alloc`], for a block whose bytes are all zero. Cached orders come zeroed with a
/// `memset`; others come from the bitmaps, where the parts on pages known to be zero (never
/// touched, or handed back by `trim`) are not written (see `zero_pages`).
///
/// # Errors
/// As [`alloc`].
pub(crate) fn alloc_zeroed(who: Caller<'_>, k: Order) -> Result<NonNull<u8>, AllocError> {
    if who.region().config.caches(k) {
        return alloc(who, k).map(|p| who.region().zero_block(p, k));
    }
    if who.region().exhaustion.covers(k) && holds_nothing(who) {
        return Err(out_of_memory(who, k));
    }
    alloc_from_pool(who, k, true)
}

/// Steps 2 to 5 of [`alloc`]; with `zeroed` (an uncached order), the block comes zeroed.
#[inline(never)]
fn alloc_from_pool(who: Caller<'_>, k: Order, zeroed: bool) -> Result<NonNull<u8>, AllocError> {
    let region = who.region();
    region.purge.tick(region);
    if let Some(c) = who.cache {
        c.open();
        act_on_pressure(who, c);
        if c.caches(k) {
            if let Some(p) = refill_and_pop(region, c, k) {
                return Ok(p);
            }
        }
    }
    if let Some(off) = region.search(k) {
        return Ok(region.hand_out(k, off, zeroed));
    }
    // Memory is short: hand back what this thread holds, ask everyone else to, empty the depot.
    flush_own(who);
    // Relaxed: a hint; caches that see it flush, and their flushes' RMWs publish.
    who.shared.pressure.fetch_add(1, Ordering::Relaxed);
    region.drain_depot_for_decision();
    match decide(region, k) {
        Some(off) => Ok(region.hand_out(k, off, zeroed)),
        None => Err(out_of_memory(who, k)),
    }
}

/// The out-of-memory answer: the caller's caches close first (see the module docs).
#[inline]
fn out_of_memory(who: Caller<'_>, k: Order) -> AllocError {
    if let Some(c) = who.cache {
        c.close();
    }
    AllocError::OutOfMemory { order: k.get() }
}

/// The out-of-memory decision: bounded searches, each bracketed by transit snapshots. Returns
/// a block if one turns up, `None` once a quiet search found nothing (or every search was
/// overlapped by another thread's move).
///
/// MUTANT (loom-tests, [`MUTANTS`]): the search itself counts as a move (see
/// `Region::search`), and a search is taken as quiet when exactly one move (its own) happened
/// meanwhile, so two failing searches that overlap invalidate each other.
pub(crate) fn decide(region: &Region, k: Order) -> Option<Offset> {
    let proposal = region.exhaustion.propose(k);
    for round in 0..DECISION_SEARCHES {
        let mut before = region.maps.transits.snapshot();
        // A bounded wait for moves in flight to finish: see `IN_FLIGHT_WAITS`.
        for wait in 0..IN_FLIGHT_WAITS {
            if !before.in_flight() {
                break;
            }
            spin_wait(wait);
            before = region.maps.transits.snapshot();
        }
        crate::facade::chaos_point();
        if let Some(off) = region.search(k) {
            if let Some(p) = proposal {
                region.exhaustion.withdraw(p);
            }
            return Some(off);
        }
        crate::facade::chaos_point();
        let after = region.maps.transits.snapshot();
        let quiet = if MUTANTS {
            before.quiet_until(after.less_one_move())
        } else {
            before.quiet_until(after)
        };
        if quiet {
            if let Some(p) = proposal {
                region.exhaustion.confirm(p);
            }
            return None;
        }
        region.note_invalidated_search();
        spin_wait(round);
    }
    if let Some(p) = proposal {
        region.exhaustion.withdraw(p);
    }
    region.note_contended_out_of_memory();
    None
}

/// Whether the caller holds no cached block that a flush could turn into free memory. A
/// closed cache is empty (see `Cache::close`), which makes this one load on a full pool.
#[inline]
fn holds_nothing(who: Caller<'_>) -> bool {
    let empty = |c: &Cache| c.is_closed() || c.is_empty();
    let own = who.cache.is_none_or(empty);
    if !who.explicit {
        return own;
    }
    own && thread_cache::find(who.shared.id)
        // SAFETY: this thread's cache, used only for this read.
        .is_none_or(|c| empty(unsafe { c.as_ref() }))
}

/// A magazine from the depot, else a refill from the bitmaps, into `c`'s stack `k`; then pop.
fn refill_and_pop(region: &Region, c: &Cache, k: Order) -> Option<NonNull<u8>> {
    if c.room(k) == 0 {
        return c.pop(k);
    }
    let got = c.append(k, |free| region.take_magazine(k, c.depot_affinity(k), free));
    if got == 0 {
        let want = c.batch(k).min(c.room(k)).max(1);
        c.append(k, |free| region.refill(k, want, free));
    }
    c.pop(k)
}

/// Frees the block at `p` of order `k` that the caller holds (trusted: the layout is not
/// validated), after the fast path found its stack full, or its order uncached.
///
/// Checked, in every build, as the fast path checks (see `Cache::push`): a pointer outside the
/// region, or a block that is already free (its tag is there, or its live bit is clear),
/// stops the process before the block reaches a cache or the bitmaps.
pub(crate) fn dealloc(who: Caller<'_>, p: NonNull<u8>, k: Order) {
    let region = who.region();
    if !region.contains(p.as_ptr()) {
        fault::stop(Fault::Foreign, p.as_ptr());
    }
    match who.cache {
        Some(c) if c.caches(k) && !c.is_closed() => {
            act_on_pressure(who, c);
            if !c.push(k, p) {
                make_room(who.shared, c, k);
                let pushed = c.push(k, p);
                debug_assert!(pushed, "a stack with room took the block");
            }
        }
        _ => {
            // As a validated free of a known block: claim its tag (cacheable orders, so a
            // block sitting in some cache is caught), then clear its live bit.
            if region.release_validated(region.offset_of(p), k).is_err() {
                fault::stop(Fault::DoubleFree, p.as_ptr());
            }
        }
    }
}

/// Frees the block at `ptr`, validated: it must be the start of a live block.
///
/// # Errors
/// [`FreeError`] as `ConcurrentPool::free` documents; the pool is unchanged on error.
pub(crate) fn free_validated(who: Caller<'_>, ptr: NonNull<u8>) -> Result<(), FreeError> {
    let region = who.region();
    let (off, k) = region.find_live(ptr)?;
    match who.cache {
        Some(c) if c.caches(k) => {
            // Claim the tag first: a racing or repeated free of the block gets the error.
            region.claim_tag(off, k)?;
            debug_fill_freed(region.base, off, k);
            if c.is_closed() {
                let r = region.release(off, k);
                debug_assert!(r.is_ok(), "a block whose tag we claimed was live");
            } else if !c.push_tagged(k, ptr) {
                act_on_pressure(who, c);
                make_room(who.shared, c, k);
                let pushed = c.push_tagged(k, ptr);
                debug_assert!(pushed, "a stack with room took the block");
            }
            Ok(())
        }
        _ => region.release_validated(off, k),
    }
}

/// Empties the oldest batch of `c`'s full stack `k`: into the depot as one magazine, or back
/// to the bitmaps when the depot has no room.
fn make_room(shared: &PoolShared, c: &Cache, k: Order) {
    let region = shared.region();
    let count = c.batch(k).min(c.len(k));
    let home = c.depot_home(|| shared.registry.next_home());
    if !region.deposit(k, home, c.oldest(k, count)) {
        region.release_batch(k, c.oldest(k, count));
    }
    c.drop_oldest(k, count);
}

/// Returns every block of `c` to the bitmaps, then drains the depot (each cache's last flush
/// comes after its last deposit, so once no cache is alive the depot is empty).
pub(crate) fn flush(region: &Region, c: &Cache) {
    empty(region, c);
    region.drain_depot();
}

/// Returns every block of `c` to the bitmaps (the depot is the caller's business).
fn empty(region: &Region, c: &Cache) {
    for k in c.nonempty_orders() {
        let n = c.len(k);
        region.release_batch(k, c.oldest(k, n));
        c.drop_oldest(k, n);
    }
}

/// Empties the caller's own caches (see [`Caller::explicit`]) into the bitmaps; the
/// allocation path drains the depot right after.
fn flush_own(who: Caller<'_>) {
    let region = who.region();
    if let Some(c) = who.cache {
        empty(region, c);
    }
    if who.explicit {
        if let Some(c) = thread_cache::find(who.shared.id) {
            // SAFETY: this thread's cache, valid for this call (nothing below re-enters the
            // thread's cache slots).
            empty(region, unsafe { c.as_ref() });
        }
    }
}

/// If some allocation ran out since `c` last looked, give everything back.
fn act_on_pressure(who: Caller<'_>, c: &Cache) {
    // Relaxed: a hint (see `alloc`).
    let now = who.shared.pressure.load(Ordering::Relaxed);
    if now != c.seen_pressure.get() {
        c.seen_pressure.set(now);
        flush(who.region(), c);
    }
}
