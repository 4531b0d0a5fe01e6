//! [`PoolBuilder`]: a pool's size and cache settings.

use core::ops::RangeInclusive;
use core::time::Duration;

use balloc_core::{pool_order_for, InitError};

use crate::config::{
    CacheConfig, DEFAULT_CACHED_ORDERS, DEFAULT_CACHE_BATCH, DEFAULT_CACHE_CAPACITY,
};
use crate::facade::LOOM;
use crate::pool::ConcurrentPool;
use crate::purge::{PurgeConfig, DEFAULT_PURGE_DELAY, DEFAULT_PURGE_THRESHOLD};
use crate::shared::PoolShared;

/// Settings for a [`ConcurrentPool`]; start from [`ConcurrentPool::builder`].
///
/// # Examples
/// ```
/// use balloc_concurrent::ConcurrentPool;
///
/// let pool = ConcurrentPool::builder()
///     .size(1 << 24)
///     .cached_orders(6..=10)   // 64 B to 1 KiB blocks go through thread caches
///     .cache_capacity(32)      // at most 32 blocks per order per thread
///     .cache_batch(8)          // moved 8 at a time
///     .purge_delay(std::time::Duration::from_millis(50)) // free memory goes back after 50 ms
///     .purge_threshold(16 << 20)                          // once 16 MiB were freed
///     .build()?;
/// assert_eq!(pool.size(), 1 << 24);
/// # Ok::<(), balloc_concurrent::InitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PoolBuilder {
    size: usize,
    cached_orders: RangeInclusive<u32>,
    capacity: usize,
    batch: Option<usize>,
    purge: Option<PurgeConfig>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            size: 0,
            cached_orders: DEFAULT_CACHED_ORDERS,
            capacity: DEFAULT_CACHE_CAPACITY,
            batch: None,
            purge: Some(PurgeConfig {
                delay: DEFAULT_PURGE_DELAY,
                threshold: DEFAULT_PURGE_THRESHOLD,
            }),
        }
    }
}

impl PoolBuilder {
    /// Pool size, with `BuddyPool::new`'s rules (0 → 2^DEFAULT_K, round up to a power of two,
    /// at least 2^MIN_K).
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// Orders whose blocks go through per-thread caches (clamped to 6..=16 and below the pool's
    /// own order). Default 6..=16 (64 B to 64 KiB).
    pub fn cached_orders(mut self, orders: RangeInclusive<u32>) -> Self {
        self.cached_orders = orders;
        self
    }

    /// Blocks per cached order per thread (further capped at 1 MiB and at 1/256 of the pool
    /// per order). 0 turns caching off: every call goes to the shared bitmaps. Default 256.
    pub fn cache_capacity(mut self, blocks: usize) -> Self {
        self.capacity = blocks;
        self
    }

    /// Blocks moved per refill or flush (1..=64, at most the capacity). Default capacity / 4.
    pub fn cache_batch(mut self, blocks: usize) -> Self {
        self.batch = Some(blocks);
        self
    }

    /// How long freed memory stays resident before the pool hands it back to the OS on its
    /// own (see [`Self::purge_threshold`]). Default 10 ms (mimalloc's default purge delay).
    /// Turns purging on if [`Self::no_purge`] turned it off.
    ///
    /// There is no background thread: slow paths (a release of a block of a page or more, an
    /// allocation that misses its cache) check the deadline, and the thread that finds it
    /// passed hands back a bounded amount (up to 512 pieces of at most 2 MiB and about
    /// 32 MiB, one `madvise` per run of dirty pages: about 1.5 ms on 2 vCPUs) and leaves the
    /// rest to the next slow path. The cost: that `madvise` work on the thread that notices,
    /// and a page fault per page when the memory is used again. A pool that only serves cache
    /// hits never purges; [`ConcurrentPool::trim`] always can.
    pub fn purge_delay(mut self, delay: Duration) -> Self {
        self.purge = Some(PurgeConfig {
            delay,
            ..self.purge.unwrap_or(PurgeConfig {
                delay,
                threshold: DEFAULT_PURGE_THRESHOLD,
            })
        });
        self
    }

    /// Bytes that must have been freed (in blocks of a page or more) since the last purge
    /// for a purge to run once the delay has passed. Default 4 MiB. Turns purging on if
    /// [`Self::no_purge`] turned it off.
    pub fn purge_threshold(mut self, bytes: usize) -> Self {
        self.purge = Some(PurgeConfig {
            threshold: bytes,
            ..self.purge.unwrap_or(PurgeConfig {
                delay: DEFAULT_PURGE_DELAY,
                threshold: bytes,
            })
        });
        self
    }

    /// No automatic return of memory: free pages stay resident until
    /// [`ConcurrentPool::trim`].
    pub fn no_purge(mut self) -> Self {
        self.purge = None;
        self
    }

    /// Reserves the pool.
    ///
    /// # Errors
    /// [`InitError::TooLarge`] above 2^MAX_K; [`InitError::Os`] when the OS refuses.
    pub fn build(self) -> Result<ConcurrentPool, InitError> {
        let kval = pool_order(self.size).ok_or(InitError::TooLarge {
            requested: self.size,
        })?;
        let batch = self
            .batch
            .unwrap_or(if self.capacity == DEFAULT_CACHE_CAPACITY {
                DEFAULT_CACHE_BATCH
            } else {
                (self.capacity / 4).max(1)
            });
        let config = CacheConfig::new(kval, self.cached_orders, self.capacity, batch);
        let shared = PoolShared::create(kval, config, self.purge)?;
        // SAFETY: `create` returned a new shared state with one strong and one weak reference,
        // which the pool now owns.
        Ok(unsafe { ConcurrentPool::from_shared(shared, kval) })
    }
}

/// The pool order for `size`: core's rule, except that loom models may use tiny pools (down to
/// two smallest blocks) so that every block is contended.
fn pool_order(size: usize) -> Option<u32> {
    if LOOM && size.is_power_of_two() && size < (1 << balloc_core::MIN_K) {
        return Some(size.trailing_zeros().max(balloc_core::SMALLEST_K));
    }
    pool_order_for(size)
}
