//! How a pool caches: which orders, how many blocks per thread, how many move at a time.

use balloc_core::internal::ORDER_COUNT;
use balloc_core::SMALLEST_K;

use crate::depot::Shape;
use crate::facade::LOOM;
use crate::units::Order;

/// Highest order a cache may hold: 2^16 = 64 KiB blocks.
pub const MAX_CACHED_K: u32 = 16;

/// Default cached orders: 64 B to 64 KiB. Every order goes through a cache, so a steady
/// alloc/free of one size never walks the bitmaps; the per-order byte cap below keeps large
/// orders to a few blocks per thread.
pub const DEFAULT_CACHED_ORDERS: core::ops::RangeInclusive<u32> = SMALLEST_K..=MAX_CACHED_K;

/// Default blocks per cached order per thread, before the per-order byte cap (which is what
/// limits orders above 2^8). 256, moved 64 at a time: a burst of a thousand small allocations
/// and frees (the bench's `batch` workload) then goes to the shared bitmaps once per 64 blocks
/// instead of once per 16 (the figures are in the bench README). Small under loom and Miri so
/// refill and flush paths run in those tests.
pub const DEFAULT_CACHE_CAPACITY: usize = if cfg!(miri) || LOOM { 4 } else { 256 };

/// Default batch: a quarter of the capacity, as Linux's per-CPU page lists use
/// (`batch ≈ high / 4`): a refill leaves room for frees, a flush leaves blocks for allocations.
pub const DEFAULT_CACHE_BATCH: usize = DEFAULT_CACHE_CAPACITY / 4;

/// Bytes one thread may cache per order: at most 1 MiB, and at most 1/256 of the pool, so a
/// thread that stops using the pool strands at most the sum over cached orders: with the
/// defaults 28 KiB of a 1 MiB pool (2.7%) and 6,128 KiB of a 1 GiB pool (0.6%).
///
/// Why 1 MiB: a thread's working set of small blocks should fit its cache, or every
/// allocation past the cap goes through the shared bitmaps and threads contend there (the
/// bench's `batch` workload keeps 572 KiB of 4 KiB blocks live per thread). mimalloc and
/// snmalloc keep comparable amounts in their thread-local pages. The pressure epoch (see
/// `ladder`) asks these caches to hand their blocks back before an allocation reports
/// out-of-memory.
pub const MAX_CACHED_BYTES_PER_ORDER: usize = 1 << 20;

/// Per-order cache limits of one pool.
#[derive(Debug, Clone)]
pub(crate) struct CacheConfig {
    /// `capacity[k]`: blocks of order `k` a cache may hold (0: order not cached).
    pub(crate) capacity: [u16; ORDER_COUNT],
    /// `batch[k]`: blocks moved per refill or flush (1 ..= capacity).
    pub(crate) batch: [u16; ORDER_COUNT],
    /// Blocks one cache holds at most, over all orders: `Σ capacity[k]`.
    pub(crate) total_capacity: usize,
    /// `depot[k]`: how order `k`'s magazines are laid out in the pool's depot: as many
    /// `batch`es as fit one cache's byte cap for the order (at least one, at most
    /// `depot::SHARDS × depot::SLOTS`), spread over shards first (see `depot::Shape`).
    pub(crate) depot: [Shape; ORDER_COUNT],
    /// The cached orders, `first..=last` (empty when nothing is cached: `first > last`).
    pub(crate) first: Order,
    pub(crate) last: Order,
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
        let mut total_capacity = 0;
        let mut depot = [Shape::default(); ORDER_COUNT];
        let (mut first, mut last) = (Order(u32::MAX), Order(0));
        if capacity > 0 && lo <= hi {
            for k in lo..=hi {
                let c = capacity.min(per_order_bytes >> k).min(u16::MAX as usize);
                if c == 0 {
                    continue;
                }
                cap[k as usize] = c as u16;
                bat[k as usize] = batch.clamp(1, c).min(64) as u16;
                total_capacity += c;
                first = first.min(Order(k));
                last = last.max(Order(k));
                let magazine_bytes = (bat[k as usize] as usize) << k;
                depot[k as usize] = Shape::for_magazines(per_order_bytes / magazine_bytes);
            }
        }
        Self {
            capacity: cap,
            batch: bat,
            total_capacity,
            depot,
            first,
            last,
        }
    }

    /// Whether blocks of order `k` go through caches.
    #[inline]
    pub(crate) fn caches(&self, k: Order) -> bool {
        self.capacity[k.slot()] != 0
    }

    /// Most bytes the depot can hold.
    pub(crate) fn max_depot_bytes(&self) -> usize {
        (0..ORDER_COUNT)
            .map(|k| (self.depot[k].magazines() * self.batch[k] as usize) << k)
            .sum()
    }

    /// Most bytes one cache can hold.
    pub(crate) fn max_bytes_per_cache(&self) -> usize {
        (0..ORDER_COUNT)
            .map(|k| (self.capacity[k] as usize) << k)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(kval: u32) -> CacheConfig {
        CacheConfig::new(kval, DEFAULT_CACHED_ORDERS, 256, 64)
    }

    #[test]
    fn per_thread_bound_matches_the_docs() {
        assert_eq!(defaults(20).max_bytes_per_cache(), 28 << 10);
        assert_eq!(defaults(30).max_bytes_per_cache(), 6128 << 10);
    }

    #[test]
    fn depot_bound_matches_the_docs() {
        assert_eq!(defaults(20).max_depot_bytes(), 28 << 10);
        // Natively 16 shards; under Miri the depot has 2 (see `depot::SHARDS`).
        let kib = if cfg!(miri) { 6128 } else { 9088 };
        assert_eq!(defaults(30).max_depot_bytes(), kib << 10);
    }

    #[test]
    fn capacity_respects_the_byte_caps_and_the_pool_order() {
        let c = defaults(20);
        for k in 0..ORDER_COUNT {
            assert!(
                (c.capacity[k] as usize) << k <= 4096,
                "order {k}: 1/256 of 1 MiB"
            );
            assert!(c.batch[k] <= c.capacity[k].max(1));
        }
        assert!(!c.caches(Order(20)), "the top order is never cached");
        assert_eq!(
            (c.first, c.last),
            (Order(6), Order(12)),
            "64 B to 4 KiB fit 4 KiB per order"
        );
        let off = CacheConfig::new(30, DEFAULT_CACHED_ORDERS, 0, 1);
        assert_eq!(off.max_bytes_per_cache(), 0);
        assert!(off.first > off.last, "no cached order");
    }
}
