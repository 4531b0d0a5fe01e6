//! A full walk of a [`BuddyPool`]'s invariants, for tests and fuzzing.

use core::fmt;

use crate::free_list::NIL;
use crate::order::SMALLEST_K;
use crate::pool::{BuddyPool, Map};

/// An invariant of the pool that does not hold: a bug in balloc or memory corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    /// Which invariant.
    pub what: &'static str,
    /// The order where it was seen.
    pub order: u32,
    /// The block offset where it was seen (`usize::MAX` when not about one block).
    pub offset: usize,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool corrupted: {} (order {}, offset {:#x})",
            self.what, self.order, self.offset
        )
    }
}

impl core::error::Error for Corruption {}

fn fail(what: &'static str, order: u32, offset: usize) -> Result<(), Corruption> {
    Err(Corruption {
        what,
        order,
        offset,
    })
}

impl BuddyPool {
    /// Checks every invariant of the pool: free lists agree with the free bitmap, list links are
    /// consistent, no two free buddies, and free and allocated blocks tile the pool exactly
    /// once. O(metadata + blocks): for tests, not hot paths.
    ///
    /// # Errors
    /// The first broken invariant found.
    pub fn validate(&self) -> Result<(), Corruption> {
        let g = self.geometry();
        let kval = self.kval();
        let size = self.size();
        let base = self.base();
        let meta = self.meta();
        let words = g.words();
        let (free, live) = meta.split_at(words);

        // Heap numbering uses bits 1 .. 2^(kval - SMALLEST_K + 1): bit 0 and the words past
        // them stay clear.
        let used = (1usize << (kval - SMALLEST_K + 1)) / 64;
        for map in [free, live] {
            if map[0] & 1 != 0 || map[used..].iter().any(|&w| w != 0) {
                return fail("bit set outside the heap numbering", kval, usize::MAX);
            }
        }
        if !self.lists().masks_agree() {
            return fail("a lone free list is marked empty", kval, usize::MAX);
        }

        let mut covered = 0usize;
        for k in SMALLEST_K..=kval {
            let (range, mask) = self.order_words(k);
            let free_count: usize = free[range.clone()]
                .iter()
                .map(|w| (w & mask).count_ones() as usize)
                .sum();
            let live_count: usize = live[range.clone()]
                .iter()
                .map(|w| (w & mask).count_ones() as usize)
                .sum();
            covered += (free_count + live_count) << k;
            if k < kval {
                // Buddies are bits 2m and 2m + 1; an order's bits start at an even bit.
                for w in &free[range.clone()] {
                    let w = w & mask;
                    if w & (w >> 1) & 0x5555_5555_5555_5555 != 0 {
                        return fail("two free buddies not merged", k, usize::MAX);
                    }
                }
            }
            for (f, l) in free[range.clone()].iter().zip(&live[range]) {
                if f & l & mask != 0 {
                    return fail("block both free and allocated", k, usize::MAX);
                }
            }
            // Walk list k: bounded by the free bits of order k, so a cycle cannot hang us.
            let mut prev = NIL;
            let mut off = self.lists().head(k);
            let mut seen = 0usize;
            while off != NIL {
                if seen == free_count {
                    return fail("free list longer than its free bits (cycle?)", k, off);
                }
                if off >= size || off & ((1 << k) - 1) != 0 {
                    return fail("free list node outside the pool or misaligned", k, off);
                }
                if !self.bit(Map::Free, k, off >> k) {
                    return fail("free list node without its free bit", k, off);
                }
                // SAFETY: `off` is inside the pool and aligned, a free block by its bit.
                if unsafe { self.lists().prev_in(base, k, off) } != prev {
                    return fail("free list back link broken", k, off);
                }
                prev = off;
                // SAFETY: as above.
                off = unsafe { self.lists().next_in(base, k, off) };
                seen += 1;
            }
            if seen != free_count {
                return fail("free list shorter than its free bits", k, usize::MAX);
            }
        }
        // Every byte covered at least once (walk) and the covered total equals the size: so
        // every byte is covered exactly once.
        if covered != size {
            return fail(
                "free and allocated blocks do not add up to the pool",
                kval,
                usize::MAX,
            );
        }
        self.check_tiling(kval, 0)
    }

    /// Every byte of block `index` of order `k` lies in some free or live block.
    fn check_tiling(&self, k: u32, index: usize) -> Result<(), Corruption> {
        if self.bit(Map::Free, k, index) || self.bit(Map::Live, k, index) {
            return Ok(());
        }
        if k == SMALLEST_K {
            return fail("bytes in no block (lost memory)", k, index << k);
        }
        self.check_tiling(k - 1, 2 * index)?;
        self.check_tiling(k - 1, 2 * index + 1)
    }
}
