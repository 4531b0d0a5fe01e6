//! Every bad input gets its exact error, and the pool stays valid and keeps serving.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::Barrier;

use balloc_concurrent::{AllocError, ConcurrentPool, FreeError, InitError, MAX_K};

use crate::{assert_whole, SendPtr, POOL};

#[track_caller]
fn assert_serves(pool: &ConcurrentPool) {
    pool.validate().unwrap();
    let p = pool.alloc(64).expect("pool still serves");
    pool.free(p).expect("and takes the block back");
}

#[test]
fn double_free_of_cached_and_uncached_orders() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    for size in [64, 4096, 65536] {
        let p = pool.alloc(size).unwrap();
        pool.free(p).unwrap();
        assert_eq!(pool.free(p), Err(FreeError::DoubleFree), "size {size}");
        let local = pool.local();
        assert_eq!(
            local.free(p),
            Err(FreeError::DoubleFree),
            "size {size} via a handle"
        );
        drop(local);
        pool.flush_thread_cache();
        assert_eq!(
            pool.free(p),
            Err(FreeError::DoubleFree),
            "size {size} after flush"
        );
    }
    assert_serves(&pool);
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn free_of_a_block_sitting_in_a_cache_never_handed_out() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let local = pool.local();
    let p = local.alloc(64).unwrap();
    // The refill cached p's neighbours: freeing one of them is a double free.
    let neighbour = NonNull::new(p.as_ptr().wrapping_add(64)).unwrap();
    assert_eq!(pool.free(neighbour), Err(FreeError::DoubleFree));
    assert_eq!(local.free(neighbour), Err(FreeError::DoubleFree));
    local.free(p).unwrap();
    drop(local);
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn foreign_interior_misaligned_and_out_of_range_pointers() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let other = ConcurrentPool::new(POOL).unwrap();
    let p = pool.alloc(4096).unwrap();
    let q = other.alloc(4096).unwrap();
    let at = |off: usize| NonNull::new(p.as_ptr().wrapping_add(off)).unwrap();
    assert_eq!(pool.free(q), Err(FreeError::OutOfPool));
    assert_eq!(pool.free(at(64)), Err(FreeError::Interior));
    assert_eq!(pool.free(at(1024)), Err(FreeError::Interior));
    assert_eq!(pool.free(at(1)), Err(FreeError::Misaligned));
    assert_eq!(pool.free(at(33)), Err(FreeError::Misaligned));
    let base = p.as_ptr().wrapping_sub(p.as_ptr().addr() % POOL);
    assert_eq!(
        pool.free(NonNull::new(base.wrapping_add(POOL)).unwrap()),
        Err(FreeError::OutOfPool)
    );
    let on_stack = 0u64;
    assert_eq!(
        pool.free(NonNull::from(&on_stack).cast()),
        Err(FreeError::OutOfPool)
    );
    assert_eq!(pool.usable_size(p), Some(4096));
    assert_serves(&pool);
    pool.free(p).unwrap();
    other.free(q).unwrap();
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn bad_sizes() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let local = pool.local();
    assert_eq!(pool.alloc(0), Err(AllocError::ZeroSize));
    assert_eq!(
        pool.alloc(POOL + 1),
        Err(AllocError::TooLarge {
            requested: POOL + 1
        })
    );
    assert_eq!(
        pool.alloc(usize::MAX),
        Err(AllocError::TooLarge {
            requested: usize::MAX
        })
    );
    assert_eq!(
        local.alloc(usize::MAX),
        Err(AllocError::TooLarge {
            requested: usize::MAX
        })
    );
    let over = Layout::from_size_align(8, 2 * POOL).unwrap();
    assert_eq!(
        pool.alloc_layout(over),
        Err(AllocError::AlignmentTooLarge { align: 2 * POOL })
    );
    assert_eq!(
        local.alloc_layout(over),
        Err(AllocError::AlignmentTooLarge { align: 2 * POOL })
    );
    let zero = Layout::from_size_align(0, 8).unwrap();
    assert_eq!(local.alloc_layout(zero), Err(AllocError::ZeroSize));
    assert_eq!(
        ConcurrentPool::new(usize::MAX).unwrap_err(),
        InitError::TooLarge {
            requested: usize::MAX
        }
    );
    let above = (1usize << MAX_K) + 1;
    assert_eq!(
        ConcurrentPool::new(above).unwrap_err(),
        InitError::TooLarge { requested: above }
    );
    drop(local);
    assert_whole(&pool);
}

#[test]
#[cfg(not(miri))]
fn new_with_a_size_the_os_refuses() {
    match ConcurrentPool::new(1usize << MAX_K) {
        Err(InitError::Os { code }) => assert_ne!(code, 0),
        other => panic!("expected the OS to refuse 2^48 bytes, got {other:?}"),
    }
}

#[test]
fn double_free_from_two_threads_at_once() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let rounds = if cfg!(miri) { 3 } else { 300 };
    for round in 0..rounds {
        let size = [64, 4096, 65536][round % 3];
        let p = SendPtr(pool.alloc(size).unwrap());
        let barrier = Barrier::new(2);
        let results: Vec<Result<(), FreeError>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        pool.free(p.get())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round} ({size} B): {results:?}");
        assert!(results.contains(&Err(FreeError::DoubleFree)));
    }
    pool.flush_thread_cache(); // the main thread's allocations refilled its cache
    assert_whole(&pool);
}
