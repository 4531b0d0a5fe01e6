//! `realloc`: shrink in place, grow in place, move with contents.

use balloc_core::BuddyPool;

use crate::{assert_valid, POOL};

fn fill(p: std::ptr::NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) };
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_add(i as u8);
    }
}

fn check(p: std::ptr::NonNull<u8>, len: usize, seed: u8) {
    // SAFETY: callers pass a live block of at least `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), len) };
    for (i, &b) in bytes.iter().enumerate() {
        assert_eq!(b, seed.wrapping_add(i as u8), "byte {i}");
    }
}

#[test]
fn shrink_in_place_frees_the_upper_halves() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(65536).unwrap();
    fill(p, 1000, 3);
    let q = pool.realloc(p, 1000).unwrap();
    assert_eq!(p, q);
    assert_eq!(pool.usable_size(q), Some(1024));
    assert_eq!(pool.stats().allocated_bytes, 1024);
    check(q, 1000, 3);
    assert_valid(&pool);
    pool.free(q).unwrap();
    assert!(pool.stats().is_coalesced());
}

#[test]
fn grow_in_place_when_buddies_are_free() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(64).unwrap();
    assert_eq!(p, pool.base());
    fill(p, 64, 9);
    let q = pool.realloc(p, 10_000).unwrap();
    assert_eq!(p, q, "the buddies above the lowest block are all free");
    assert_eq!(pool.usable_size(q), Some(16384));
    check(q, 64, 9);
    assert_valid(&pool);
    pool.free(q).unwrap();
    assert!(pool.stats().is_coalesced());
}

#[test]
fn grow_moves_and_copies_when_the_buddy_is_taken() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(64).unwrap();
    let blocker = pool.alloc(64).unwrap(); // p's buddy
    fill(p, 64, 42);
    let q = pool.realloc(p, 200).unwrap();
    assert_ne!(p, q);
    check(q, 64, 42);
    assert_eq!(pool.usable_size(p), None, "old block freed");
    assert_eq!(pool.usable_size(q), Some(256));
    assert_valid(&pool);
    pool.free(q).unwrap();
    pool.free(blocker).unwrap();
    assert!(pool.stats().is_coalesced());
}

#[test]
fn realloc_to_the_same_order_keeps_the_block() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(100).unwrap();
    assert_eq!(pool.realloc(p, 128).unwrap(), p);
    assert_eq!(pool.realloc(p, 65).unwrap(), p);
    pool.free(p).unwrap();
    assert!(pool.stats().is_coalesced());
}

#[test]
fn realloc_out_of_memory_keeps_the_old_block() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(POOL / 2).unwrap();
    let q = pool.alloc(POOL / 4).unwrap();
    fill(q, 4096, 1);
    // q is the lower quarter of the upper half; its buddy is free but growth to the whole pool
    // would need p's space.
    assert!(pool.realloc(q, POOL).is_err());
    check(q, 4096, 1);
    assert_valid(&pool);
    pool.free(p).unwrap();
    pool.free(q).unwrap();
    assert!(pool.stats().is_coalesced());
}
