//! Where each order's bits live in a pool's side bitmaps.
//!
//! A pool of order `kval` has `2^(kval-k)` blocks of order `k`, for `SMALLEST_K <= k <= kval`.
//! Each order gets its own run of 64-bit words (at least one), laid end to end from the smallest
//! order up: block `i` of order `k` is bit `i % 64` of word `word_base(k) + i / 64`.
//! Buddies `2j` and `2j + 1` are adjacent bits of one word, which the concurrent pool relies on
//! to merge or mark with a single compare-and-swap.
//!
//! One such bitmap costs about `2^kval / 2^(SMALLEST_K + 2)` bits: 0.39% of the pool in bytes.

use crate::error::FreeError;
use crate::order::{ORDER_COUNT, SMALLEST_K};

/// Entries in the `word_base` table: a power of two above `ORDER_COUNT`, so an order indexes it
/// as `k & 63` (one `and`, no bounds check).
const SLOTS: usize = 64;
const _: () = assert!(ORDER_COUNT < SLOTS && SLOTS.is_power_of_two());

/// Word offsets of each order's bitmap for a pool of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    kval: u32,
    /// `word_base[k]`: first word of order `k`; every entry above `kval` is the total.
    word_base: [usize; SLOTS],
}

impl Geometry {
    /// The layout for a pool of order `kval` (`SMALLEST_K <= kval <= MAX_K`).
    pub const fn new(kval: u32) -> Self {
        let mut word_base = [0usize; SLOTS];
        let mut total = 0usize;
        let mut k = SMALLEST_K;
        while k <= kval {
            word_base[k as usize] = total;
            total += words_for_order(kval, k);
            k += 1;
        }
        // Every slot above kval points at the end, so word_base(kval + 1) is the total.
        let mut j = kval as usize + 1;
        while j < SLOTS {
            word_base[j] = total;
            j += 1;
        }
        Self { kval, word_base }
    }

    /// Order of the whole pool.
    #[inline]
    pub const fn kval(&self) -> u32 {
        self.kval
    }

    /// Words in one bitmap (all orders).
    #[inline]
    pub const fn words(&self) -> usize {
        self.word_base[self.kval as usize + 1]
    }

    /// First word of order `k`'s bits (`k <= MAX_K`).
    #[inline(always)]
    pub const fn word_base(&self, k: u32) -> usize {
        // Masked rather than checked: orders come from the pool's own arithmetic, and a mask
        // is one `and` where a bounds check is a branch on every bit access.
        self.word_base[k as usize & (SLOTS - 1)]
    }

    /// Number of words order `k` uses.
    #[inline]
    pub const fn words_of(&self, k: u32) -> usize {
        self.word_base[k as usize + 1] - self.word_base[k as usize]
    }

    /// Number of blocks of order `k` in the pool.
    #[inline]
    pub const fn blocks_of(&self, k: u32) -> usize {
        1usize << (self.kval - k)
    }

    /// Word index and bit mask of block `index` of order `k`.
    #[inline(always)]
    pub const fn locate(&self, k: u32, index: usize) -> (usize, u64) {
        (self.word_base(k) + index / 64, 1u64 << (index % 64))
    }
}

/// The offset of `addr` from a pool at `base` of order `kval`, if it can be a block start.
///
/// # Errors
/// [`FreeError::OutOfPool`] when `addr` is outside `base..base + 2^kval`;
/// [`FreeError::Misaligned`] when its offset is not a multiple of `2^SMALLEST_K`.
#[inline]
pub fn block_offset(base: usize, addr: usize, kval: u32) -> Result<usize, FreeError> {
    let off = addr.wrapping_sub(base);
    if addr < base || off >> kval != 0 {
        return Err(FreeError::OutOfPool);
    }
    if off & ((1 << SMALLEST_K) - 1) != 0 {
        return Err(FreeError::Misaligned);
    }
    Ok(off)
}

/// The order of the allocated block that starts at `off`, found with `is_live(k, index)`, which
/// says whether block `index` of order `k` is allocated. Asks at most once per order.
///
/// Exactly one allocated block can contain `off` (allocated blocks never overlap), so the first
/// order whose enclosing block is allocated decides.
///
/// # Errors
/// [`FreeError::Interior`] when `off` is inside an allocated block but not its start;
/// [`FreeError::DoubleFree`] when no allocated block contains `off`.
#[inline]
pub fn find_live_block(
    off: usize,
    kval: u32,
    mut is_live: impl FnMut(u32, usize) -> bool,
) -> Result<u32, FreeError> {
    let mut k = SMALLEST_K;
    while k <= kval {
        let index = off >> k;
        if is_live(k, index) {
            return if index << k == off {
                Ok(k)
            } else {
                Err(FreeError::Interior)
            };
        }
        k += 1;
    }
    Err(FreeError::DoubleFree)
}

/// The halves of a set of blocks: each bit `b` of `x` set in bits `2b` and `2b + 1`. With
/// blocks numbered per order, block `i`'s halves are blocks `2i` and `2i + 1` of the order
/// below, so the low and the high 32 bits of a word of order `k` spread into two words of order
/// `k - 1`. Five shifts and masks, no loop.
#[inline]
pub const fn spread_halves(x: u32) -> u64 {
    let mut t = x as u64;
    t = (t | t << 16) & 0x0000_FFFF_0000_FFFF;
    t = (t | t << 8) & 0x00FF_00FF_00FF_00FF;
    t = (t | t << 4) & 0x0F0F_0F0F_0F0F_0F0F;
    t = (t | t << 2) & 0x3333_3333_3333_3333;
    t = (t | t << 1) & 0x5555_5555_5555_5555;
    t | t << 1
}

/// Words that order `k` of a pool of order `kval` needs: one bit per block, at least one word.
const fn words_for_order(kval: u32, k: u32) -> usize {
    let blocks = 1usize << (kval - k);
    if blocks < 64 {
        1
    } else {
        blocks / 64
    }
}

/// Words of side metadata a `BuddyPool` of `size` bytes (a power of two, at least `2^MIN_K`)
/// needs: two bitmaps, one marking free blocks and one marking allocated blocks.
///
/// Use it to size the buffer given to `BuddyPool::from_raw`.
pub const fn metadata_words(size: usize) -> usize {
    let kval = size.trailing_zeros();
    2 * Geometry::new(kval).words()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{MAX_K, MIN_K};

    #[test]
    fn spread_halves_doubles_every_bit() {
        for b in 0..32 {
            assert_eq!(spread_halves(1 << b), 0b11 << (2 * b), "bit {b}");
        }
        assert_eq!(spread_halves(u32::MAX), u64::MAX);
        assert_eq!(spread_halves(0b101), 0b11_00_11);
    }

    #[test]
    fn orders_do_not_overlap_and_fit_their_blocks() {
        for kval in [MIN_K, 25, 30] {
            let g = Geometry::new(kval);
            for k in SMALLEST_K..=kval {
                assert!(
                    g.words_of(k) * 64 >= g.blocks_of(k),
                    "order {k} holds all its blocks"
                );
                assert_eq!(g.word_base(k) + g.words_of(k), g.word_base(k + 1));
            }
        }
    }

    #[test]
    fn two_bitmaps_cost_under_one_percent() {
        for kval in MIN_K..=MAX_K {
            let bytes = metadata_words(1usize << kval) * 8;
            assert!(
                bytes * 100 <= (1usize << kval),
                "kval {kval}: {bytes} bytes of metadata"
            );
        }
    }

    #[test]
    fn buddies_share_a_word() {
        let g = Geometry::new(MIN_K);
        for k in SMALLEST_K..MIN_K {
            for j in 0..g.blocks_of(k) / 2 {
                assert_eq!(g.locate(k, 2 * j).0, g.locate(k, 2 * j + 1).0);
            }
        }
    }
}
