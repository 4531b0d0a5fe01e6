//! Integration tests of balloc-concurrent, in one binary.

mod alloc_traits;
mod bad_input;
mod exhaustion;
mod lifetime;
mod matrix;
mod memory;
mod seed;
mod serve_after_free;
mod stress;

use balloc_concurrent::ConcurrentPool;

/// Smallest pool; Miri runs stay at this size.
pub const POOL: usize = 1 << 20;

/// Asserts the pool is back to one free block of its top order, with nothing cached.
#[track_caller]
pub fn assert_whole(pool: &ConcurrentPool) {
    let s = pool.stats();
    assert_eq!(s.cached_bytes, 0, "{s:?}");
    assert_eq!(s.allocated_bytes, 0, "{s:?}");
    assert!(s.is_coalesced(), "{s:?}");
    assert_eq!(s.free_blocks[pool.kval() as usize], 1);
    pool.validate().unwrap();
}

/// A block pointer handed to another thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SendPtr(pub std::ptr::NonNull<u8>);

// SAFETY: the pointer is only an address to free or to access while the receiving thread owns
// the block; ownership moves with it.
unsafe impl Send for SendPtr {}
// SAFETY: as above; shared only to be read as an address.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer.
    pub fn get(self) -> std::ptr::NonNull<u8> {
        self.0
    }
}

/// A small, fast, deterministic random number generator (xorshift64*) for tests.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
