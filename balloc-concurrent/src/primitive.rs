//! The only place that names atomics, locks and thread yields. Under `cfg(balloc_loom)` it
//! re-exports loom's model-checked types instead of std's, so every atomic step of the protocol
//! is explored by the loom models in `loom-tests`.

#[cfg(balloc_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(balloc_loom)]
pub(crate) use loom::sync::Mutex;

#[cfg(not(balloc_loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(balloc_loom))]
pub(crate) use std::sync::Mutex;

/// Gives other threads a chance while waiting for one of them (under loom: a scheduling point,
/// which loom needs in every wait loop).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(balloc_loom)]
    loom::thread::yield_now();
    #[cfg(not(balloc_loom))]
    std::thread::yield_now();
}

/// A race window: under `--cfg balloc_chaos`, yields the thread every few calls so that
/// interleavings that need many cores show on two; otherwise nothing.
#[inline(always)]
pub(crate) fn chaos_point() {
    #[cfg(all(balloc_chaos, not(balloc_loom)))]
    {
        std::thread_local! {
            static COUNT: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
        }
        let n = COUNT.with(|c| {
            let n = c.get().wrapping_add(1);
            c.set(n);
            n
        });
        if n % 4 == 0 {
            std::thread::yield_now();
        }
    }
}
