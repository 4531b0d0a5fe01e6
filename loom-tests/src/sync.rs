//! The threads and flags the scenarios use: loom's under `cfg(balloc_loom)` (so every step is
//! explored), std's otherwise (so the same scenarios run as a smoke test on real threads).
//!
//! Scenarios share the pool through `std::sync::Arc`: its reference count is not part of
//! balloc's protocol, and loom threads never run at the same time on the OS. Where the order of
//! the last drops is the race (model 7d), they use [`Arc`], loom's under the cfg, whose every
//! count change is a step loom interleaves.

#[cfg(balloc_loom)]
pub use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(balloc_loom)]
pub use loom::sync::Arc;
#[cfg(balloc_loom)]
pub use loom::thread;

#[cfg(not(balloc_loom))]
pub use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(balloc_loom))]
pub use std::sync::Arc;
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

/// A scenario thread: its panic is caught on the thread and re-raised by [`join`].
pub type Handle<T> = thread::JoinHandle<std::thread::Result<T>>;

/// Spawns a scenario thread. A panic is caught on the thread itself, so that under loom the
/// thread still ends normally (and its thread-local cache is retired inside the model); [`join`]
/// re-raises it on the joining thread.
pub fn spawn<T, F>(f: F) -> Handle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    thread::spawn(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)))
}

/// Joins `t` (re-raising its panic), and under loom also lets its thread-local destructors
/// (balloc's thread-cache retirement) finish, as std's join does; returns the thread's result.
///
/// Loom runs a thread's thread-local destructors at the end of the thread, but its join returns
/// as soon as the closure's result is handed over, before they run. So under loom this yields
/// [`settle_yields`] times: each yield lets another runnable thread take at least one step, and
/// loom can only switch back before that thread ends by spending a preemption, so one more
/// yield than the preemption bound is enough.
pub fn join<T>(t: Handle<T>) -> T {
    let r = match t.join() {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) | Err(payload) => std::panic::resume_unwind(payload),
    };
    #[cfg(balloc_loom)]
    for _ in 0..settle_yields() {
        thread::yield_now();
    }
    r
}

#[cfg(balloc_loom)]
std::thread_local! {
    /// The running model's preemption bound (loom runs a model on the test's OS thread).
    static BOUND: core::cell::Cell<usize> = const { core::cell::Cell::new(3) };
}

/// Records the running model's preemption bound for [`join`].
#[cfg(balloc_loom)]
pub(crate) fn set_preemption_bound(bound: usize) {
    BOUND.with(|b| b.set(bound));
}

/// Yields [`join`] spends under loom: the preemption bound plus one.
#[cfg(balloc_loom)]
pub fn settle_yields() -> usize {
    BOUND.with(|b| b.get()) + 1
}
