//! The shared state of the pool: one atomic bitmap of free blocks and one of live (handed out)
//! blocks per order, plus non-empty summaries over the free bitmap.
//!
//! Invariants (bit `(k, i)` is block `i` of order `k`, laid out by [`Geometry`]):
//! - free bit set ⇔ the block is free and not inside a larger free block;
//! - live bit set ⇔ the block was handed out (to a caller or a thread cache) at order `k`;
//! - two buddies are never both free: "buddy free → take it and merge, else mark mine free" is one
//!   compare-and-swap on the word that holds both (buddies `2j`, `2j + 1` share a word);
//! - claiming is one `fetch_and` that removes up to 64 free blocks of one word at once.
//!
//! Every byte of the pool is in exactly one of: a free block here, a live block here (held by a
//! caller or cached by a thread), or a block in transit inside one call of this module's callers
//! (between a claim and its `set_live`, or between `clear_live` and `release`).

use balloc_core::geometry::Geometry;
use balloc_core::order::SMALLEST_K;
use balloc_core::InitError;

use crate::primitive::{AtomicU64, Ordering};
use crate::summary::{Summary, SummaryLayout};
use crate::words::AtomicWords;

/// The free and live bitmaps of a pool, with the free bitmap's summaries.
#[derive(Debug)]
pub(crate) struct BlockMaps {
    /// Low 32 bits: splits and merges in flight (free memory out of the bitmaps for a moment);
    /// high 32 bits: how many have finished. An allocation that finds nothing reports
    /// out-of-memory only if this word did not change across its whole search, except for its
    /// own transit, so memory in transit (or freed meanwhile) never causes a false OOM.
    transit: AtomicU64,
    geometry: Geometry,
    /// `geometry.words()` free words, then as many live words.
    bits: AtomicWords,
    summary_layout: SummaryLayout,
    summary: AtomicWords,
}

impl BlockMaps {
    /// All-zero maps for a pool of order `kval` (no free block yet: see [`Self::release`]).
    pub(crate) fn new(kval: u32) -> Result<Self, InitError> {
        let geometry = Geometry::new(kval);
        let bits = AtomicWords::zeroed(2 * geometry.words())?;
        let summary_layout = SummaryLayout::new(&geometry);
        let summary = AtomicWords::zeroed(summary_layout.total_words())?;
        Ok(Self {
            transit: AtomicU64::new(0),
            geometry,
            bits,
            summary_layout,
            summary,
        })
    }

    /// Bytes of side metadata.
    pub(crate) fn bytes(&self) -> usize {
        self.bits.bytes() + self.summary.bytes()
    }

    #[inline]
    fn free_words(&self) -> &[AtomicU64] {
        &self.bits.get()[..self.geometry.words()]
    }

    #[inline]
    fn live_words(&self) -> &[AtomicU64] {
        &self.bits.get()[self.geometry.words()..]
    }

    #[inline]
    fn summary(&self) -> Summary<'_> {
        Summary {
            layout: &self.summary_layout,
            words: self.summary.get(),
            free: self.free_words(),
            geometry: &self.geometry,
        }
    }

    /// Claims up to `max` (1..=64) free blocks of order `k`, all from one word: one RMW.
    /// Returns the index of the word's first block and the claimed bits (non-zero), or `None`
    /// when order `k` has no free block.
    pub(crate) fn claim(&self, k: u32, max: u32) -> Option<(usize, u64)> {
        let summary = self.summary();
        loop {
            let rel = summary.find(k)?;
            let word = &self.free_words()[self.geometry.word_base(k) + rel];
            // Relaxed: only picks which bits to try; the RMW below decides.
            let cur = word.load(Ordering::Relaxed);
            if cur == 0 {
                // Emptied since `find` looked; `find` cleans the stale hint next time round.
                continue;
            }
            let want = lowest_bits(cur, max);
            let got = claim_bits(word, want);
            if got != 0 {
                return Some((rel * 64, got));
            }
        }
    }

    /// Marks block `index` of order `k` free, where its buddy is known not to be free (it is
    /// the other half of a block being split by the caller): one `fetch_or`.
    pub(crate) fn publish_split_half(&self, k: u32, index: usize) {
        let (w, mask) = self.geometry.locate(k, index);
        // Release: the block's memory (tags written by earlier owners) before its free bit;
        // pairs with the Acquire half of a claimer's AcqRel `fetch_and`.
        let old = self.free_words()[w].fetch_or(mask, Ordering::AcqRel);
        debug_assert_eq!(old & mask, 0, "split half ({k}, {index}) was already free");
        if old == 0 {
            self.summary().mark(k, w - self.geometry.word_base(k));
        }
    }

    /// Returns block `index` of order `k` (no longer live) to the free bitmap, merging with free
    /// buddies: per level, one CAS either takes the buddy (merge, go up) or sets our bit (done).
    /// Returns the order and index of the free block that results. Counted as a transit.
    pub(crate) fn release(&self, k: u32, index: usize) -> (u32, usize) {
        self.begin_transit();
        let r = self.release_in_transit(k, index);
        self.end_transit();
        r
    }

    /// As [`Self::release`], inside a transit the caller opened (one for a whole batch).
    pub(crate) fn release_in_transit(&self, mut k: u32, mut index: usize) -> (u32, usize) {
        let kval = self.geometry.kval();
        loop {
            let (w, mine) = self.geometry.locate(k, index);
            let word = &self.free_words()[w];
            if k == kval {
                // The whole pool: no buddy. AcqRel as in `merge_or_mark`: publishes the block's
                // memory to its next claimer.
                let old = word.fetch_or(mine, Ordering::AcqRel);
                debug_assert_eq!(old & mine, 0, "top block released twice");
                return (k, index);
            }
            let buddy = self.geometry.locate(k, index ^ 1).1;
            match merge_or_mark(word, mine, buddy) {
                MergeOutcome::Merged => {
                    index >>= 1;
                    k += 1;
                }
                MergeOutcome::Marked { was_empty } => {
                    if was_empty {
                        self.summary().mark(k, w - self.geometry.word_base(k));
                    }
                    return (k, index);
                }
            }
        }
    }

    /// Opens a transit: free memory may leave the bitmaps for a moment (a split or a merge), or
    /// memory is about to come back (a free).
    #[inline]
    pub(crate) fn begin_transit(&self) {
        // SeqCst: transits and out-of-memory checks are totally ordered with the bitmap RMWs,
        // so a checker that sees the word unchanged saw no transit overlap its search.
        self.transit.fetch_add(1, Ordering::SeqCst);
    }

    /// Closes a transit: one fewer in flight, one more finished.
    #[inline]
    pub(crate) fn end_transit(&self) {
        // SeqCst: as in begin_transit. Adds 2^32 - 1: count - 1, generation + 1.
        self.transit.fetch_add((1 << 32) - 1, Ordering::SeqCst);
    }

    /// The transit word, to compare after a search.
    #[inline]
    pub(crate) fn transit_snapshot(&self) -> u64 {
        self.transit.load(Ordering::SeqCst)
    }

    /// True when, since `before`, exactly one transit (the caller's own) began and ended and
    /// none is in flight: nothing could have moved free memory behind the caller's search.
    #[inline]
    pub(crate) fn quiet_since(&self, before: u64) -> bool {
        self.transit_snapshot() == before.wrapping_add(1 << 32) && before & 0xFFFF_FFFF == 0
    }

    /// Sets the live bits `mask` of the word holding block `first` of order `k` (`first` is the
    /// word's first block or any block in it): one `fetch_or` for a whole batch.
    pub(crate) fn set_live(&self, k: u32, first: usize, mask: u64) {
        let (w, _) = self.geometry.locate(k, first);
        // Release: publishes the tags written into the blocks before; a validated free that
        // sees the live bit (Acquire load) then sees them.
        let old = self.live_words()[w].fetch_or(mask, Ordering::AcqRel);
        debug_assert_eq!(old & mask, 0, "live bits ({k}, {first}) set twice");
    }

    /// Clears the live bit of block `index` of order `k`. Returns false when it was not set
    /// (the block was not live: a double free lost the race).
    pub(crate) fn clear_live(&self, k: u32, index: usize) -> bool {
        let (w, mask) = self.geometry.locate(k, index);
        // AcqRel: totally orders racing frees of one block (exactly one sees the bit set) and
        // acquires the allocation's set_live.
        self.live_words()[w].fetch_and(!mask, Ordering::AcqRel) & mask != 0
    }

    /// Clears the live bits `mask` of the word whose first block is `first` (order `k`).
    /// Returns which of them were set.
    pub(crate) fn clear_live_mask(&self, k: u32, first: usize, mask: u64) -> u64 {
        let (w, _) = self.geometry.locate(k, first);
        // AcqRel: as in `clear_live`.
        self.live_words()[w].fetch_and(!mask, Ordering::AcqRel) & mask
    }

    /// Whether block `index` of order `k` is live.
    #[inline]
    pub(crate) fn is_live(&self, k: u32, index: usize) -> bool {
        let (w, mask) = self.geometry.locate(k, index);
        // Acquire: pairs with set_live, so the block's tag written before it is visible.
        self.live_words()[w].load(Ordering::Acquire) & mask != 0
    }

    /// Whether block `index` of order `k` is free (a snapshot).
    pub(crate) fn is_free(&self, k: u32, index: usize) -> bool {
        let (w, mask) = self.geometry.locate(k, index);
        // Acquire: pairs with the release of whoever freed the block (used by `validate`).
        self.free_words()[w].load(Ordering::Acquire) & mask != 0
    }

    /// Free blocks of order `k` (a snapshot, exact when no thread is inside a call). O(words).
    pub(crate) fn count_free(&self, k: u32) -> usize {
        self.count(self.free_words(), k)
    }

    /// Live blocks of order `k` (a snapshot). O(words).
    pub(crate) fn count_live(&self, k: u32) -> usize {
        self.count(self.live_words(), k)
    }

    fn count(&self, words: &[AtomicU64], k: u32) -> usize {
        let start = self.geometry.word_base(k);
        words[start..start + self.geometry.words_of(k)]
            .iter()
            // Relaxed: a statistics snapshot; nothing is read through it.
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    /// Checks the maps' invariants, assuming no thread is inside a call: no two free buddies,
    /// no block both free and live, free and live blocks tile the pool exactly, the summaries
    /// cover every non-empty word. Returns the first problem found.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        let g = &self.geometry;
        let kval = g.kval();
        let mut covered = 0usize;
        let (free, live, summary) = (self.free_words(), self.live_words(), self.summary());
        for k in SMALLEST_K..=kval {
            let start = g.word_base(k);
            for i in 0..g.words_of(k) {
                // Relaxed: `validate` runs when no thread is inside a call (documented).
                let f = free[start + i].load(Ordering::Relaxed);
                let l = live[start + i].load(Ordering::Relaxed);
                if f & l != 0 {
                    return Err("a block is both free and live");
                }
                if k < kval && f & (f >> 1) & 0x5555_5555_5555_5555 != 0 {
                    return Err("two free buddies not merged");
                }
                if f != 0 && summary.find(k).is_none() {
                    return Err("summary says empty over a non-empty word");
                }
                covered += ((f | l).count_ones() as usize) << k;
            }
        }
        if covered != 1usize << kval {
            return Err("free and live blocks do not add up to the pool");
        }
        self.check_tiling(kval, 0)
    }

    fn check_tiling(&self, k: u32, index: usize) -> Result<(), &'static str> {
        if self.is_free(k, index) || self.is_live(k, index) {
            return Ok(());
        }
        if k == SMALLEST_K {
            return Err("bytes in no block (lost memory)");
        }
        self.check_tiling(k - 1, 2 * index)?;
        self.check_tiling(k - 1, 2 * index + 1)
    }
}

/// The lowest `max` set bits of `bits`.
#[inline]
fn lowest_bits(bits: u64, max: u32) -> u64 {
    if max >= bits.count_ones() {
        return bits;
    }
    let mut rest = bits;
    let mut take = 0;
    for _ in 0..max {
        let low = rest & rest.wrapping_neg();
        take |= low;
        rest &= rest - 1;
    }
    take
}

/// Removes `want` from `word`, returning the bits of `want` that were set (now ours).
#[cfg(not(balloc_loom_mutants))]
#[inline]
fn claim_bits(word: &AtomicU64, want: u64) -> u64 {
    // AcqRel: Acquire pairs with the Release of whoever freed these blocks (their contents and
    // tags are visible to us); the RMW makes each bit go to exactly one claimer.
    word.fetch_and(!want, Ordering::AcqRel) & want
}

/// MUTANT for loom-tests: claim with a load and a separate store. Two threads can both see a
/// bit set and both take the block; the claim models must catch it.
#[cfg(balloc_loom_mutants)]
#[inline]
fn claim_bits(word: &AtomicU64, want: u64) -> u64 {
    let cur = word.load(Ordering::Acquire);
    word.store(cur & !want, Ordering::Release);
    cur & want
}

enum MergeOutcome {
    /// The buddy was free and is now ours: continue one order up.
    Merged,
    /// Our bit is set; `was_empty` when the word was zero before.
    Marked { was_empty: bool },
}

/// One CAS: if `buddy` is set in `word`, clear it (merge); otherwise set `mine` (mark).
#[cfg(not(balloc_loom_mutants))]
#[inline]
fn merge_or_mark(word: &AtomicU64, mine: u64, buddy: u64) -> MergeOutcome {
    let mut cur = word.load(Ordering::Relaxed);
    loop {
        debug_assert_eq!(cur & mine, 0, "released block is already free");
        let (new, outcome) = if cur & buddy != 0 {
            (cur & !buddy, MergeOutcome::Merged)
        } else {
            (
                cur | mine,
                MergeOutcome::Marked {
                    was_empty: cur == 0,
                },
            )
        };
        // AcqRel: Release publishes our block's memory to its next claimer; Acquire, when we
        // take the buddy, makes its previous owner's writes visible before we merge it.
        match word.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return outcome,
            Err(actual) => cur = actual,
        }
    }
}

/// MUTANT for loom-tests: read the buddy bit, then set our bit in a separate store. Two
/// buddies freed at once can both miss each other and stay unmerged (or overwrite each other);
/// the merge models must catch it.
#[cfg(balloc_loom_mutants)]
#[inline]
fn merge_or_mark(word: &AtomicU64, mine: u64, buddy: u64) -> MergeOutcome {
    let cur = word.load(Ordering::Acquire);
    if cur & buddy != 0 {
        word.store(cur & !buddy, Ordering::Release);
        MergeOutcome::Merged
    } else {
        word.store(cur | mine, Ordering::Release);
        MergeOutcome::Marked {
            was_empty: cur == 0,
        }
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    /// Maps of a 2^k pool with its one top block free.
    fn fresh(kval: u32) -> BlockMaps {
        let maps = BlockMaps::new(kval).unwrap();
        maps.release(kval, 0);
        maps
    }

    #[test]
    fn split_then_merge_returns_to_one_block() {
        let maps = fresh(20);
        // Take the top block and split it down to order 6, as an allocation would.
        let (first, bits) = maps.claim(20, 1).unwrap();
        assert_eq!((first, bits), (0, 1));
        for i in (6..20).rev() {
            maps.publish_split_half(i, 1);
        }
        maps.set_live(6, 0, 1);
        assert!(maps.is_live(6, 0));
        assert_eq!(maps.count_free(6), 1);
        maps.validate().unwrap();
        // Free it: one merge per level, back to the top.
        assert!(maps.clear_live(6, 0));
        assert_eq!(maps.release(6, 0), (20, 0));
        assert_eq!(maps.count_free(20), 1);
        for k in 6..20 {
            assert_eq!(maps.count_free(k), 0, "order {k} merged away");
        }
        maps.validate().unwrap();
        assert!(
            !maps.clear_live(6, 0),
            "a second clear reports the block was not live"
        );
    }

    #[test]
    fn one_claim_takes_many_blocks_of_a_word() {
        let maps = fresh(20);
        maps.claim(20, 1).unwrap();
        // Publish 32 free blocks of order 6 that are not buddies of each other (even indexes).
        for i in (0..64).step_by(2) {
            maps.publish_split_half(6, i + 1);
        }
        let (first, bits) = maps.claim(6, 64).unwrap();
        assert_eq!(first, 0);
        assert_eq!(bits.count_ones(), 32);
        assert_eq!(
            maps.claim(6, 64),
            None,
            "the order is empty after one claim"
        );
    }

    #[test]
    fn summary_finds_a_block_far_from_the_start_and_forgets_emptied_words() {
        let maps = fresh(22); // order 6 has 2^16 blocks: 1024 words, two summary levels
        maps.claim(22, 1).unwrap();
        let far = (1 << 16) - 1; // the last block, an odd index (its buddy stays "allocated")
        maps.publish_split_half(6, far);
        let (first, bits) = maps.claim(6, 1).unwrap();
        assert_eq!(first + bits.trailing_zeros() as usize, far);
        assert_eq!(
            maps.claim(6, 1),
            None,
            "stale hints are cleaned, and the order reads empty"
        );
    }

    #[test]
    fn transit_detects_overlap_and_quiet() {
        let maps = fresh(20);
        let before = maps.transit_snapshot();
        maps.begin_transit();
        maps.end_transit();
        assert!(maps.quiet_since(before), "only our own transit happened");
        maps.claim(20, 1).unwrap();
        let before = maps.transit_snapshot();
        maps.begin_transit();
        maps.release(20, 0); // someone else's transit, nested in ours
        maps.end_transit();
        assert!(!maps.quiet_since(before));
    }
}
