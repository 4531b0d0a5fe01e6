#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

// Front-ends: the public types.
mod builder;
mod global_alloc;
mod global_pool;
mod local;
mod pool;

// The allocation path and the state it works on.
mod bitmaps;
mod cache;
pub mod config;
#[cfg(balloc_contention)]
pub mod contention;
mod depot;
mod exhaustion;
mod fault;
mod ladder;
mod purge;
mod region;
mod registry;
mod resize;
mod shared;
mod summary;
mod tags;
mod thread_cache;
mod transit;
mod trim;
mod zero_pages;

// Support.
mod facade;
mod owned_counters;
mod shards;
mod units;

pub use balloc_core::{
    btok, AllocError, FreeError, InitError, Stats, DEFAULT_K, MAX_K, MIN_K, SMALLEST_K,
};
pub use builder::PoolBuilder;
#[cfg(balloc_loom)]
#[doc(hidden)]
pub use facade::imp::{loom_depot_peek, loom_shard_mutant};
#[cfg(balloc_loom)]
#[doc(hidden)]
pub use facade::ShardMutant;
pub use global_pool::{GlobalPool, GlobalPoolStats};
pub use local::LocalCache;
pub use pool::ConcurrentPool;
pub use thread_cache::POOLS_PER_THREAD as THREAD_CACHE_SLOTS;
