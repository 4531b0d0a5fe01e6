//! Non-empty hints over one bitmap, so finding a free block never scans the whole bitmap.
//!
//! For an order whose free bitmap has `n0 > 1` words, level 1 has one bit per level-0 word,
//! level 2 one bit per level-1 word, and so on up to a single top word. Invariant (holds
//! whenever no `mark` is in flight): **a non-zero word at level `l` has its bit set at level
//! `l + 1`.** The converse may fail: a set bit whose child is empty is a stale hint, removed
//! lazily by the search that trips over it. So a zero top word means the order is empty, and a
//! search costs O(levels) loads, plus one retry per stale hint it cleans.
//!
//! Lost hints are impossible: whoever turns a word from zero to non-zero marks its parent
//! afterwards (`mark`), and whoever clears a parent bit re-reads the child afterwards and marks
//! again if it is non-zero (`clear_stale`). The parent's read-modify-writes are totally ordered
//! and AcqRel, so the clearer's re-read sees every child write that preceded a mark it erased.

use balloc_core::internal::{Geometry, ORDER_COUNT};
use balloc_core::SMALLEST_K;

use crate::facade::{AtomicU64, Ordering};
use crate::transit::Transits;

/// Deepest summary: 2^42 blocks of 64 B (a 2^48 pool) need 2^36 level-0 words: 6 levels.
const MAX_LEVELS: usize = 7;

/// Where each order's summary levels live in one shared array of words.
#[derive(Debug, Clone)]
pub(crate) struct SummaryLayout {
    /// `base[k][l]`: first word of level `l` (1-based) of order `k`; `levels[k]` levels.
    base: [[usize; MAX_LEVELS + 1]; ORDER_COUNT],
    levels: [u8; ORDER_COUNT],
    total: usize,
}

impl SummaryLayout {
    pub(crate) fn new(g: &Geometry) -> Self {
        let mut base = [[0; MAX_LEVELS + 1]; ORDER_COUNT];
        let mut levels = [0u8; ORDER_COUNT];
        let mut total = 0;
        for k in SMALLEST_K..=g.kval() {
            let mut n = g.words_of(k);
            let mut l = 0;
            while n > 1 {
                l += 1;
                n = n.div_ceil(64);
                base[k as usize][l] = total;
                total += n;
            }
            levels[k as usize] = l as u8;
        }
        Self {
            base,
            levels,
            total,
        }
    }

    pub(crate) fn total_words(&self) -> usize {
        self.total
    }
}

/// The summaries of all orders, over the free bitmap they describe.
pub(crate) struct Summary<'a> {
    pub(crate) layout: &'a SummaryLayout,
    pub(crate) words: &'a [AtomicU64],
    /// The free bitmap (level 0) of all orders.
    pub(crate) free: &'a [AtomicU64],
    pub(crate) geometry: &'a Geometry,
    /// Cleaning a stale hint hides its child from other searches until the re-check: a move.
    pub(crate) transits: &'a Transits,
}

impl Summary<'_> {
    /// The word at `level` (0 = the free bitmap) with relative index `i` for order `k`.
    #[inline]
    fn word(&self, k: u32, level: usize, i: usize) -> &AtomicU64 {
        if level == 0 {
            &self.free[self.geometry.word_base(k) + i]
        } else {
            &self.words[self.layout.base[k as usize][level] + i]
        }
    }

    /// Records that level-0 word `i` of order `k` just went from zero to non-zero.
    #[inline]
    pub(crate) fn mark(&self, k: u32, i: usize) {
        self.mark_from(k, 1, i);
    }

    /// Sets the hint for child `child` at `level` and upwards while words go from zero.
    fn mark_from(&self, k: u32, level: usize, mut child: usize) {
        let levels = self.layout.levels[k as usize] as usize;
        for l in level..=levels {
            let (w, bit) = (child / 64, child % 64);
            // AcqRel: orders the child's write (before us in program order) before any clearer
            // that later reads this word with its RMW, so its re-read sees the child non-zero.
            let old = self.word(k, l, w).fetch_or(1 << bit, Ordering::AcqRel);
            if old != 0 {
                // Non-zero already: whoever made it non-zero marks (or has marked) the parent.
                return;
            }
            child = w;
        }
    }

    /// Whether the top word of order `k` (its only bitmap word when it has no summary) is
    /// non-zero: one load, no write.
    #[inline]
    pub(crate) fn top_nonzero(&self, k: u32) -> bool {
        let levels = self.layout.levels[k as usize] as usize;
        // Acquire: as in `find`.
        self.word(k, levels, 0).load(Ordering::Acquire) != 0
    }

    /// A level-0 word of order `k` that was non-zero when looked at, or `None` when the order
    /// has no free block (its top word is zero). Cleans stale hints on the way.
    pub(crate) fn find(&self, k: u32) -> Option<usize> {
        let levels = self.layout.levels[k as usize] as usize;
        'restart: loop {
            let mut i = 0usize;
            for l in (0..=levels).rev() {
                // Acquire: pairs with `mark`'s AcqRel RMW, so a set hint leads to a visible child.
                let v = self.word(k, l, i).load(Ordering::Acquire);
                if v == 0 {
                    if l == levels {
                        return None;
                    }
                    // Stale hint for word `i` at level l: clear it at level l + 1, then re-check.
                    self.clear_stale(k, l + 1, i);
                    continue 'restart;
                }
                if l == 0 {
                    return Some(i);
                }
                i = i * 64 + v.trailing_zeros() as usize;
            }
            unreachable!("the loop returns at level 0");
        }
    }

    /// Clears the hint for `child` at `level` (its child word was seen empty), then re-reads the
    /// child and restores the hint if it is non-zero again.
    ///
    /// Between the clear and the re-mark, a search that reads the cleared hint misses a child
    /// that was refilled meanwhile; so the cleaning is a transit, ended as a move exactly when
    /// it had to restore the hint (an out-of-memory decision that overlapped it searches again).
    fn clear_stale(&self, k: u32, level: usize, child: usize) {
        let (w, bit) = (child / 64, child % 64);
        let t = self.transits.begin();
        // AcqRel: acquires every mark that preceded it on this word (so the re-read below sees
        // their child writes), and releases our clear to later markers.
        self.word(k, level, w)
            .fetch_and(!(1 << bit), Ordering::AcqRel);
        let refilled = self.word(k, level - 1, child).load(Ordering::Acquire) != 0;
        if refilled {
            self.mark_from(k, level, child);
        }
        t.end(refilled);
    }
}
