#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod bitmaps;
mod builder;
mod cache;
pub mod config;
mod depot;
mod global_alloc;
mod local;
mod pool;
mod primitive;
mod shared;
mod summary;
mod tags;
mod thread_cache;
mod words;

pub use balloc_core::{
    btok, AllocError, FreeError, InitError, Stats, DEFAULT_K, MAX_K, MIN_K, SMALLEST_K,
};
pub use builder::PoolBuilder;
#[cfg(balloc_loom)]
#[doc(hidden)]
pub use depot::loom_depot_peek;
pub use global_alloc::GlobalPool;
pub use local::LocalCache;
pub use pool::ConcurrentPool;
pub use thread_cache::SLOTS as THREAD_CACHE_SLOTS;
