//! The Go library's tests (the one balloc's API comes from), against `ConcurrentPool`
//! (through the pool and a `LocalCache`).

use balloc_concurrent::{btok, AllocError, ConcurrentPool, DEFAULT_K, MIN_K, SMALLEST_K};

use crate::{assert_whole, POOL};

#[test]
fn alloc_one_byte_then_free_coalesces() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let p = pool.alloc(1).unwrap();
    assert_eq!(pool.usable_size(p), Some(1 << SMALLEST_K));
    pool.free(p).unwrap();
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn whole_pool_then_out_of_memory_then_free() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let all = pool.alloc(POOL).unwrap();
    assert_eq!(
        pool.alloc(5),
        Err(AllocError::OutOfMemory { order: SMALLEST_K })
    );
    pool.free(all).unwrap();
    assert_whole(&pool);
    let p = pool.alloc(5).unwrap();
    pool.free(p).unwrap();
    pool.flush_thread_cache();
    assert_whole(&pool);
}

const MAX_INIT_K: u32 = if cfg!(miri) { MIN_K } else { 30 };

#[test]
fn init_every_power_of_two() {
    for k in MIN_K..=MAX_INIT_K {
        let pool = ConcurrentPool::new(1 << k).unwrap();
        assert_eq!(pool.kval(), k);
        assert_eq!(pool.size(), 1 << k);
        assert_whole(&pool);
    }
}

#[test]
fn init_sizes_round_as_the_seed_does() {
    assert_eq!(btok(1025), 11);
    if cfg!(miri) {
        eprintln!("NOTE: under Miri, init(0) checks the size rule only (no 1 GiB allocation)");
        assert_eq!(balloc_core::pool_order_for(0), Some(DEFAULT_K));
    } else {
        assert_eq!(ConcurrentPool::new(0).unwrap().kval(), DEFAULT_K);
    }
    assert_eq!(ConcurrentPool::new(1 << 15).unwrap().kval(), MIN_K);
    assert_eq!(ConcurrentPool::new((1 << 20) + 1).unwrap().kval(), 21);
}

#[test]
fn alloc_zero_is_an_error() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    assert_eq!(pool.alloc(0), Err(AllocError::ZeroSize));
    assert_eq!(pool.local().alloc(0), Err(AllocError::ZeroSize));
    assert_whole(&pool);
}

#[test]
fn ten_small_allocs_freed_in_order_coalesce() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    for local in [false, true] {
        let handle = pool.local();
        let blocks: Vec<_> = (0..10)
            .map(|_| {
                if local {
                    handle.alloc(8).unwrap()
                } else {
                    pool.alloc(8).unwrap()
                }
            })
            .collect();
        let mut sorted = blocks.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10, "distinct blocks");
        assert_eq!(pool.stats().allocated_bytes, 10 * 64);
        for b in blocks {
            if local {
                handle.free(b).unwrap();
            } else {
                pool.free(b).unwrap();
            }
        }
        drop(handle);
        pool.flush_thread_cache();
        assert_whole(&pool);
    }
}

#[test]
fn blocks_are_aligned_to_their_size() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let local = pool.local();
    let mut live = Vec::new();
    for k in SMALLEST_K..16 {
        for _ in 0..3 {
            let p = local.alloc(1 << k).unwrap();
            assert_eq!(p.as_ptr().addr() % (1 << k), 0);
            live.push(p);
        }
    }
    for p in live {
        local.free(p).unwrap();
    }
    drop(local);
    assert_whole(&pool);
}

#[test]
fn stats_account_for_cached_blocks() {
    // Explicit cache settings: the defaults shrink under Miri to a batch of 1.
    let pool = ConcurrentPool::builder()
        .size(POOL)
        .cache_capacity(16)
        .cache_batch(4)
        .build()
        .unwrap();
    let local = pool.local();
    let p = local.alloc(64).unwrap();
    let s = pool.stats();
    assert_eq!(s.allocated_bytes, 64);
    assert!(s.cached_bytes > 0, "a refill caches a batch: {s:?}");
    assert_eq!(s.allocated_bytes + s.free_bytes + s.cached_bytes, POOL);
    local.free(p).unwrap();
    assert_eq!(pool.stats().allocated_bytes, 0);
    local.flush();
    assert_eq!(pool.stats().cached_bytes, 0);
    drop(local);
    assert_whole(&pool);
}
