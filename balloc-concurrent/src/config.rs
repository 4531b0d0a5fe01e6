//! How a pool caches: which orders, how many blocks per thread, how many move at a time.

use balloc_core::order::{ORDER_COUNT, SMALLEST_K};

/// Highest order a cache may hold: 2^16 = 64 KiB blocks.
pub const MAX_CACHED_K: u32 = 16;

/// Default cached orders: 64 B to 4 KiB, the sizes a service allocates per request. Larger
/// blocks are rarer and each one cached strands more memory, so they go to the shared bitmaps.
pub const DEFAULT_CACHED_ORDERS: core::ops::RangeInclusive<u32> = SMALLEST_K..=12;

/// Default blocks per cached order per thread (before the per-order byte cap).
/// Small under loom and Miri so refill and flush paths run in those tests.
pub const DEFAULT_CACHE_CAPACITY: usize = if cfg!(any(miri, balloc_loom)) { 4 } else { 64 };

/// Default batch: a quarter of the capacity, as Linux's per-CPU page lists use
/// (`batch ≈ high / 4`): a refill leaves room for frees, a flush leaves blocks for allocations.
pub const DEFAULT_CACHE_BATCH: usize = DEFAULT_CACHE_CAPACITY / 4;

/// Bytes one thread may cache per order: at most 64 KiB, and at most 1/256 of the pool, so a
/// thread that stops using the pool strands at most `7 × min(64 KiB, pool/256)` bytes
/// with the default orders (≤ 2.8% of a 1 MiB pool, ≤ 0.03% of a 1 GiB pool).
pub const MAX_CACHED_BYTES_PER_ORDER: usize = 64 << 10;

/// Per-order cache limits of one pool.
#[derive(Debug, Clone)]
pub(crate) struct CacheConfig {
    /// `capacity[k]`: blocks of order `k` a cache may hold (0: order not cached).
    pub(crate) capacity: [u16; ORDER_COUNT],
    /// `batch[k]`: blocks moved per refill or flush (1 ..= capacity).
    pub(crate) batch: [u16; ORDER_COUNT],
    /// Total slots over all orders.
    pub(crate) slots: usize,
}

impl CacheConfig {
    pub(crate) fn new(
        kval: u32,
        orders: core::ops::RangeInclusive<u32>,
        capacity: usize,
        batch: usize,
    ) -> Self {
        let mut cap = [0u16; ORDER_COUNT];
        let mut bat = [0u16; ORDER_COUNT];
        let lo = (*orders.start()).max(SMALLEST_K);
        let hi = (*orders.end())
            .min(MAX_CACHED_K)
            .min(kval.saturating_sub(1));
        let per_order_bytes = MAX_CACHED_BYTES_PER_ORDER.min((1usize << kval) >> 8);
        let mut slots = 0;
        if capacity > 0 && lo <= hi {
            for k in lo..=hi {
                let c = capacity.min(per_order_bytes >> k).min(u16::MAX as usize);
                if c == 0 {
                    continue;
                }
                cap[k as usize] = c as u16;
                bat[k as usize] = batch.clamp(1, c).min(64) as u16;
                slots += c;
            }
        }
        Self {
            capacity: cap,
            batch: bat,
            slots,
        }
    }

    /// Whether blocks of order `k` go through caches.
    #[inline]
    pub(crate) fn caches(&self, k: u32) -> bool {
        self.capacity[k as usize] != 0
    }

    /// Most bytes one cache can hold.
    pub(crate) fn max_bytes_per_cache(&self) -> usize {
        (0..ORDER_COUNT)
            .map(|k| (self.capacity[k] as usize) << k)
            .sum()
    }
}
