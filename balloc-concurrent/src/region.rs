//! [`Region`]: the pool's memory and everything all threads share about its blocks (bitmaps,
//! tags, depot, transits, exhaustion latch, zero pages, purge state), with the operations
//! that move blocks between them (trimming and resizing in place are in `trim` and
//! `resize`). Each operation keeps the module invariants of `bitmaps`, `transit` and `exhaustion`;
//! which operation runs when is the allocation path's choice (`ladder`).
//!
//! Every step that adds memory a search could find (a release into the bitmaps, a magazine
//! into the depot) ends by telling the exhaustion latch (`Exhaustion::memory_returned`), after
//! its last write (see `exhaustion` for the fence that orders the two).

use core::cell::Cell;
use core::ptr::NonNull;

use balloc_core::internal::{block_offset, find_live_block, Mapping};
use balloc_core::{FreeError, InitError, Stats, SMALLEST_K};

use crate::bitmaps::BlockMaps;
use crate::config::CacheConfig;
use crate::depot::{Depot, SHARDS};
use crate::exhaustion::Exhaustion;
use crate::facade::{shard_mutant, AtomicUsize, CachePadded, Ordering, ShardMutant, LOOM, MUTANTS};
use crate::purge::{Purge, PurgeConfig};
use crate::tags::{TagKey, Tags};
use crate::units::{BlockIndex, Offset, Order};
use crate::zero_pages::ZeroPages;

/// The pool's region and shared block state. Valid while the pool's strong count is non-zero.
pub(crate) struct Region {
    pub(crate) base: NonNull<u8>,
    /// The pool's order: the region is one block of this order.
    pub(crate) top: Order,
    pub(crate) maps: BlockMaps,
    tags: Tags,
    pub(crate) config: CacheConfig,
    /// Full magazines of cached blocks on their way between caches.
    pub(crate) depot: Depot,
    pub(crate) exhaustion: Exhaustion,
    /// Counts of contended decisions (diagnostics, written only when a decision is contended),
    /// on their own line.
    contention: CachePadded<DecisionCounts>,
    /// Which pages are known to hold zeros (untouched, or handed back by `trim`).
    pub(crate) zero: ZeroPages,
    /// When free memory goes back to the OS on its own.
    pub(crate) purge: Purge,
    pub(crate) mapping: Mapping,
}

/// Diagnostics of out-of-memory decisions.
struct DecisionCounts {
    /// Decision searches that another thread's move overlapped.
    invalidated_searches: AtomicUsize,
    /// Out-of-memory answers given without a quiet search (see `ladder::decide`).
    contended_out_of_memory: AtomicUsize,
}

/// Under `debug-fill`: checks a block about to be handed to a caller (panics on a write after
/// free); otherwise nothing.
#[inline(always)]
pub(crate) fn debug_check(base: NonNull<u8>, off: Offset, k: Order) {
    #[cfg(feature = "debug-fill")]
    // SAFETY: the block was free and is now ours, inside the region.
    unsafe {
        balloc_core::internal::debug_check(base, off.0, k.get())
    };
    let _ = (base, off, k);
}

/// Under `debug-fill`: fills a block just freed by a caller (all but its first two words: the
/// second holds or will hold its tag, and the check skips both); otherwise nothing.
#[inline(always)]
pub(crate) fn debug_fill_freed(base: NonNull<u8>, off: Offset, k: Order) {
    #[cfg(feature = "debug-fill")]
    // SAFETY: the caller just gave the block back; it is inside the region.
    unsafe {
        balloc_core::internal::debug_fill_from(base, off.0, k.get(), 16)
    };
    let _ = (base, off, k);
}

impl Region {
    /// Reserves a region of order `kval`, all of it one free block.
    pub(crate) fn new(
        kval: u32,
        config: CacheConfig,
        purge: Option<PurgeConfig>,
        secret: usize,
    ) -> Result<Self, InitError> {
        let size = 1usize << kval;
        let mapping = Mapping::reserve(size, size)?;
        let region = Region {
            base: mapping.as_ptr(),
            top: Order(kval),
            maps: BlockMaps::new(kval)?,
            tags: Tags::new(kval, secret),
            config,
            depot: Depot::new()?,
            exhaustion: Exhaustion::new(),
            contention: CachePadded::new(DecisionCounts {
                invalidated_searches: AtomicUsize::new(0),
                contended_out_of_memory: AtomicUsize::new(0),
            }),
            zero: ZeroPages::new(kval, balloc_core::internal::page_size())?,
            purge: Purge::new(purge)?,
            mapping,
        };
        region.maps.release(region.top, BlockIndex(0));
        Ok(region)
    }

    /// The fast paths' copy of the tag secret.
    pub(crate) fn tag_key(&self) -> TagKey {
        self.tags.key()
    }

    /// The offset of the block at `p` (which must be inside the region).
    #[inline]
    pub(crate) fn offset_of(&self, p: NonNull<u8>) -> Offset {
        Offset(p.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr()))
    }

    /// The block at `off`, with the region's provenance.
    #[inline]
    pub(crate) fn ptr_at(&self, off: Offset) -> NonNull<u8> {
        // SAFETY: off < 2^top, so base + off is inside the mapped region (non-null).
        unsafe { NonNull::new_unchecked(self.base.as_ptr().wrapping_add(off.0)) }
    }

    /// Whether `p` points into the region.
    #[inline]
    pub(crate) fn contains(&self, p: *const u8) -> bool {
        p.addr().wrapping_sub(self.base.as_ptr().addr()) < self.top.bytes()
    }

    /// In debug builds: panics when the live block at `ptr` is not of order `k` (a sized free
    /// with a layout of another size). Nothing in release builds: the lookup walks the bitmaps'
    /// atomics, which the compiler cannot drop even where the assertion is compiled out. A block
    /// that is not live is left to the allocation path, which stops on it in every build.
    #[inline]
    pub(crate) fn debug_check_dealloc_order(&self, ptr: NonNull<u8>, k: Order) {
        if cfg!(debug_assertions) {
            if let Ok((_, live)) = self.find_live(ptr) {
                assert_eq!(live, k, "dealloc with a layout of another size");
            }
        }
    }

    /// The offset and order of the live block starting at `ptr`.
    ///
    /// # Errors
    /// `OutOfPool`, `Misaligned`, `Interior` or `DoubleFree` (no live block starts there).
    #[inline]
    pub(crate) fn find_live(&self, ptr: NonNull<u8>) -> Result<(Offset, Order), FreeError> {
        let off = block_offset(
            self.base.as_ptr().addr(),
            ptr.as_ptr().addr(),
            self.top.get(),
        )?;
        let k = find_live_block(off, self.top.get(), |k, i| self.maps.is_live(k, i))?;
        Ok((Offset(off), Order(k)))
    }

    // ----- taking blocks out ------------------------------------------------------------

    /// One search for a free block of order `k`: claim one, or claim the smallest larger one
    /// and split it. The block is the caller's, not yet live ([`Self::hand_out`] makes it so).
    ///
    /// A search that finds nothing writes nothing a transit snapshot sees: orders above `k`
    /// are peeked at first, and a transit is opened only to claim a block seen there (and
    /// closed as "moved nothing" if another thread took it first).
    ///
    /// MUTANT (loom-tests, [`MUTANTS`]): the rule that livelocked threads running out of
    /// memory together: every search opens a transit over the orders above and closes it as a
    /// move, so failing searches invalidate each other (see `ladder::decide`).
    pub(crate) fn search(&self, k: Order) -> Option<Offset> {
        if let Some((first, bits)) = self.maps.claim(k, 1) {
            return Some(first.plus(bits.trailing_zeros() as usize).offset(k));
        }
        if MUTANTS {
            let t = self.maps.transits.begin();
            let found = k
                .up(1)
                .through(self.top)
                .find_map(|j| self.split_one(j, k, k));
            t.end(true);
            return found;
        }
        self.split_above(k, 0).map(|(_, off)| off)
    }

    /// The smallest free block above order `k`, claimed and split down to order `k + span`
    /// (or kept whole when smaller); returns its order and offset. Orders are peeked at first,
    /// and a transit is opened only to claim a block seen there (see [`Self::search`]).
    fn split_above(&self, k: Order, span: u32) -> Option<(Order, Offset)> {
        for j in k.up(1).through(self.top) {
            if !self.maps.may_have_free(j) {
                continue;
            }
            crate::facade::chaos_point();
            let t = self.maps.transits.begin();
            crate::facade::chaos_point();
            let found = self.split_one(j, k, k.up(span).min(j));
            t.end(found.is_some());
            if let Some(off) = found {
                return Some((j, off));
            }
        }
        None
    }

    /// Claims one free block of order `j` and splits it down to order `keep` (`k <= keep <=
    /// j`), publishing the upper halves; the caller keeps the block of order `keep` at the
    /// returned offset. Call inside a transit.
    fn split_one(&self, j: Order, k: Order, keep: Order) -> Option<Offset> {
        debug_assert!(k <= keep && keep <= j);
        let (first, bits) = self.maps.claim(j, 1)?;
        let off = first.plus(bits.trailing_zeros() as usize).offset(j);
        for i in (keep.get()..j.get()).rev().map(Order) {
            self.maps.publish_split_half(i, off.index(i).plus(1));
        }
        Some(off)
    }

    /// Makes a block that [`Self::search`] found live, for a caller; with `zeroed`, every
    /// byte of it zero (only the parts not known to be zero are written).
    pub(crate) fn hand_out(&self, k: Order, off: Offset, zeroed: bool) -> NonNull<u8> {
        let p = self.ptr_at(off);
        debug_check(self.base, off, k);
        let first_clean = self.mark_handed_out(off, k.bytes(), zeroed);
        // The block's tag word holds a stale tag unless it lies on a clean page (zeros).
        if self.config.caches(k) && !first_clean && !zeroed {
            // SAFETY: the block is ours (claimed, not yet live) and inside the region.
            unsafe { self.tags.key().clear(p, off) };
        }
        let (word, bit) = off.index(k).word_and_bit();
        self.maps.set_live(k, word, 1 << bit);
        p
    }

    /// Marks the `len` bytes at `off` (claimed by the caller, about to be handed on) dirty in
    /// `zero`; with `zeroed`, writes zeros over the parts that were not on clean pages.
    /// Returns whether the first byte was on a clean page.
    pub(crate) fn mark_handed_out(&self, off: Offset, len: usize, zeroed: bool) -> bool {
        // Parts on clean pages hold zeros; the rest is written when `zeroed`, in address order
        // (`mark_dirty` reports clean parts by address): `next` is the first byte not done.
        let mut next = off.0;
        let mut first_clean = false;
        self.zero.mark_dirty(off, len, |start, part| {
            first_clean |= start == off.0;
            if zeroed {
                self.write_zeros(Offset(next), start - next);
            }
            next = start + part;
        });
        if zeroed {
            self.write_zeros(Offset(next), off.0 + len - next);
        }
        first_clean
    }

    /// Writes zeros over the whole block of order `k` at `p`, which the caller holds; returns
    /// `p`.
    pub(crate) fn zero_block(&self, p: NonNull<u8>, k: Order) -> NonNull<u8> {
        self.write_zeros(self.offset_of(p), k.bytes());
        p
    }

    /// Writes zeros over `len` bytes at `off`, inside a block the caller holds.
    pub(crate) fn write_zeros(&self, off: Offset, len: usize) {
        if len > 0 {
            // SAFETY: the bytes lie inside a block of the region that the caller owns (claimed,
            // not yet handed on), so nothing else reads or writes them.
            unsafe { self.ptr_at(off).as_ptr().write_bytes(0, len) };
        }
    }

    /// Moves up to `want` (1..=64, at most `out.len()`) blocks of order `k` from the bitmaps
    /// into `out`, tagged and live, by address: one claim of a word, or one split of a larger
    /// block into `want` (rounded down to a power of two) blocks. Returns how many. Zero is not
    /// an out-of-memory answer: the allocation path decides that with [`Self::search`].
    pub(crate) fn refill(&self, k: Order, want: usize, out: &mut [usize]) -> usize {
        debug_assert!((1..=64).contains(&want) && want <= out.len());
        let (first, bits) = match self.maps.claim(k, want as u32) {
            Some(claimed) => claimed,
            None => {
                let span = usize::BITS - 1 - want.leading_zeros(); // log2(want), rounded down
                let Some((j, off)) = self.split_above(k, span) else {
                    return 0;
                };
                let keep = k.up(span).min(j);
                let n = 1usize << (keep.get() - k.get());
                let (word, shift) = off.index(k).word_and_bit();
                let mask = if n == 64 {
                    u64::MAX
                } else {
                    ((1u64 << n) - 1) << shift
                };
                (word, mask)
            }
        };
        // Every page the claimed blocks span is dirty from now on (they get tags, then data).
        let lo = first.plus(bits.trailing_zeros() as usize).offset(k);
        let hi = first.plus(63 - bits.leading_zeros() as usize).offset(k);
        self.zero.mark_dirty(lo, hi.0 - lo.0 + k.bytes(), |_, _| {});
        // Tag before marking live (Release in set_live): a validated free that finds the block
        // live also finds its tag. Highest first, so the cache (a stack) hands out the lowest
        // address first.
        let key = self.tags.key();
        let mut rest = bits;
        let mut count = 0;
        while rest != 0 {
            let b = 63 - rest.leading_zeros() as usize;
            rest &= !(1u64 << b);
            let off = first.plus(b).offset(k);
            let p = self.ptr_at(off);
            // SAFETY: the block is ours (claimed, not yet live) and inside the region.
            unsafe { key.set(p, off) };
            out[count] = p.as_ptr().addr();
            count += 1;
        }
        self.maps.set_live(k, first, bits);
        count
    }

    // ----- giving blocks back -----------------------------------------------------------

    /// Returns a live block to the bitmaps, merging it with free buddies.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the block was no longer live (a racing free won).
    pub(crate) fn release(&self, off: Offset, k: Order) -> Result<(), FreeError> {
        if !self.maps.clear_live(k, off.index(k)) {
            return Err(FreeError::DoubleFree);
        }
        let t = self.maps.transits.begin();
        crate::facade::chaos_point();
        let (merged, _) = self.maps.release(k, off.index(k));
        t.end(true);
        self.exhaustion.memory_returned();
        self.note_released(self.trimmable(merged, k));
        Ok(())
    }

    /// The bytes that releasing a block of order `k` made trimmable, when merging left a free
    /// block of order `merged`: none below a page; else the block's own bytes, and at least a
    /// page (the last small block freed in a page makes the whole page trimmable). A trigger
    /// for the purge, not an account: free memory that is allocated again is not taken off.
    #[inline]
    pub(crate) fn trimmable(&self, merged: Order, k: Order) -> usize {
        let page = self.zero.page_bytes();
        if merged.bytes() >= page {
            k.bytes().max(page)
        } else {
            0
        }
    }

    /// After a release made `trimmable` bytes (see [`Self::trimmable`]): the purge's
    /// bookkeeping and tick (see `purge`).
    #[inline]
    pub(crate) fn note_released(&self, trimmable: usize) {
        if trimmable > 0 {
            self.purge.note_freed(trimmable);
        }
        self.purge.tick(self);
    }

    /// A validated free without a cache: claim the tag (cacheable orders, so a racing free of
    /// the block in some cache is caught), then release.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the block is already free (cached or not).
    pub(crate) fn release_validated(&self, off: Offset, k: Order) -> Result<(), FreeError> {
        if self.config.caches(k) {
            self.claim_tag(off, k)?;
        }
        debug_fill_freed(self.base, off, k);
        self.release(off, k)
    }

    /// Installs the tag of the live block at `off` (a cacheable order) for a validated free.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the tag is there already: the block is cached-free.
    pub(crate) fn claim_tag(&self, off: Offset, k: Order) -> Result<(), FreeError> {
        debug_assert!(self.config.caches(k));
        // SAFETY: the block was live when validated, so it is inside the mapped region.
        unsafe { self.tags.key().claim(self.ptr_at(off), off) }
    }

    /// Returns a batch of cached blocks of order `k` (live, tagged, owned by the caller), given
    /// by address, to the bitmaps. Neighbouring entries in the same bitmap word are handled
    /// together: their live bits cleared with one `fetch_and`, then merged among themselves
    /// (see [`Self::release_merged`]), so a flush of neighbours (blocks freed in allocation
    /// order, the common case) costs a few CASes, not one per block.
    pub(crate) fn release_batch(&self, k: Order, addrs: &[usize]) {
        let base = self.base.as_ptr().addr();
        let index = |i: usize| Offset(addrs[i] - base).index(k);
        let t = self.maps.transits.begin();
        crate::facade::chaos_point();
        let mut trimmable = 0;
        let mut i = 0;
        while i < addrs.len() {
            // Clear the live bits of every block in this word at once.
            let (word, _) = index(i).word_and_bit();
            let mut mask = 0u64;
            let mut j = i;
            while j < addrs.len() && index(j).word_and_bit().0 == word {
                mask |= 1 << index(j).word_and_bit().1;
                j += 1;
            }
            let had = self.maps.clear_live_mask(k, word, mask);
            debug_assert_eq!(had, mask, "cached blocks were not all live");
            trimmable += self.release_merged(k, word, mask);
            i = j;
        }
        t.end(true);
        self.exhaustion.memory_returned();
        self.note_released(trimmable);
    }

    /// Releases the blocks of order `k` with indices `word + b`, for each bit `b` of `mask`
    /// (all ours, live bits cleared, inside a transit), after merging among themselves every
    /// group that tiles a larger aligned block: buddies that are both ours need no CAS to
    /// merge. 64 blocks that tile one block of order `k + 6` (a producer's refill, freed in
    /// order by a consumer) cost one release instead of 32 pair releases and their merges.
    /// Returns the bytes the releases made trimmable (see [`Self::trimmable`]).
    fn release_merged(&self, k: Order, word: BlockIndex, mut mask: u64) -> usize {
        // Bits at multiples of 2^(l+1), for l = 0..6: where a pair of level-l blocks starts.
        const PAIR_STARTS: [u64; 6] = [
            0x5555_5555_5555_5555,
            0x1111_1111_1111_1111,
            0x0101_0101_0101_0101,
            0x0001_0001_0001_0001,
            0x0000_0001_0000_0001,
            0x0000_0000_0000_0001,
        ];
        debug_assert_eq!(word.0 % 64, 0);
        // Level l: bit b (a multiple of 2^l) set <=> the block of order k + l made of bits
        // b .. b + 2^l is entirely ours. Orders stay <= top: a pool's order-k bitmap has
        // fewer than 64 bits exactly when top - k < 6, and then no pair exists above that.
        let mut trimmable = 0;
        let levels = (self.top.get() - k.get()).min(6);
        let mut l = 0;
        loop {
            let width = 1u32 << l;
            // Pairs exist only below `levels` (<= 6), where `width` <= 32.
            let (pairs, covered) = if l < levels {
                let pairs = mask & (mask >> width) & PAIR_STARTS[l as usize];
                (pairs, pairs | (pairs << width))
            } else {
                (0, 0)
            };
            let mut single = mask & !covered;
            while single != 0 {
                let b = single.trailing_zeros() as usize;
                single &= single - 1;
                let (merged, _) = self.maps.release(k.up(l), BlockIndex((word.0 + b) >> l));
                trimmable += self.trimmable(merged, k.up(l));
            }
            if pairs == 0 {
                return trimmable;
            }
            mask = pairs;
            l += 1;
        }
    }

    // ----- the depot --------------------------------------------------------------------

    /// Puts `blocks` (cached blocks of order `k`, by address) in the depot as one magazine, in
    /// the shard of `home` (the depositing cache's). False, with nothing taken, when that
    /// shard's magazines of order `k` are all full.
    pub(crate) fn deposit(&self, k: Order, home: usize, blocks: &[usize]) -> bool {
        if !self
            .depot
            .deposit(k, self.config.depot[k.slot()], home, blocks)
        {
            return false;
        }
        self.maps.transits.note_moved();
        self.exhaustion.memory_returned();
        true
    }

    /// Takes one magazine of order `k` whose blocks fit `out`, writing their addresses there:
    /// from the shard `affinity` names first (then updated to where it came from). Returns how
    /// many.
    pub(crate) fn take_magazine(&self, k: Order, affinity: &Cell<u8>, out: &mut [usize]) -> usize {
        self.depot
            .take(k, self.config.depot[k.slot()], affinity, out)
    }

    /// Returns every magazine in the depot, every shard, to the bitmaps.
    pub(crate) fn drain_depot(&self) {
        self.drain_depot_shards(SHARDS);
    }

    /// [`Self::drain_depot`] before an out-of-memory decision.
    ///
    /// MUTANT (loom-tests, [`ShardMutant::DecisionDrainsShardZero`]): only shard 0 is drained,
    /// so the decision can miss a magazine in another shard; model 8c must catch it.
    pub(crate) fn drain_depot_for_decision(&self) {
        if shard_mutant(ShardMutant::DecisionDrainsShardZero) {
            self.drain_depot_shards(1);
        } else {
            self.drain_depot();
        }
    }

    /// Returns every magazine in the depot's first `shards` shards to the bitmaps.
    fn drain_depot_shards(&self, shards: usize) {
        for k in Depot::orders() {
            let shape = self.config.depot[k.slot()];
            if shape.shards > 0 {
                self.depot
                    .drain(k, shape, shards, |blocks| self.release_batch(k, blocks));
            }
        }
    }

    /// Bytes in the depot (a snapshot).
    pub(crate) fn depot_bytes(&self) -> usize {
        self.depot.cached_bytes(|k| self.config.depot[k.slot()])
    }

    // ----- bookkeeping ------------------------------------------------------------------

    /// Counts an out-of-memory decision search that another thread's move overlapped.
    pub(crate) fn note_invalidated_search(&self) {
        // Relaxed: a diagnostic count.
        self.contention
            .invalidated_searches
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Out-of-memory decision searches so far that another thread's move overlapped.
    #[cfg_attr(not(balloc_loom), allow(dead_code))] // read by a loom hook
    pub(crate) fn invalidated_searches(&self) -> usize {
        // Relaxed: a diagnostic count.
        self.contention.invalidated_searches.load(Ordering::Relaxed)
    }

    /// Counts an out-of-memory answer whose every decision search another thread's move
    /// overlapped.
    pub(crate) fn note_contended_out_of_memory(&self) {
        // Relaxed: a diagnostic count.
        self.contention
            .contended_out_of_memory
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Out-of-memory answers so far given without a quiet search.
    pub(crate) fn contended_out_of_memory(&self) -> usize {
        // Relaxed: a diagnostic count.
        self.contention
            .contended_out_of_memory
            .load(Ordering::Relaxed)
    }

    /// A snapshot of the bitmaps (cached bytes counted as allocated). O(metadata).
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats::empty(self.top.bytes(), self.maps.bytes());
        let mut live = 0;
        for k in SMALLEST_K..=self.top.get() {
            stats.add_free_blocks(k, self.maps.count_free(k));
            live += self.maps.count_live(k) << k;
        }
        stats.allocated_bytes = live;
        // Not under loom: the models check the block protocol; a system call per snapshot
        // would only slow them.
        let measured = if LOOM { None } else { self.mapping.resident() };
        stats.resident_bytes =
            measured.unwrap_or_else(|| self.top.bytes() - self.zero.clean_bytes(self.top.get()));
        stats
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use crate::units::Order;
    use crate::ConcurrentPool;

    /// Batches of blocks from one refill (all in one bitmap word), released as two random
    /// subsets in random order: the local merge must leave valid bitmaps and, in the end, one
    /// block.
    #[test]
    fn release_batch_merges_any_subset_of_a_word() {
        let pool = ConcurrentPool::builder()
            .size(1 << 20)
            .cache_capacity(0)
            .build()
            .expect("pool");
        let region = pool.region();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Under Miri: one round of two orders (a full word, and a bitmap under one word).
        let (rounds, orders): (usize, &[u32]) = if cfg!(miri) {
            (1, &[6, 15])
        } else {
            (100, &[6, 9, 14, 15, 19])
        };
        for &k in orders {
            for _ in 0..rounds {
                let mut out = [0usize; 64];
                let got = region.refill(Order(k), 64, &mut out);
                let mut addrs = out[..got].to_vec();
                assert!(got > 0, "a whole pool refills");
                for i in (1..addrs.len()).rev() {
                    addrs.swap(i, next() as usize % (i + 1));
                }
                let cut = next() as usize % (addrs.len() + 1);
                region.release_batch(Order(k), &addrs[..cut]);
                pool.validate().expect("valid after the first subset");
                assert_eq!(pool.stats().allocated_bytes, (addrs.len() - cut) << k);
                region.release_batch(Order(k), &addrs[cut..]);
                pool.validate().expect("valid after the rest");
                assert!(pool.stats().is_coalesced(), "order {k}: one block again");
            }
        }
    }
}
