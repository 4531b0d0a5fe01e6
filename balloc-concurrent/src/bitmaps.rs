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
//! (between a claim and its `set_live`, or between `clear_live` and `release`); `transit`
//! records the windows where free memory is out of sight.

use balloc_core::internal::{spread_halves, Geometry};
use balloc_core::{InitError, SMALLEST_K};

use crate::facade::{AtomicU64, Ordering, Words, MUTANTS};
use crate::summary::{Summary, SummaryLayout};
use crate::transit::Transits;
use crate::units::{BlockIndex, Order};

/// How many times one `claim` retries a word that others emptied under it before it reports
/// nothing: each retry means another thread claimed those blocks, and a word refilled by a
/// release shows up in the caller's transit snapshot, so giving up here is never a false
/// out-of-memory, and keeps the call bounded.
const CLAIM_TRIES: usize = 64;

/// The free and live bitmaps of a pool, with the free bitmap's summaries.
#[derive(Debug)]
pub(crate) struct BlockMaps {
    /// The record of moves that hide or add free memory (see `transit`), kept here because
    /// the summaries' stale-hint cleaning is one such move.
    pub(crate) transits: Transits,
    pub(crate) geometry: Geometry,
    /// `geometry.words()` free words, then as many live words.
    bits: Words,
    summary_layout: SummaryLayout,
    pub(crate) summary: Words,
}

impl BlockMaps {
    /// All-zero maps for a pool of order `kval` (no free block yet: see [`Self::release`]).
    pub(crate) fn new(kval: u32) -> Result<Self, InitError> {
        let geometry = Geometry::new(kval);
        let bits = Words::zeroed(2 * geometry.words())?;
        let summary_layout = SummaryLayout::new(&geometry);
        let summary = Words::zeroed(summary_layout.total_words())?;
        Ok(Self {
            transits: Transits::new(),
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
    pub(crate) fn free_words(&self) -> &[AtomicU64] {
        &self.bits.get()[..self.geometry.words()]
    }

    #[inline]
    pub(crate) fn live_words(&self) -> &[AtomicU64] {
        &self.bits.get()[self.geometry.words()..]
    }

    #[inline]
    fn summary(&self) -> Summary<'_> {
        Summary {
            layout: &self.summary_layout,
            words: self.summary.get(),
            free: self.free_words(),
            geometry: &self.geometry,
            transits: &self.transits,
        }
    }

    /// Whether order `k` may have a free block: its summary's top word (or its only bitmap
    /// word) is non-zero. Read-only; a stale hint answers yes.
    #[inline]
    pub(crate) fn may_have_free(&self, k: Order) -> bool {
        self.summary().top_nonzero(k.get())
    }

    /// Claims up to `max` (1..=64) free blocks of order `k`, all from one word: one RMW.
    /// Returns the index of the word's first block and the claimed bits (non-zero), or `None`
    /// when order `k` has no free block (or others emptied the words it tried: see
    /// [`CLAIM_TRIES`]).
    pub(crate) fn claim(&self, k: Order, max: u32) -> Option<(BlockIndex, u64)> {
        let summary = self.summary();
        let k = k.get();
        for _ in 0..CLAIM_TRIES {
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
                return Some((BlockIndex(rel * 64), got));
            }
        }
        None
    }

    /// Claims block `index` of order `k` if it is free (not inside a larger free block): one
    /// `fetch_and` on its word, after a load that finds the bit set. True when the block is
    /// now the caller's (out of the free bitmap, not live). Call inside a transit.
    pub(crate) fn claim_exact(&self, k: Order, index: BlockIndex) -> bool {
        let (w, mask) = self.geometry.locate(k.get(), index.0);
        let word = &self.free_words()[w];
        // Relaxed: only decides whether to try; the RMW below decides.
        if word.load(Ordering::Relaxed) & mask == 0 {
            return false;
        }
        claim_bits(word, mask) != 0
    }

    /// Words of order `k`'s free bitmap.
    pub(crate) fn word_count(&self, k: Order) -> usize {
        self.geometry.words_of(k.get())
    }

    /// A snapshot of word `rel` of order `k`'s free bitmap (blocks `64 rel ..`): a hint for
    /// which blocks to try to claim.
    pub(crate) fn free_bits(&self, k: Order, rel: usize) -> u64 {
        // Relaxed: a hint; a claim decides.
        self.free_words()[self.geometry.word_base(k.get()) + rel].load(Ordering::Relaxed)
    }

    /// Marks block `index` of order `k` free, where its buddy is known not to be free (it is
    /// the other half of a block being split by the caller): one `fetch_or`.
    pub(crate) fn publish_split_half(&self, k: Order, index: BlockIndex) {
        let (k, index) = (k.get(), index.0);
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
    /// Returns the order and index of the free block that results. Call inside a transit (one
    /// may cover a whole batch).
    pub(crate) fn release(&self, k: Order, index: BlockIndex) -> (Order, BlockIndex) {
        let (mut k, mut index) = (k.get(), index.0);
        let kval = self.geometry.kval();
        loop {
            let (w, mine) = self.geometry.locate(k, index);
            let word = &self.free_words()[w];
            if k == kval {
                // The whole pool: no buddy. AcqRel as in `merge_or_mark`: publishes the block's
                // memory to its next claimer.
                let old = word.fetch_or(mine, Ordering::AcqRel);
                debug_assert_eq!(old & mine, 0, "top block released twice");
                return (Order(k), BlockIndex(index));
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
                    return (Order(k), BlockIndex(index));
                }
            }
        }
    }

    /// Sets the live bits `mask` of the word holding block `first` of order `k` (`first` is the
    /// word's first block or any block in it): one `fetch_or` for a whole batch.
    pub(crate) fn set_live(&self, k: Order, first: BlockIndex, mask: u64) {
        let (w, _) = self.geometry.locate(k.get(), first.0);
        // Release: publishes the tags written into the blocks before; a validated free that
        // sees the live bit (Acquire load) then sees them.
        let old = self.live_words()[w].fetch_or(mask, Ordering::AcqRel);
        debug_assert_eq!(old & mask, 0, "live bits ({k:?}, {first:?}) set twice");
    }

    /// Clears the live bit of block `index` of order `k`. Returns false when it was not set
    /// (the block was not live: a double free lost the race).
    pub(crate) fn clear_live(&self, k: Order, index: BlockIndex) -> bool {
        let (w, mask) = self.geometry.locate(k.get(), index.0);
        // AcqRel: totally orders racing frees of one block (exactly one sees the bit set) and
        // acquires the allocation's set_live.
        self.live_words()[w].fetch_and(!mask, Ordering::AcqRel) & mask != 0
    }

    /// Clears the live bits `mask` of the word whose first block is `first` (order `k`).
    /// Returns which of them were set.
    pub(crate) fn clear_live_mask(&self, k: Order, first: BlockIndex, mask: u64) -> u64 {
        let (w, _) = self.geometry.locate(k.get(), first.0);
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
            let words = g.word_base(k)..g.word_base(k) + g.words_of(k);
            // The or over the order's words of what must stay clear, so that the loop has no
            // branch per word (under fuzzing each compare is a call into the fuzzer's hook).
            let (mut both, mut buddies, mut any_free, mut count) = (0u64, 0u64, 0u64, 0usize);
            for (f, l) in free[words.clone()].iter().zip(&live[words]) {
                // Relaxed: `validate` runs when no thread is inside a call (documented).
                let f = f.load(Ordering::Relaxed);
                let l = l.load(Ordering::Relaxed);
                both |= f & l;
                buddies |= f & (f >> 1);
                any_free |= f;
                count += (f | l).count_ones() as usize;
            }
            if both != 0 {
                return Err("a block is both free and live");
            }
            if k < kval && buddies & 0x5555_5555_5555_5555 != 0 {
                return Err("two free buddies not merged");
            }
            if any_free != 0 && summary.find(k).is_none() {
                return Err("summary says empty over a non-empty word");
            }
            covered += count << k;
        }
        if covered != 1usize << kval {
            return Err("free and live blocks do not add up to the pool");
        }
        self.check_tiling(Order(kval), 0, 1)
    }

    /// Every byte of the blocks set in `split` (word `j` of order `k`, blocks that are neither
    /// free nor live inside split blocks only) lies in some free or live block: their halves are
    /// free or live, or split in turn, down to the smallest order. Sixty-four blocks at a time:
    /// the low and high halves of a word of order `k` spread into words `2j` and `2j + 1` of
    /// order `k - 1`.
    fn check_tiling(&self, k: Order, j: usize, split: u64) -> Result<(), &'static str> {
        let g = &self.geometry;
        let (free, live) = (self.free_words(), self.live_words());
        let w = g.word_base(k.get()) + j;
        // Relaxed: `validate` runs when no thread is inside a call (documented).
        let split = split & !(free[w].load(Ordering::Relaxed) | live[w].load(Ordering::Relaxed));
        if split == 0 {
            return Ok(());
        }
        if k.get() == SMALLEST_K {
            return Err("bytes in no block (lost memory)");
        }
        for half in 0..2 {
            let part = (split >> (32 * half)) as u32;
            if part != 0 {
                self.check_tiling(Order(k.get() - 1), 2 * j + half, spread_halves(part))?;
            }
        }
        Ok(())
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
///
/// MUTANT (loom-tests, [`MUTANTS`]): a load and a separate store. Two threads can both see a
/// bit set and both take the block; the claim models must catch it.
#[inline]
fn claim_bits(word: &AtomicU64, want: u64) -> u64 {
    if MUTANTS {
        let cur = word.load(Ordering::Acquire);
        word.store(cur & !want, Ordering::Release);
        return cur & want;
    }
    // AcqRel: Acquire pairs with the Release of whoever freed these blocks (their contents and
    // tags are visible to us); the RMW makes each bit go to exactly one claimer.
    word.fetch_and(!want, Ordering::AcqRel) & want
}

enum MergeOutcome {
    /// The buddy was free and is now ours: continue one order up.
    Merged,
    /// Our bit is set; `was_empty` when the word was zero before.
    Marked { was_empty: bool },
}

/// One CAS: if `buddy` is set in `word`, clear it (merge); otherwise set `mine` (mark).
///
/// MUTANT (loom-tests, [`MUTANTS`]): read the buddy bit, then write in a separate store. Two
/// buddies freed at once can both miss each other and stay unmerged (or overwrite each other);
/// the merge models must catch it.
#[inline]
fn merge_or_mark(word: &AtomicU64, mine: u64, buddy: u64) -> MergeOutcome {
    if MUTANTS {
        return merge_or_mark_mutant(word, mine, buddy);
    }
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

/// The mutant of [`merge_or_mark`].
fn merge_or_mark_mutant(word: &AtomicU64, mine: u64, buddy: u64) -> MergeOutcome {
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
        maps.release(Order(kval), BlockIndex(0));
        maps
    }

    /// A live bit moved from a block into a free block: the bytes still add up, but the
    /// block's bytes lie in no block.
    #[test]
    fn validate_finds_lost_memory() {
        let maps = fresh(20);
        maps.claim(Order(20), 1).unwrap();
        for i in (6..20).rev() {
            maps.publish_split_half(Order(i), BlockIndex(1));
        }
        maps.set_live(Order(6), BlockIndex(0), 1);
        maps.validate().unwrap();
        assert!(maps.clear_live(Order(6), BlockIndex(0)));
        // Block 64 * 9 + 3 of order 6 lies in the free block 1 of order 15.
        maps.set_live(Order(6), BlockIndex(64 * 9), 1 << 3);
        assert_eq!(maps.validate(), Err("bytes in no block (lost memory)"));
    }

    #[test]
    fn split_then_merge_returns_to_one_block() {
        let maps = fresh(20);
        // Take the top block and split it down to order 6, as an allocation would.
        let (first, bits) = maps.claim(Order(20), 1).unwrap();
        assert_eq!((first, bits), (BlockIndex(0), 1));
        for i in (6..20).rev() {
            maps.publish_split_half(Order(i), BlockIndex(1));
        }
        maps.set_live(Order(6), BlockIndex(0), 1);
        assert!(maps.is_live(6, 0));
        assert_eq!(maps.count_free(6), 1);
        maps.validate().unwrap();
        // Free it: one merge per level, back to the top.
        assert!(maps.clear_live(Order(6), BlockIndex(0)));
        assert_eq!(
            maps.release(Order(6), BlockIndex(0)),
            (Order(20), BlockIndex(0))
        );
        assert_eq!(maps.count_free(20), 1);
        for k in 6..20 {
            assert_eq!(maps.count_free(k), 0, "order {k} merged away");
        }
        maps.validate().unwrap();
        assert!(
            !maps.clear_live(Order(6), BlockIndex(0)),
            "a second clear reports the block was not live"
        );
    }

    #[test]
    fn one_claim_takes_many_blocks_of_a_word() {
        let maps = fresh(20);
        maps.claim(Order(20), 1).unwrap();
        // Publish 32 free blocks of order 6 that are not buddies of each other (even indexes).
        for i in (0..64).step_by(2) {
            maps.publish_split_half(Order(6), BlockIndex(i + 1));
        }
        assert!(maps.may_have_free(Order(6)));
        let (first, bits) = maps.claim(Order(6), 64).unwrap();
        assert_eq!(first, BlockIndex(0));
        assert_eq!(bits.count_ones(), 32);
        assert_eq!(
            maps.claim(Order(6), 64),
            None,
            "the order is empty after one claim"
        );
        assert!(!maps.may_have_free(Order(6)));
    }

    #[test]
    fn summary_finds_a_block_far_from_the_start_and_forgets_emptied_words() {
        let maps = fresh(22); // order 6 has 2^16 blocks: 1024 words, two summary levels
        maps.claim(Order(22), 1).unwrap();
        let far = (1 << 16) - 1; // the last block, an odd index (its buddy stays "allocated")
        maps.publish_split_half(Order(6), BlockIndex(far));
        let (first, bits) = maps.claim(Order(6), 1).unwrap();
        assert_eq!(first.0 + bits.trailing_zeros() as usize, far);
        assert!(
            maps.may_have_free(Order(6)),
            "a stale hint reads as maybe-free until a search cleans it"
        );
        assert_eq!(
            maps.claim(Order(6), 1),
            None,
            "stale hints are cleaned, and the order reads empty"
        );
        assert!(!maps.may_have_free(Order(6)));
    }
}
