//! Every bad input gets its exact error, and the pool stays valid and keeps serving.

use std::alloc::Layout;
use std::ptr::NonNull;

use balloc_core::{AllocError, BuddyPool, FreeError, InitError, MAX_K};

use crate::{assert_valid, POOL};

/// The pool validates, its counters did not move, and it still serves an allocation.
#[track_caller]
fn assert_intact(pool: &mut BuddyPool, allocated_before: usize) {
    assert_valid(pool);
    assert_eq!(pool.stats().allocated_bytes, allocated_before);
    let p = pool.alloc(64).expect("pool still serves");
    pool.free(p).expect("and takes the block back");
    assert_valid(pool);
}

fn pool_with_one_block() -> (BuddyPool, NonNull<u8>) {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let p = pool.alloc(4096).unwrap();
    (pool, p)
}

#[test]
fn double_free() {
    let (mut pool, p) = pool_with_one_block();
    pool.free(p).unwrap();
    assert_eq!(pool.free(p), Err(FreeError::DoubleFree));
    assert_intact(&mut pool, 0);
    assert!(pool.stats().is_coalesced());
}

#[test]
fn free_of_never_allocated_block() {
    let (mut pool, p) = pool_with_one_block();
    let never = NonNull::new(p.as_ptr().wrapping_add(POOL / 2)).unwrap();
    assert_eq!(pool.free(never), Err(FreeError::DoubleFree));
    assert_intact(&mut pool, 4096);
}

#[test]
fn free_of_pointer_from_another_pool() {
    let (mut pool, _p) = pool_with_one_block();
    let mut other = BuddyPool::new(POOL).unwrap();
    let q = other.alloc(4096).unwrap();
    assert_eq!(pool.free(q), Err(FreeError::OutOfPool));
    assert_intact(&mut pool, 4096);
    other.free(q).unwrap();
}

#[test]
fn free_of_interior_pointer() {
    let (mut pool, p) = pool_with_one_block();
    for off in [64, 128, 1024, 4032] {
        let inner = NonNull::new(p.as_ptr().wrapping_add(off)).unwrap();
        assert_eq!(pool.free(inner), Err(FreeError::Interior), "offset {off}");
    }
    assert_intact(&mut pool, 4096);
}

#[test]
fn free_of_misaligned_pointer() {
    let (mut pool, p) = pool_with_one_block();
    for off in [1, 8, 32, 63, 65] {
        let bad = NonNull::new(p.as_ptr().wrapping_add(off)).unwrap();
        assert_eq!(pool.free(bad), Err(FreeError::Misaligned), "offset {off}");
    }
    assert_intact(&mut pool, 4096);
}

#[test]
fn free_past_the_end_and_before_the_start() {
    let (mut pool, _p) = pool_with_one_block();
    let base = pool.base().as_ptr();
    for bad in [
        base.wrapping_add(POOL),
        base.wrapping_add(2 * POOL),
        base.wrapping_sub(64),
    ] {
        assert_eq!(
            pool.free(NonNull::new(bad).unwrap()),
            Err(FreeError::OutOfPool)
        );
    }
    let on_stack = 0u64;
    assert_eq!(
        pool.free(NonNull::from(&on_stack).cast()),
        Err(FreeError::OutOfPool)
    );
    assert_intact(&mut pool, 4096);
}

#[test]
fn alloc_zero_too_large_and_usize_max() {
    let (mut pool, _p) = pool_with_one_block();
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
        pool.alloc(usize::MAX / 2 + 2),
        Err(AllocError::TooLarge {
            requested: usize::MAX / 2 + 2
        })
    );
    assert_intact(&mut pool, 4096);
}

#[test]
fn alloc_layout_bad_requests() {
    let (mut pool, _p) = pool_with_one_block();
    let zero = Layout::from_size_align(0, 8).unwrap();
    assert_eq!(pool.alloc_layout(zero), Err(AllocError::ZeroSize));
    let over_aligned = Layout::from_size_align(8, 2 * POOL).unwrap();
    assert_eq!(
        pool.alloc_layout(over_aligned),
        Err(AllocError::AlignmentTooLarge { align: 2 * POOL })
    );
    let huge = Layout::from_size_align(isize::MAX as usize - 63, 64).unwrap();
    assert_eq!(
        pool.alloc_layout(huge),
        Err(AllocError::TooLarge {
            requested: isize::MAX as usize - 63
        })
    );
    assert_intact(&mut pool, 4096);
}

#[test]
fn alloc_layout_honours_alignment_up_to_the_pool() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let small = pool.alloc(64).unwrap();
    for shift in [6, 12, 16, 19] {
        let align = 1usize << shift;
        let p = pool
            .alloc_layout(Layout::from_size_align(1, align).unwrap())
            .unwrap();
        assert_eq!(p.as_ptr().addr() % align, 0);
        pool.free(p).unwrap();
    }
    pool.free(small).unwrap();
    let whole = pool
        .alloc_layout(Layout::from_size_align(8, POOL).unwrap())
        .unwrap();
    assert_eq!(whole, pool.base());
    pool.free(whole).unwrap();
    assert!(pool.stats().is_coalesced());
}

#[test]
fn out_of_memory_then_recovers() {
    let mut pool = BuddyPool::new(POOL).unwrap();
    let blocks: Vec<_> = (0..POOL / 65536)
        .map(|_| pool.alloc(65536).unwrap())
        .collect();
    assert_eq!(pool.alloc(1), Err(AllocError::OutOfMemory { order: 6 }));
    assert_valid(&pool);
    for b in blocks {
        pool.free(b).unwrap();
    }
    assert!(pool.stats().is_coalesced());
}

#[test]
fn new_with_impossible_sizes() {
    assert_eq!(
        BuddyPool::new(usize::MAX).unwrap_err(),
        InitError::TooLarge {
            requested: usize::MAX
        }
    );
    let above = (1usize << MAX_K) + 1;
    assert_eq!(
        BuddyPool::new(above).unwrap_err(),
        InitError::TooLarge { requested: above }
    );
}

#[test]
#[cfg(not(miri))] // Miri's stand-in for mmap is a real allocation, which it cannot refuse politely.
fn new_with_a_size_the_os_refuses() {
    // 2^48 bytes (MAX_K, allowed by the size rules) plus alignment slack: no x86-64 or AArch64
    // user address space has that much room.
    match BuddyPool::new(1usize << MAX_K) {
        Err(InitError::Os { code }) => assert_ne!(code, 0),
        other => panic!("expected the OS to refuse 2^48 bytes, got {other:?}"),
    }
}

#[test]
fn realloc_bad_requests_leave_the_block() {
    let (mut pool, p) = pool_with_one_block();
    // SAFETY: p is a live 4096-byte block.
    unsafe { p.as_ptr().write_bytes(0xA5, 4096) };
    assert_eq!(pool.realloc(p, 0), Err(AllocError::ZeroSize));
    assert_eq!(
        pool.realloc(p, usize::MAX),
        Err(AllocError::TooLarge {
            requested: usize::MAX
        })
    );
    assert_eq!(
        pool.realloc(p, POOL + 1),
        Err(AllocError::TooLarge {
            requested: POOL + 1
        })
    );
    let inner = NonNull::new(p.as_ptr().wrapping_add(64)).unwrap();
    assert_eq!(
        pool.realloc(inner, 10),
        Err(AllocError::InvalidPointer(FreeError::Interior))
    );
    assert_eq!(pool.usable_size(p), Some(4096));
    // SAFETY: p is still a live 4096-byte block.
    let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), 4096) };
    assert!(bytes.iter().all(|&b| b == 0xA5));
    assert_intact(&mut pool, 4096);
    pool.free(p).unwrap();
    assert_eq!(
        pool.realloc(p, 10),
        Err(AllocError::InvalidPointer(FreeError::DoubleFree))
    );
    assert!(pool.stats().is_coalesced());
}

#[test]
fn from_raw_rejects_bad_regions() {
    use std::alloc::{alloc_zeroed, dealloc};
    let size = POOL;
    let layout = Layout::from_size_align(2 * size, size).unwrap();
    // SAFETY: non-zero size.
    let mem = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
    let words = balloc_core::metadata_words(size);
    let mut meta = vec![0u64; words];
    let meta_ptr = NonNull::from(meta.as_mut_slice());
    let short = NonNull::slice_from_raw_parts(meta_ptr.cast::<u64>(), words - 1);
    let misaligned = NonNull::new(mem.as_ptr().wrapping_add(4096)).unwrap();
    // SAFETY: (all calls) the memory and metadata outlive every pool made, and each call that
    // succeeds is dropped at once.
    unsafe {
        assert_eq!(
            BuddyPool::from_raw(mem, size + 1, meta_ptr).unwrap_err(),
            InitError::NotPowerOfTwo { size: size + 1 }
        );
        assert_eq!(
            BuddyPool::from_raw(mem, size / 2, meta_ptr).unwrap_err(),
            InitError::TooSmall { size: size / 2 }
        );
        assert_eq!(
            BuddyPool::from_raw(misaligned, size, meta_ptr).unwrap_err(),
            InitError::Misaligned
        );
        assert_eq!(
            BuddyPool::from_raw(mem, size, short).unwrap_err(),
            InitError::MetadataTooSmall {
                needed: words,
                given: words - 1
            }
        );
        assert!(BuddyPool::from_raw(mem, size, meta_ptr).is_ok());
        dealloc(mem.as_ptr(), layout);
    }
}
