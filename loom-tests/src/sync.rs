//! The threads and flags the scenarios use: loom's under `cfg(balloc_loom)` (so every step is
//! explored), std's otherwise (so the same scenarios run as a smoke test on real threads). And
//! [`wait_retired`], the wait for joined threads' cache retirement that the checks need.
//!
//! Scenarios share the pool through `std::sync::Arc`: its reference count is not part of
//! balloc's protocol, and loom threads never run at the same time on the OS. Where the order of
//! the last drops is the race (model 7d), they use [`Arc`], loom's under the cfg, whose every
//! count change is a step loom interleaves.

use balloc_concurrent::ConcurrentPool;

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

/// Joins `t`, re-raising its panic; returns the thread's result.
///
/// Under loom this does not wait for the thread's thread-local destructors (balloc's cache
/// retirement): loom's `JoinHandle::join` returns once the closure's result is handed over,
/// and that hand-over (a Release/Acquire pair) comes before the destructors run, so nothing
/// orders what they write before the joiner's later loads. Use [`join_exited`] where later
/// checks depend on the thread's cache having been retired.
pub fn join<T>(t: Handle<T>) -> T {
    match t.join() {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) | Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Waits until `pool` has at most `caches` thread caches, which must be the number that
/// threads still alive hold. In the scenarios that is 1, this thread's own, once every other
/// thread has been joined: then this returns once every joined thread's cache is retired.
///
/// Sound under loom: the last step of a cache's retirement is the Release decrement of the
/// count that [`ConcurrentPool::thread_caches`] reads with Acquire, so once a retirement is no
/// longer counted, everything it did (flush, depot drain, deregistration) happens before this
/// thread's next step. The count cannot drop early: a thread makes its cache inside its
/// closure, which `join` orders before this. Each look that finds the count too high yields,
/// as loom requires of a wait loop. With std's threads, whose join already waits for
/// thread-local destructors, the first look succeeds.
pub fn wait_retired(pool: &ConcurrentPool, caches: usize) {
    while pool.thread_caches() > caches {
        thread::yield_now();
    }
}

/// [`join`], then [`wait_retired`]: returns once `t` has ended and its cache for `pool` (if
/// it made one) has been retired. `caches_left` is the number of caches for `pool` that
/// threads still alive hold (this one's included).
pub fn join_exited<T>(t: Handle<T>, pool: &ConcurrentPool, caches_left: usize) -> T {
    let r = join(t);
    wait_retired(pool, caches_left);
    r
}

/// Out-of-memory decision searches of `pool` that another thread's move overlapped, where the
/// build can say (loom's hook, `--cfg balloc_loom`); `None` on real threads.
pub fn invalidated_searches(pool: &ConcurrentPool) -> Option<usize> {
    #[cfg(balloc_loom)]
    return Some(pool.invalidated_searches());
    #[cfg(not(balloc_loom))]
    {
        let _ = pool;
        None
    }
}

/// `pool`'s pressure epoch (allocations that found memory short and asked every cache to hand
/// its blocks back), where the build can say (loom's hook); `None` on real threads.
pub fn pressure_epoch(pool: &ConcurrentPool) -> Option<u64> {
    #[cfg(balloc_loom)]
    return Some(pool.pressure_epoch());
    #[cfg(not(balloc_loom))]
    {
        let _ = pool;
        None
    }
}
