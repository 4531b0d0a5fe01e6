//! Hardening (feature `debug-fill`): every freed block is filled with [`FILL`], and a block is
//! checked when it is handed out again. A byte that is neither the fill nor zero (memory never
//! used, or handed back to the OS by `trim`) means the caller wrote to memory after freeing it.
//!
//! Free blocks keep a 16-byte free-list node at their start, and a free block may start at any
//! multiple of 64 inside a larger one, so the first 16 bytes of every 64 are not checked.
//! Costs O(block size) on every free and allocation: a debugging aid, not for production.

use core::ptr::NonNull;

/// The byte freed memory is filled with.
pub const FILL: u8 = 0xDB;
/// Bytes at the start of each 64 that may hold a free-list node.
const NODE_BYTES: usize = 16;

/// Fills the block at `off` of order `k` with [`FILL`].
///
/// # Safety
/// - the block is `2^k` bytes of pool memory that no caller holds any more.
pub unsafe fn fill(base: NonNull<u8>, off: usize, k: u32) {
    // SAFETY: forwarded.
    unsafe { fill_from(base, off, k, 0) }
}

/// Fills bytes `from..2^k` of the block at `off` of order `k` with [`FILL`] (the first `from`
/// bytes may hold something the pool keeps there, such as a tag).
///
/// # Safety
/// - the block is `2^k` bytes of pool memory that no caller holds any more; `from <= 2^k`.
pub unsafe fn fill_from(base: NonNull<u8>, off: usize, k: u32, from: usize) {
    let start = base.as_ptr().wrapping_add(off + from);
    // SAFETY: the caller guarantees the block is the pool's to write.
    unsafe { start.write_bytes(FILL, (1usize << k) - from) };
}

/// Checks that the block at `off` of order `k` holds only the fill (or zeros) outside node spots.
///
/// # Panics
/// When a byte differs: the caller wrote into freed memory (use after free).
///
/// # Safety
/// - the block is `2^k` bytes of pool memory just taken from the free lists.
pub unsafe fn check(base: NonNull<u8>, off: usize, k: u32) {
    let start = base.as_ptr().wrapping_add(off);
    for i in 0..1usize << k {
        if i % 64 < NODE_BYTES {
            continue;
        }
        // SAFETY: i < 2^k, inside the block the caller owns.
        let byte = unsafe { start.add(i).read() };
        assert!(
            byte == FILL || byte == 0,
            "balloc: use after free: byte {i} of the block at {start:p} was written after it was freed"
        );
    }
}
