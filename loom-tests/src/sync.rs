//! The threads and flags the scenarios use: loom's under `cfg(balloc_loom)` (so every step is
//! explored), std's otherwise (so the same scenarios run as a smoke test on real threads).
//!
//! The pool is shared through `std::sync::Arc` in both cases: its reference count is not part
//! of balloc's protocol, and loom threads never run at the same time on the OS.

#[cfg(balloc_loom)]
pub use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(balloc_loom)]
pub use loom::thread;

#[cfg(not(balloc_loom))]
pub use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(balloc_loom))]
pub use std::thread;

/// Raises `flag` (Release: everything this thread did before is visible to a waiter).
pub fn raise(flag: &AtomicBool) {
    flag.store(true, Ordering::Release);
}

/// Whether `flag` is up (Acquire: pairs with [`raise`]).
pub fn is_up(flag: &AtomicBool) -> bool {
    flag.load(Ordering::Acquire)
}

/// Waits until `flag` is up, yielding (under loom: a scheduling point, which loom needs in
/// every wait loop).
pub fn wait_for(flag: &AtomicBool) {
    while !is_up(flag) {
        thread::yield_now();
    }
}
