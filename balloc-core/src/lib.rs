#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "debug-fill")]
pub mod debug_fill;
mod error;
mod free_list;
pub mod geometry;
pub mod order;
#[cfg(feature = "std")]
pub mod os;
mod pool;
mod stats;
mod validate;

pub use error::{AllocError, DestroyError, FreeError, InitError};
pub use geometry::metadata_words;
pub use order::{btok, DEFAULT_K, MAX_K, MIN_K, SMALLEST_K};
pub use pool::{BuddyPool, FreeBlocks};
pub use stats::Stats;
pub use validate::Corruption;

#[cfg(feature = "debug-fill")]
pub use debug_fill::FILL as DEBUG_FILL_BYTE;
