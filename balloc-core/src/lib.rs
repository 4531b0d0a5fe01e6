#![doc = include_str!("../README.md")]
#![no_std]
// docs.rs builds with `--cfg docsrs` (see Cargo.toml): items behind a feature say so there.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "debug-fill")]
mod debug_fill;
mod error;
mod free_list;
mod geometry;
mod order;
#[cfg(feature = "std")]
mod os;
mod pool;
mod stats;
mod validate;

pub use error::{AllocError, DestroyError, FreeError, InitError};
pub use geometry::metadata_words;
pub use order::{btok, pool_order_for, DEFAULT_K, MAX_K, MIN_K, SMALLEST_K};
pub use pool::{BuddyPool, FreeBlocks};
pub use stats::Stats;
pub use validate::Corruption;

#[cfg(feature = "debug-fill")]
#[cfg_attr(docsrs, doc(cfg(feature = "debug-fill")))]
pub use debug_fill::FILL as DEBUG_FILL_BYTE;

/// Building blocks that `balloc-concurrent` shares with this crate: address geometry, order
/// arithmetic, OS mappings and debug fills. Not part of the public API: no stability promise,
/// and hidden from the documentation.
#[doc(hidden)]
pub mod internal {
    #[cfg(feature = "debug-fill")]
    pub use crate::debug_fill::{check as debug_check, fill_from as debug_fill_from};
    pub use crate::geometry::{block_offset, find_live_block, spread_halves, Geometry};
    pub use crate::order::{
        checked_layout_order, checked_size_order, fast_layout_order, layout_order, ORDER_COUNT,
    };
    #[cfg(feature = "std")]
    pub use crate::os::{page_size, Mapping};
}
