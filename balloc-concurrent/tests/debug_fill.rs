//! Feature `debug-fill`: writes after free are caught when the block is handed out again.

#![cfg(feature = "debug-fill")]

use std::alloc::Layout;

use balloc_concurrent::ConcurrentPool;

#[test]
fn clean_reuse_passes_and_freed_memory_holds_the_fill() {
    let pool = ConcurrentPool::new(1 << 20).unwrap();
    let local = pool.local();
    for size in [64, 1000, 100_000] {
        let p = local.alloc(size).unwrap();
        // SAFETY: a live block of at least `size` bytes.
        unsafe { p.as_ptr().write_bytes(7, size) };
        local.free(p).unwrap();
        // SAFETY: reading freed pool memory (still mapped) only to test the fill.
        let b = unsafe { p.as_ptr().add(40).read() };
        assert_eq!(b, balloc_core::DEBUG_FILL_BYTE);
        let q = local.alloc(size).unwrap();
        let layout = Layout::from_size_align(size, 1).unwrap();
        // SAFETY: allocated with this layout, freed once.
        unsafe { local.dealloc(q, layout) };
    }
}

#[test]
#[should_panic(expected = "use after free")]
fn write_after_free_into_a_cached_block_is_caught() {
    let pool = ConcurrentPool::new(1 << 20).unwrap();
    let local = pool.local();
    let p = local.alloc(256).unwrap();
    local.free(p).unwrap();
    // SAFETY: deliberately a use after free, into memory the pool still owns (mapped).
    unsafe { p.as_ptr().add(100).write(0x55) };
    let _ = local.alloc(256); // the cache hands p back: the check fires
}

#[test]
#[should_panic(expected = "use after free")]
fn write_after_free_into_an_uncached_block_is_caught() {
    let pool = ConcurrentPool::new(1 << 20).unwrap();
    let p = pool.alloc(1 << 16).unwrap();
    pool.free(p).unwrap();
    // SAFETY: deliberately a use after free, into memory the pool still owns (mapped).
    unsafe { p.as_ptr().add(5020).write(0x55) };
    let _ = pool.alloc(1 << 16);
}
