//! Orders: the size classes of the buddy system.
//!
//! A block of order `k` is `2^k` bytes and starts at an offset from the pool base that is a
//! multiple of `2^k`. Its buddy is the block whose offset differs only in bit `k`.
//! The constants are the Go library's (the one balloc's API comes from), with the same names
//! and values.

use core::alloc::Layout;

use crate::error::AllocError;

/// Order of the pool built by `BuddyPool::new(0)`: 2^30 bytes (1 GiB).
pub const DEFAULT_K: u32 = 30;
/// Order of the smallest pool: 2^20 bytes (1 MiB). Smaller requests round up to it.
pub const MIN_K: u32 = 20;
/// Order of the largest pool: 2^48 bytes (256 TiB, the x86-64 and AArch64 virtual address space).
pub const MAX_K: u32 = 48;
/// Order of the smallest block: 2^6 bytes (64 B, one cache line; also room for a free-list node).
pub const SMALLEST_K: u32 = 6;

/// Number of orders that can exist, indexed `0..=MAX_K` (orders below [`SMALLEST_K`] stay empty).
pub const ORDER_COUNT: usize = MAX_K as usize + 1;

/// The order of the smallest block that holds `bytes`: the smallest `k >= SMALLEST_K` with
/// `2^k >= bytes`.
///
/// Total for every `usize`: `btok(0) == SMALLEST_K`, and requests above `2^(usize::BITS - 1)`
/// give `usize::BITS` (a block that cannot exist, which every pool rejects as too large).
///
/// # Examples
/// ```
/// use balloc_core::btok;
/// assert_eq!(btok(0), 6);
/// assert_eq!(btok(1024), 10);
/// assert_eq!(btok(1025), 11);
/// assert_eq!(btok(usize::MAX), usize::BITS);
/// ```
#[inline]
pub const fn btok(bytes: usize) -> u32 {
    if bytes <= (1 << SMALLEST_K) {
        SMALLEST_K
    } else {
        // bytes >= 65, so bytes - 1 cannot underflow; the result is at most usize::BITS.
        usize::BITS - (bytes - 1).leading_zeros()
    }
}

/// The order of the pool that `BuddyPool::new(size)` builds, or `None` when `size` is above
/// `2^MAX_K` or has no power of two in `usize`.
///
/// Size 0 means `2^DEFAULT_K`; sizes round up to a power of two; below `2^MIN_K` rounds up to
/// `2^MIN_K`.
#[inline]
pub const fn pool_order_for(size: usize) -> Option<u32> {
    if size == 0 {
        return Some(DEFAULT_K);
    }
    let k = btok(size);
    let k = if k < MIN_K { MIN_K } else { k };
    if k > MAX_K || k >= usize::BITS {
        None
    } else {
        Some(k)
    }
}

/// The order a [`core::alloc::Layout`] needs: its size and alignment, rounded up together.
#[inline]
pub const fn layout_order(size: usize, align: usize) -> u32 {
    let bytes = if size > align { size } else { align };
    btok(bytes)
}

/// The order for `(size, align)` as [`layout_order`] gives it when `size > 0`, and
/// `usize::BITS` (an order no pool has) when `size == 0`: a zero-size request then needs no
/// test of its own on a fast path, it just finds no block of that order.
///
/// # Examples
/// ```
/// use balloc_core::internal::{fast_layout_order, layout_order};
/// assert_eq!(fast_layout_order(100, 8), layout_order(100, 8));
/// assert_eq!(fast_layout_order(1, 4096), 12);
/// assert_eq!(fast_layout_order(0, 8), usize::BITS);
/// ```
#[inline(always)]
pub const fn fast_layout_order(size: usize, align: usize) -> u32 {
    // The highest set bit of `(size - 1) | (align - 1)` is that of `max(size, align) - 1`
    // (when size == 0, `size - 1` wraps to usize::MAX: order usize::BITS). OR-ing in
    // `2^SMALLEST_K - 1` floors the order at SMALLEST_K and makes the operand non-zero, so
    // this is an `or` and a `bsr`, with no branch and no max.
    let m = size.wrapping_sub(1) | align.wrapping_sub(1) | ((1 << SMALLEST_K) - 1);
    usize::BITS - m.leading_zeros()
}

/// The order a pool of order `kval` serves `alloc(size)` with: `btok(size)`.
///
/// # Errors
/// [`AllocError::ZeroSize`] for 0; [`AllocError::TooLarge`] when the block would exceed the pool.
#[inline]
pub fn checked_size_order(size: usize, kval: u32) -> Result<u32, AllocError> {
    if size == 0 {
        return Err(AllocError::ZeroSize);
    }
    let k = btok(size);
    if k > kval {
        return Err(AllocError::TooLarge { requested: size });
    }
    Ok(k)
}

/// The order a pool of order `kval` serves `alloc_layout(layout)` with:
/// `btok(max(size, align))`.
///
/// # Errors
/// [`AllocError::ZeroSize`], [`AllocError::AlignmentTooLarge`] (alignment above the pool size)
/// or [`AllocError::TooLarge`].
#[inline]
pub fn checked_layout_order(layout: Layout, kval: u32) -> Result<u32, AllocError> {
    if layout.size() == 0 {
        return Err(AllocError::ZeroSize);
    }
    if layout.align().trailing_zeros() > kval {
        return Err(AllocError::AlignmentTooLarge {
            align: layout.align(),
        });
    }
    let k = layout_order(layout.size(), layout.align());
    if k > kval {
        return Err(AllocError::TooLarge {
            requested: layout.size(),
        });
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_layout_order_agrees_with_layout_order() {
        let mut sizes: [usize; 12] = [
            1,
            63,
            64,
            65,
            4095,
            4096,
            4097,
            1 << 40,
            (1 << 40) + 1,
            usize::MAX / 2,
            usize::MAX / 2 + 1,
            usize::MAX,
        ];
        sizes.sort_unstable();
        // Under Miri a few thousand calls, not 320,000.
        let (small, step) = if cfg!(miri) { (300, 7) } else { (5000, 1) };
        for align_k in (0..usize::BITS).step_by(step) {
            let align = 1usize << align_k;
            assert_eq!(fast_layout_order(0, align), usize::BITS, "size 0");
            for size in (1..=small).chain(sizes) {
                assert_eq!(
                    fast_layout_order(size, align),
                    layout_order(size, align),
                    "size {size}, align {align}"
                );
            }
        }
    }
}
