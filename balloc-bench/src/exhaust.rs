//! A `ConcurrentPool` with nothing left: what the exhaustion measurements (`src/bin/exhaustion.rs`,
//! and the `full-*` cases of `src/bin/callgrind_pair.rs`) start from.

use core::ptr::NonNull;

use balloc_concurrent::{ConcurrentPool, SMALLEST_K};

/// Fill rounds before [`fill`] gives up: one round takes everything unless blocks come back
/// from somewhere (this thread's cache after the flush); a second one takes those.
pub const FILL_ROUNDS: usize = 4;

/// Allocates every byte of `pool` from the calling thread, largest blocks first (each order
/// until it fails), and returns the blocks. Afterwards nothing is free: not in the shared
/// bitmaps, not in the depot, not in this thread's cache (flushed, and filled again if the
/// flush gave blocks back).
///
/// # Panics
/// When the pool still has free or cached bytes after [`FILL_ROUNDS`] rounds (another thread
/// holds cached blocks, or frees while this runs).
pub fn fill(pool: &ConcurrentPool) -> Vec<NonNull<u8>> {
    let mut held = Vec::new();
    for _ in 0..FILL_ROUNDS {
        for k in (SMALLEST_K..=pool.kval()).rev() {
            while let Ok(p) = pool.alloc(1 << k) {
                held.push(p);
            }
        }
        pool.flush_thread_cache();
        let stats = pool.stats();
        if stats.free_bytes == 0 && stats.cached_bytes == 0 {
            return held;
        }
    }
    panic!(
        "the pool is not full after {FILL_ROUNDS} rounds: {:?}",
        pool.stats()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_pool_has_nothing_left() {
        let pool = ConcurrentPool::new(1 << 20).unwrap();
        // Blocks in this thread's cache before the fill must end up allocated too.
        let p = pool.alloc(64).unwrap();
        pool.free(p).unwrap();
        let held = fill(&pool);
        let stats = pool.stats();
        assert_eq!(stats.allocated_bytes, 1 << 20, "{stats:?}");
        assert!(pool.alloc(64).is_err());
        assert!(pool.local().alloc(64).is_err());
        for p in held {
            pool.free(p).unwrap();
        }
        pool.flush_thread_cache();
        assert!(pool.stats().is_coalesced());
    }
}
