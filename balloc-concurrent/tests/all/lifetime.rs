//! Caches and pool lifetimes: a pool dropped while threads that cached from it still run; more
//! pools per thread than cache slots; a new pool after an old one in the same thread.

use std::sync::{mpsc, Arc};

use balloc_concurrent::{ConcurrentPool, THREAD_CACHE_SLOTS};

use crate::{assert_whole, POOL};

#[test]
fn pool_dropped_while_a_thread_that_cached_from_it_runs() {
    let pool = Arc::new(ConcurrentPool::new(POOL).unwrap());
    let (used_tx, used_rx) = mpsc::channel();
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let worker = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let p = pool.alloc(64).unwrap();
            pool.free(p).unwrap(); // now cached in this thread
            assert!(pool.stats().cached_bytes > 0);
            drop(pool);
            used_tx.send(()).unwrap();
            dropped_rx.recv().unwrap();
            // The pool is gone, its cache still sits in one of this thread's slots: as many
            // new pools as there are slots must all get a cache (the dead slot is reclaimed).
            let pools: Vec<_> = (0..THREAD_CACHE_SLOTS)
                .map(|_| ConcurrentPool::new(POOL).unwrap())
                .collect();
            for (i, p) in pools.iter().enumerate() {
                let q = p.alloc(64).unwrap();
                p.free(q).unwrap();
                assert!(p.stats().cached_bytes > 0, "pool {i} got no cache slot");
            }
            drop(pools);
            // A new one must not be confused with the dead one.
            let fresh = ConcurrentPool::new(POOL).unwrap();
            let q = fresh.alloc(64).unwrap();
            fresh.free(q).unwrap();
            fresh.flush_thread_cache();
            assert_eq!(fresh.stats().free_bytes, POOL);
            // Thread exit retires both caches: the dead pool's without touching it.
        })
    };
    used_rx.recv().unwrap();
    drop(pool); // the last reference: region released while the worker's cache still exists
    dropped_tx.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn thread_exit_returns_the_cache() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    assert_eq!(pool.thread_caches(), 0);
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let blocks: Vec<_> = (0..10).map(|_| pool.alloc(200).unwrap()).collect();
            for b in blocks {
                pool.free(b).unwrap();
            }
            assert!(pool.stats().cached_bytes > 0, "the thread caches blocks");
            assert_eq!(pool.thread_caches(), 1, "this thread's cache");
        });
        h.join().unwrap(); // a join waits for the thread-local destructor that returns the cache
    });
    assert_eq!(pool.thread_caches(), 0, "retired at thread exit");
    assert_whole(&pool);
}

#[test]
fn more_pools_than_cache_slots() {
    let pools: Vec<_> = (0..THREAD_CACHE_SLOTS + 2)
        .map(|_| ConcurrentPool::new(POOL).unwrap())
        .collect();
    let blocks: Vec<_> = pools.iter().map(|p| p.alloc(64).unwrap()).collect();
    for (p, b) in pools.iter().zip(&blocks) {
        assert!(p.contains(b.as_ptr()));
        p.free(*b).unwrap();
        assert_eq!(p.free(*b), Err(balloc_concurrent::FreeError::DoubleFree));
    }
    for p in &pools {
        p.flush_thread_cache();
        assert_whole(p);
    }
}

#[test]
fn caching_off_uses_the_shared_bitmaps() {
    let pool = ConcurrentPool::builder()
        .size(POOL)
        .cache_capacity(0)
        .build()
        .unwrap();
    assert_eq!(pool.max_cached_bytes_per_thread(), 0);
    let local = pool.local();
    let p = local.alloc(64).unwrap();
    assert_eq!(pool.stats().cached_bytes, 0);
    assert_eq!(
        pool.thread_caches(),
        0,
        "a LocalCache is not a thread cache"
    );
    local.free(p).unwrap();
    assert_eq!(local.free(p), Err(balloc_concurrent::FreeError::DoubleFree));
    drop(local);
    assert_whole(&pool);
}

#[test]
fn stranded_bytes_are_bounded_and_reported() {
    // A thread that stops using the pool without flushing strands at most one cache's worth,
    // plus what the depot holds (which any other thread's flush or out-of-memory drains).
    let pool = ConcurrentPool::new(POOL).unwrap();
    let per_thread = pool.max_cached_bytes_per_thread();
    assert!(
        per_thread * 100 <= POOL * 3,
        "default caches hold at most 3% of a 1 MiB pool per thread: {per_thread}"
    );
    assert!(
        pool.max_depot_bytes() * 100 <= POOL * 3,
        "the depot holds at most 3% of a 1 MiB pool: {}",
        pool.max_depot_bytes()
    );
    let bound = per_thread + pool.max_depot_bytes();
    let local = pool.local();
    let mut blocks = Vec::new();
    for k in 6..=12 {
        for _ in 0..100 {
            blocks.push(local.alloc(1 << k).unwrap());
        }
    }
    for b in blocks {
        local.free(b).unwrap();
    }
    let s = pool.stats();
    assert!(
        s.cached_bytes <= bound,
        "{} cached > bound {bound}",
        s.cached_bytes
    );
    assert_eq!(s.cached_bytes + s.free_bytes, POOL);
    drop(local);
    assert_whole(&pool);
}

#[test]
fn a_thread_can_cache_for_new_pools_after_old_ones_are_dropped() {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            // More pools over the thread's life than it has slots, a few alive at a time.
            for round in 0..3 * THREAD_CACHE_SLOTS {
                let pool = ConcurrentPool::new(POOL).unwrap();
                let p = pool.alloc(64).unwrap();
                pool.free(p).unwrap();
                assert!(
                    pool.stats().cached_bytes > 0,
                    "round {round}: the thread caches for a new pool"
                );
                let keep = ConcurrentPool::new(POOL).unwrap(); // dropped by... this same thread
                let q = keep.alloc(64).unwrap();
                keep.free(q).unwrap();
                drop(pool);
                drop(keep);
            }
        });
        h.join().unwrap();
    });
}
