//! The pool behind standard collections: `allocator_api2`'s `Allocator` for `&ConcurrentPool`
//! and `&LocalCache`, and `GlobalAlloc` called directly.

use std::alloc::{GlobalAlloc, Layout};

use allocator_api2::vec::Vec as ApiVec;
use balloc_concurrent::ConcurrentPool;
use hashbrown::HashMap;

use crate::{assert_whole, POOL};

#[test]
fn hashbrown_map_lives_in_the_pool() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    {
        let mut map = HashMap::new_in(&pool);
        let n = if cfg!(miri) { 200 } else { 5000 };
        for i in 0..n {
            map.insert(i, i * 3);
        }
        assert!(
            pool.stats().allocated_bytes > 0,
            "the table's memory comes from the pool"
        );
        for i in 0..n {
            assert_eq!(map[&i], i * 3);
        }
        map.retain(|k, _| k % 2 == 0);
        assert_eq!(map.len(), n / 2);
    }
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn api2_vec_grows_through_the_pool_and_a_local_cache() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    {
        let mut v = ApiVec::new_in(&pool);
        for i in 0..10_000u32 {
            v.push(i);
        }
        assert!(pool.contains(v.as_ptr().cast()));
        assert_eq!(v.iter().map(|&x| x as u64).sum::<u64>(), 9999 * 10_000 / 2);
        let local = pool.local();
        let mut w: ApiVec<u8, _> = ApiVec::new_in(&local);
        w.extend_from_slice(b"hello, pool");
        assert!(pool.contains(w.as_ptr()));
        let zst: ApiVec<(), _> = ApiVec::with_capacity_in(10, &local);
        assert_eq!(
            zst.capacity(),
            usize::MAX,
            "zero-sized types allocate nothing"
        );
    }
    pool.flush_thread_cache();
    assert_whole(&pool);
}

#[test]
fn global_alloc_interface() {
    let pool = ConcurrentPool::new(POOL).unwrap();
    let layout = Layout::from_size_align(100, 32).unwrap();
    // SAFETY: a non-zero layout; the block is freed once with the same layout.
    unsafe {
        let p = GlobalAlloc::alloc(&pool, layout);
        assert!(!p.is_null());
        assert_eq!(p.addr() % 32, 0);
        p.write_bytes(9, 100);
        let q = GlobalAlloc::realloc(&pool, p, layout, 120); // same order: in place
        assert_eq!(p, q);
        let r = GlobalAlloc::realloc(&pool, q, Layout::from_size_align(120, 32).unwrap(), 5000);
        assert!(!r.is_null());
        assert_eq!(r.read(), 9);
        assert_eq!(r.add(99).read(), 9);
        GlobalAlloc::dealloc(&pool, r, Layout::from_size_align(5000, 32).unwrap());
        // Failure is null, never a panic.
        let too_big = Layout::from_size_align(2 * POOL, 8).unwrap();
        assert!(GlobalAlloc::alloc(&pool, too_big).is_null());
    }
    pool.flush_thread_cache();
    assert_whole(&pool);
}
