//! The units a block is named in, as types, so that a value never changes meaning silently:
//! - [`Order`] `k`: the block is `2^k` bytes;
//! - [`Offset`]: the block's byte distance from the pool's base (a multiple of its size);
//! - [`BlockIndex`]: block number `i` of its order, i.e. the block at offset `i · 2^k`.
//!
//! Addresses (what callers and thread caches hold) become offsets in one place each way:
//! `Region::offset_of` and `Region::ptr_at`.

/// A block order: blocks of order `k` are `2^k` bytes, aligned to `2^k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Order(pub(crate) u32);

impl Order {
    /// The raw exponent.
    #[inline(always)]
    pub(crate) const fn get(self) -> u32 {
        self.0
    }

    /// The exponent as an array index (per-order tables are indexed by order).
    #[inline(always)]
    pub(crate) const fn slot(self) -> usize {
        self.0 as usize
    }

    /// Bytes in a block of this order.
    #[inline(always)]
    pub(crate) const fn bytes(self) -> usize {
        1 << self.0
    }

    /// The order `levels` above this one.
    #[inline(always)]
    pub(crate) const fn up(self, levels: u32) -> Order {
        Order(self.0 + levels)
    }

    /// Orders `self ..= top`.
    #[inline]
    pub(crate) fn through(self, top: Order) -> impl DoubleEndedIterator<Item = Order> {
        (self.0..=top.0).map(Order)
    }
}

/// A block's byte offset from the pool's base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Offset(pub(crate) usize);

impl Offset {
    /// The block's number among blocks of order `k` (the offset must be `k`-aligned).
    #[inline(always)]
    pub(crate) const fn index(self, k: Order) -> BlockIndex {
        BlockIndex(self.0 >> k.0)
    }
}

/// Block number `i` of some order (the order travels beside it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct BlockIndex(pub(crate) usize);

impl BlockIndex {
    /// The offset of this block of order `k`.
    #[inline(always)]
    pub(crate) const fn offset(self, k: Order) -> Offset {
        Offset(self.0 << k.0)
    }

    /// The block `n` places further on.
    #[inline(always)]
    pub(crate) const fn plus(self, n: usize) -> BlockIndex {
        BlockIndex(self.0 + n)
    }

    /// The first block of the 64-block bitmap word holding this one, and this block's bit.
    #[inline(always)]
    pub(crate) const fn word_and_bit(self) -> (BlockIndex, u32) {
        (BlockIndex(self.0 & !63), (self.0 % 64) as u32)
    }
}
