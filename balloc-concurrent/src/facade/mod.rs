//! The only place that names atomics, thread-locals, thread yields and the storage that must
//! differ under the loom model checker. Everything else imports from here.
//!
//! One implementation module is picked for the whole crate, as hashbrown picks its SIMD group:
//! - [`native`]: std's atomics, words in OS mappings, tags inside the blocks;
//! - `loom` (under `--cfg balloc_loom`): loom's model-checked atomics, and side tables for what
//!   native code keeps in raw memory (loom cannot see atomics placed there).
//!
//! Native code takes its atomic types from `native_atomics`: std's, or under
//! `--cfg balloc_contention` the counting wrappers of `counted`, which record every write to a
//! pool word for `crate::contention` (native only: it measures the real layout).
//!
//! Two more switches live here, as constants that the rest of the crate tests with a plain `if`
//! (the untaken branch compiles away):
//! - [`CHAOS`] (`--cfg balloc_chaos`): [`chaos_point`] yields inside race windows, so races
//!   that need many cores to show up show on two;
//! - [`MUTANTS`] (`--cfg balloc_loom_mutants`, loom only): the protocol steps the loom models
//!   must be able to break are replaced by broken versions, to prove the models catch them.

#[cfg(all(balloc_loom, balloc_contention))]
compile_error!(
    "`--cfg balloc_contention` counts the native atomics: build it without `--cfg balloc_loom`"
);

#[cfg(all(not(balloc_loom), balloc_contention))]
mod counted;
#[cfg(all(not(balloc_loom), balloc_contention))]
use counted as native_atomics;
#[cfg(all(not(balloc_loom), not(balloc_contention)))]
use std::sync::atomic as native_atomics;

#[cfg(not(balloc_loom))]
pub(crate) mod native;
#[cfg(not(balloc_loom))]
pub(crate) use native as imp;

#[cfg(balloc_loom)]
pub(crate) mod loom;
#[cfg(balloc_loom)]
pub(crate) use self::loom as imp;

pub(crate) use crossbeam_utils::CachePadded;
pub(crate) use imp::{
    depot_peek, fence, shard_mutant, thread_local, yield_now, AtomicPtr, AtomicU64, AtomicUsize,
    Ordering, TagTable, TagWords, Words,
};

/// Whether `--cfg balloc_chaos` is on: race windows yield (see [`chaos_point`]).
pub(crate) const CHAOS: bool = cfg!(balloc_chaos);

/// Whether `--cfg balloc_loom_mutants` is on: the loom models' mutants replace the real steps.
pub(crate) const MUTANTS: bool = cfg!(balloc_loom_mutants);

/// The depot-shard mutants (`--cfg balloc_loom_mutants`), each turned on by the one loom model
/// that must catch it (`loom_shard_mutant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum ShardMutant {
    /// A cache takes magazines from its affinity shard only (`Depot::take`).
    TakeFromAffinityOnly,
    /// An out-of-memory decision drains shard 0 only (`Region::drain_depot`).
    DecisionDrainsShardZero,
}

/// Whether the loom model checker runs the crate (`--cfg balloc_loom`): constants shrink so
/// that every path runs in a small model.
pub(crate) const LOOM: bool = cfg!(balloc_loom);

/// A race window: under [`CHAOS`], yields the thread every few calls; otherwise nothing.
#[inline(always)]
pub(crate) fn chaos_point() {
    if CHAOS {
        imp::chaos_yield();
    }
}

/// One step of a bounded wait for another thread: spins (yields under loom, which needs a
/// scheduling point in every wait loop, and under [`CHAOS`]).
#[inline]
pub(crate) fn spin_wait(round: u32) {
    if LOOM || CHAOS {
        yield_now();
    } else {
        for _ in 0..1u32 << round.min(4) {
            core::hint::spin_loop();
        }
    }
}
