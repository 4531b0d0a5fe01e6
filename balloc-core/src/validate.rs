//! A full walk of a [`BuddyPool`]'s invariants, for tests and fuzzing.

use core::fmt;

use crate::free_list::NIL;
use crate::geometry::spread_halves;
use crate::order::{MIN_K, SMALLEST_K};
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
            let bits = self.order_bits(k);
            let free_count = bits.free;
            covered += (free_count + bits.live) << k;
            // The whole pool (order kval) is bit 1, which has no buddy in the map.
            if k < kval && bits.buddies & 0x5555_5555_5555_5555 != 0 {
                return fail("two free buddies not merged", k, usize::MAX);
            }
            if bits.both != 0 {
                return fail("block both free and allocated", k, usize::MAX);
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
        self.check_tiling()
    }

    /// Every byte lies in some free or live block. Walking down from the whole pool, a block
    /// that is neither (a split block) must have halves that are, or are split in turn, down to
    /// the smallest order. Sixty-four blocks at a time: a word of split blocks of order `k`
    /// spreads into the two words of their halves at order `k - 1`.
    fn check_tiling(&self) -> Result<(), Corruption> {
        let kval = self.kval();
        let (free, live) = self.meta().split_at(self.geometry().words());
        let covered = |w: usize| free[w] | live[w];
        // Orders with fewer than 64 blocks share word 0: order k is bits 2^(kval - k) up to
        // 2^(kval - k + 1), the whole pool bit 1. `first` is 2^(kval - k).
        let mut split = 0b10 & !covered(0);
        let mut first = 1;
        while first < 32 {
            split = (spread_halves((split >> first) as u32) << (2 * first)) & !covered(0);
            first *= 2;
        }
        // Order kval - 6 has 64 blocks: word 1 (pools have at least 2^MIN_K bytes, so it lies
        // above SMALLEST_K).
        let halves = spread_halves((split >> 32) as u32) & !covered(1);
        self.check_tiling_word(kval - 6, 1, halves)
    }

    /// Every byte of the blocks of order `k` that are set in `split` (word `w` of the heap
    /// numbering, neither free nor live, inside split blocks only) lies in some free or live
    /// block. Depth-first, lower words first, so the first block found lost is the lowest.
    fn check_tiling_word(&self, k: u32, w: usize, split: u64) -> Result<(), Corruption> {
        if split == 0 {
            return Ok(());
        }
        if k == SMALLEST_K {
            let index = 64 * w + split.trailing_zeros() as usize - (1 << (self.kval() - k));
            return fail("bytes in no block (lost memory)", k, index << k);
        }
        let (free, live) = self.meta().split_at(self.geometry().words());
        for half in 0..2 {
            let w = 2 * w + half;
            let halves = spread_halves((split >> (32 * half)) as u32) & !(free[w] | live[w]);
            self.check_tiling_word(k - 1, w, halves)?;
        }
        Ok(())
    }
}

const _: () = assert!(
    MIN_K - 6 > SMALLEST_K,
    "order kval - 6 is above the smallest"
);
