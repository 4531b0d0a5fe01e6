//! Resizing a live block in place: growing by absorbing free buddies, shrinking by giving
//! the upper halves back.
//!
//! **Grow** the live block of order `k` at `off` to order `m > k`: possible when `off` is
//! aligned to `2^m` (at every level `l` in `k..m` the block is the lower half, so its buddy
//! `(l, off / 2^l + 1)` lies just above it) and each such buddy is free, whole, at order `l`.
//! Inside one transit, one `fetch_and` per level claims the buddy, as a merge does; if one is
//! gone (another thread took it), the buddies claimed so far are published again (their own
//! buddies are ours, so each is one `fetch_or`, as a split half) and the grow fails. Then the
//! live bit moves from `(k, off)` to `(m, off)`: set first, so the block is never absent from
//! both bitmaps, with every byte accounted for (the transit covers the window).
//!
//! **Shrink** to order `m < k`: the live bit moves to `(m, off)`, then inside a transit the
//! upper halves `(l, off / 2^l + 1)` for `l` in `m..k` are published free (their buddies
//! hold the kept block, so none merges), and the exhaustion latch hears of the memory.
//!
//! Both keep the `bitmaps` invariants: no two free buddies (a published half's buddy is held),
//! no block both free and live, free and live blocks tile the pool. The absorbed buddies'
//! pages are marked dirty (`zero_pages`) before the caller can write them.

use crate::region::{debug_fill_freed, Region};
use crate::units::{Offset, Order};

impl Region {
    /// Grows the live block of order `k` at `off` to order `m` if its buddies are free (see
    /// the module docs); with `zeroed`, the absorbed bytes come zeroed. False, with the pool
    /// unchanged, when it cannot.
    pub(crate) fn grow_in_place(&self, off: Offset, k: Order, m: Order, zeroed: bool) -> bool {
        debug_assert!(k < m);
        if m > self.top || off.0 & (m.bytes() - 1) != 0 {
            return false;
        }
        let buddy = |l: Order| off.index(l).plus(1);
        // A peek first: a grow that cannot happen writes nothing.
        if !k
            .through(m)
            .take_while(|&l| l < m)
            .all(|l| self.maps.is_free(l.get(), buddy(l).0))
        {
            return false;
        }
        let t = self.maps.transits.begin();
        crate::facade::chaos_point();
        let mut claimed = k;
        while claimed < m && self.maps.claim_exact(claimed, buddy(claimed)) {
            claimed = claimed.up(1);
        }
        if claimed < m {
            for l in k.through(claimed).take_while(|&l| l < claimed) {
                self.maps.publish_split_half(l, buddy(l));
            }
            t.end(true);
            self.exhaustion.memory_returned();
            return false;
        }
        self.mark_handed_out(Offset(off.0 + k.bytes()), m.bytes() - k.bytes(), zeroed);
        let (word, bit) = off.index(m).word_and_bit();
        self.maps.set_live(m, word, 1 << bit);
        let was_live = self.maps.clear_live(k, off.index(k));
        debug_assert!(was_live, "grew a block that was not live");
        t.end(true);
        true
    }

    /// Shrinks the live block of order `k` at `off` to order `m < k`, giving the rest back.
    pub(crate) fn shrink_in_place(&self, off: Offset, k: Order, m: Order) {
        debug_assert!(m < k);
        let (word, bit) = off.index(m).word_and_bit();
        self.maps.set_live(m, word, 1 << bit);
        let was_live = self.maps.clear_live(k, off.index(k));
        debug_assert!(was_live, "shrank a block that was not live");
        let t = self.maps.transits.begin();
        crate::facade::chaos_point();
        for l in m.through(k).take_while(|&l| l < k) {
            let half = off.index(l).plus(1);
            debug_fill_freed(self.base, half.offset(l), l);
            self.maps.publish_split_half(l, half);
        }
        t.end(true);
        self.exhaustion.memory_returned();
        // The halves of a page or more are trimmable (none of them merged).
        // Σ 2^l over the halves' orders l ≥ the page's: 2^k - max(2^m, page).
        let page = self.zero.page_bytes();
        self.note_released(k.bytes().saturating_sub(m.bytes().max(page)));
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use crate::units::{Offset, Order};
    use crate::ConcurrentPool;

    #[test]
    fn a_block_grows_over_free_buddies_and_shrinks_back() {
        let pool = ConcurrentPool::builder()
            .size(1 << 20)
            .cache_capacity(0)
            .build()
            .unwrap();
        let region = pool.region();
        let p = pool.alloc(64).unwrap();
        let off = region.offset_of(p);
        assert_eq!(off, Offset(0), "the first block of a fresh pool");
        assert!(region.grow_in_place(off, Order(6), Order(12), false));
        pool.validate().unwrap();
        assert_eq!(pool.usable_size(p), Some(4096));
        // A neighbour blocks further growth; the failed grow leaves the pool as it was.
        let q = pool.alloc(4096).unwrap();
        assert_eq!(region.offset_of(q), Offset(4096));
        assert!(!region.grow_in_place(off, Order(12), Order(14), false));
        pool.validate().unwrap();
        assert_eq!(pool.usable_size(p), Some(4096));
        region.shrink_in_place(off, Order(12), Order(7));
        pool.validate().unwrap();
        assert_eq!(pool.usable_size(p), Some(128));
        pool.free(q).unwrap();
        pool.free(p).unwrap();
        pool.validate().unwrap();
        assert!(pool.stats().is_coalesced());
    }
}
