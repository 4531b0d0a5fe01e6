//! Sharding of words that every thread writes: each thread uses one of [`SHARDS`] words, each
//! on its own cache line, so threads rarely write the same line; readers sum the shards.

use crate::facade::{thread_local, LOOM};

/// Shards: enough that threads rarely share one at 16–32 threads, few enough that reading them
/// all (one load each) stays cheap. One under loom, to keep the models small.
pub(crate) const SHARDS: usize = if LOOM { 1 } else { 16 };

/// This thread's shard: assigned round-robin on first use (0 while thread-locals are torn
/// down).
#[inline]
pub(crate) fn this_thread_shard() -> usize {
    if SHARDS == 1 {
        return 0;
    }
    #[cfg(balloc_contention)]
    if let Some(w) = crate::contention::acting() {
        return w as usize % SHARDS;
    }
    thread_local! {
        static SHARD: core::cell::Cell<usize> = const { core::cell::Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                // A plain std atomic: which shard a thread uses is not part of the protocol.
                static NEXT: core::sync::atomic::AtomicUsize =
                    core::sync::atomic::AtomicUsize::new(0);
                i = NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed) % SHARDS;
                s.set(i);
            }
            i
        })
        .unwrap_or(0)
}
