//! Feature `debug-fill`: writes after free are caught when the block is handed out again.

#![cfg(feature = "debug-fill")]

use balloc_core::{BuddyPool, DEBUG_FILL_BYTE};

#[test]
fn freed_blocks_hold_the_fill() {
    let mut pool = BuddyPool::new(1 << 20).unwrap();
    let p = pool.alloc(4096).unwrap();
    // SAFETY: a live block of 4096 bytes.
    unsafe { p.as_ptr().write_bytes(7, 4096) };
    pool.free(p).unwrap();
    // SAFETY: reading freed pool memory through the pool's own pointer (test of the fill only).
    let b = unsafe { p.as_ptr().add(100).read() };
    assert_eq!(b, DEBUG_FILL_BYTE);
    // Reuse after a clean free passes the check.
    let q = pool.alloc(4096).unwrap();
    pool.free(q).unwrap();
}

#[test]
#[should_panic(expected = "use after free")]
fn write_after_free_is_caught() {
    let mut pool = BuddyPool::new(1 << 20).unwrap();
    let p = pool.alloc(256).unwrap();
    pool.free(p).unwrap();
    // SAFETY: deliberately a use after free, into memory the pool still owns (mapped).
    unsafe { p.as_ptr().add(100).write(0x55) };
    let _ = pool.alloc(256);
}
