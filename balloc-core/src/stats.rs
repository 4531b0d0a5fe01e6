//! A snapshot of where a pool's bytes are.

use crate::order::ORDER_COUNT;

/// Where a pool's bytes are at one moment.
///
/// `allocated_bytes + free_bytes + cached_bytes == size` (for a concurrent pool, exactly so when
/// no thread is inside a call).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes managed by the pool: `2^kval`.
    pub size: usize,
    /// Bytes in blocks handed out to callers (whole blocks: a 100-byte request counts 128).
    pub allocated_bytes: usize,
    /// Bytes in free blocks of the pool itself.
    pub free_bytes: usize,
    /// Bytes in free blocks held by per-thread caches (always 0 for `BuddyPool`).
    pub cached_bytes: usize,
    /// Size of the largest free block (0 when none): the largest request that can succeed now.
    pub largest_free_block: usize,
    /// `free_blocks[k]`: number of free blocks of order `k`.
    pub free_blocks: [usize; ORDER_COUNT],
    /// Bytes of side metadata (bitmaps), outside the managed memory.
    pub metadata_bytes: usize,
    /// Bytes of the pool's memory backed by physical pages (resident), as the OS reports
    /// (`mincore`) where it can; otherwise an upper bound: for a concurrent pool, the bytes not
    /// known to be untouched or handed back, and for a pool over caller memory, `size`.
    pub resident_bytes: usize,
}

impl Stats {
    /// An empty snapshot for a pool of `size` bytes, to be filled in.
    pub const fn empty(size: usize, metadata_bytes: usize) -> Self {
        Self {
            size,
            allocated_bytes: 0,
            free_bytes: 0,
            cached_bytes: 0,
            largest_free_block: 0,
            free_blocks: [0; ORDER_COUNT],
            metadata_bytes,
            resident_bytes: 0,
        }
    }

    /// Counts `count` free blocks of order `k` into the snapshot.
    pub fn add_free_blocks(&mut self, k: u32, count: usize) {
        self.free_blocks[k as usize] += count;
        self.free_bytes += count << k;
        if count > 0 && (1usize << k) > self.largest_free_block {
            self.largest_free_block = 1usize << k;
        }
    }

    /// True when every byte is free in one block of the pool's top order.
    pub fn is_coalesced(&self) -> bool {
        self.largest_free_block == self.size && self.free_bytes == self.size
    }
}
