//! The Go library's tests (the one balloc's API comes from), in balloc's API.

use balloc_core::{btok, AllocError, BuddyPool, DEFAULT_K, MIN_K, SMALLEST_K};

use crate::{assert_valid, POOL};

#[test]
fn alloc_one_byte_then_free_coalesces() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(1).unwrap();
    assert_eq!(pool.usable_size(p), Some(1 << SMALLEST_K));
    assert!(!pool.stats().is_coalesced());
    pool.free(p).unwrap();
    assert!(pool.stats().is_coalesced());
    assert_valid(&pool);
}

#[test]
fn whole_pool_then_out_of_memory_then_free() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let all = pool.alloc(POOL).unwrap();
    assert_eq!(all, pool.base());
    assert_eq!(
        pool.alloc(5),
        Err(AllocError::OutOfMemory { order: SMALLEST_K })
    );
    assert_eq!(pool.stats().free_bytes, 0);
    pool.free(all).unwrap();
    assert!(pool.stats().is_coalesced());
    // Works again after the free.
    let p = pool.alloc(5).unwrap();
    pool.free(p).unwrap();
    assert_valid(&pool);
}

/// Largest pool order created here: Miri keeps pools small.
const MAX_INIT_K: u32 = if cfg!(miri) { MIN_K + 1 } else { 30 };

#[test]
fn init_every_power_of_two() {
    for k in MIN_K..=MAX_INIT_K {
        let pool = BuddyPool::new(1 << k).unwrap();
        assert_eq!(pool.kval(), k);
        assert_eq!(pool.size(), 1 << k);
        assert_eq!(
            pool.base().as_ptr().addr() % (1 << k),
            0,
            "pool aligned to its size"
        );
        let stats = pool.stats();
        assert!(stats.is_coalesced());
        assert_eq!(stats.free_blocks[k as usize], 1);
        assert_valid(&pool);
        pool.destroy().unwrap();
    }
}

#[test]
fn btok_values() {
    assert_eq!(btok(0), 6);
    assert_eq!(btok(1), 6);
    assert_eq!(btok(64), 6);
    assert_eq!(btok(65), 7);
    assert_eq!(btok(1024), 10);
    assert_eq!(btok(1025), 11);
    assert_eq!(btok(1 << 40), 40);
    assert_eq!(btok(usize::MAX), usize::BITS);
    assert_eq!(btok(usize::MAX / 2 + 2), usize::BITS);
}

#[test]
fn init_sizes_round_as_the_seed_does() {
    if cfg!(miri) {
        eprintln!("NOTE: under Miri, init(0) checks the size rule only (no 1 GiB allocation)");
        assert_eq!(balloc_core::pool_order_for(0), Some(DEFAULT_K));
    } else {
        let pool = BuddyPool::new(0).unwrap();
        assert_eq!(pool.kval(), DEFAULT_K);
    }
    let pool = BuddyPool::new(1 << 15).unwrap();
    assert_eq!(pool.kval(), MIN_K);
    drop(pool);
    let pool = BuddyPool::new((1 << 20) + 1).unwrap();
    assert_eq!(pool.kval(), 21);
}

#[test]
#[cfg(not(miri))] // 64 GiB of address space: Miri's fallback allocates for real.
fn init_2_pow_36() {
    let pool = BuddyPool::new(1 << 36).unwrap();
    assert_eq!(pool.kval(), 36);
    assert!(pool.stats().is_coalesced());
}

#[test]
#[cfg(miri)]
fn init_2_pow_36_order_under_miri() {
    eprintln!("NOTE: under Miri, init(2^36) checks the size rule only (no 64 GiB reservation)");
    assert_eq!(balloc_core::pool_order_for(1 << 36), Some(36));
}

#[test]
fn alloc_zero_is_an_error() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    assert_eq!(pool.alloc(0), Err(AllocError::ZeroSize));
    assert!(pool.stats().is_coalesced());
}

#[test]
fn ten_small_allocs_freed_in_order_coalesce() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let blocks: Vec<_> = (0..10).map(|_| pool.alloc(8).unwrap()).collect();
    for (i, a) in blocks.iter().enumerate() {
        for b in &blocks[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(pool.stats().allocated_bytes, 10 * 64);
    for b in blocks {
        pool.free(b).unwrap();
        assert_valid(&pool);
    }
    assert!(pool.stats().is_coalesced());
}

#[test]
fn destroy_works() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(100).unwrap();
    // SAFETY: p is a live 128-byte block.
    unsafe { p.as_ptr().write_bytes(7, 128) };
    pool.destroy().unwrap();
}

#[test]
fn blocks_are_aligned_to_their_size() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let mut live = Vec::new();
    for k in SMALLEST_K..16 {
        let p = pool.alloc(1 << k).unwrap();
        assert_eq!(p.as_ptr().addr() % (1 << k), 0);
        live.push(p);
    }
    for p in live {
        pool.free(p).unwrap();
    }
    assert!(pool.stats().is_coalesced());
}

#[test]
fn free_blocks_iterator_matches_stats() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let a = pool.alloc(64).unwrap();
    let blocks: Vec<_> = pool.free_blocks().collect();
    // Splitting 2^20 down to 2^6 leaves one free upper half at each order 6..20.
    assert_eq!(blocks.len(), 14);
    let stats = pool.stats();
    let bytes: usize = blocks.iter().map(|&(_, k)| 1usize << k).sum();
    assert_eq!(bytes, stats.free_bytes);
    pool.free(a).unwrap();
    assert_eq!(pool.free_blocks().count(), 1);
}

#[test]
fn from_raw_over_caller_memory() {
    use std::alloc::{alloc_zeroed, dealloc, Layout};
    let size = POOL;
    let layout = Layout::from_size_align(size, size).unwrap();
    let words = balloc_core::metadata_words(size);
    let mut meta = vec![u64::MAX; words];
    // SAFETY: a non-zero-sized layout.
    let mem = unsafe { alloc_zeroed(layout) };
    let mem = std::ptr::NonNull::new(mem).unwrap();
    let meta_ptr = std::ptr::NonNull::from(meta.as_mut_slice());
    {
        // SAFETY: `mem` and `meta` outlive the pool and are used by nothing else meanwhile.
        let mut pool = unsafe { BuddyPool::from_raw(mem, size, meta_ptr) }.unwrap();
        assert_eq!(pool.base(), mem);
        let p = pool.alloc(4096).unwrap();
        assert!(pool.contains(p.as_ptr()));
        pool.free(p).unwrap();
        assert!(pool.stats().is_coalesced());
        assert_valid(&pool);
        pool.destroy().unwrap();
    }
    // SAFETY: allocated above with this layout; the pool is gone.
    unsafe { dealloc(mem.as_ptr(), layout) };
}

#[test]
fn metadata_is_under_one_percent() {
    let pool = BuddyPool::new(POOL).unwrap();
    let stats = pool.stats();
    assert!(
        stats.metadata_bytes * 100 <= stats.size,
        "{} bytes",
        stats.metadata_bytes
    );
}
