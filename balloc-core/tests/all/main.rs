//! Integration tests of balloc-core, in one binary (one link, shared helpers).

mod bad_input;
mod matrix;
mod model;
mod realloc;
mod seed;

use balloc_core::BuddyPool;

/// Smallest pool; Miri runs stay at this size.
pub const POOL: usize = 1 << 20;

/// Asserts that the pool's invariants hold, with the broken one in the message.
#[track_caller]
pub fn assert_valid(pool: &BuddyPool) {
    if let Err(e) = pool.validate() {
        panic!("{e}");
    }
}
