//! Fork safety: a process forked while other threads use the pool gets a child that can use
//! the pool too. No lock of the pool may be held across `fork`: a lock some other thread held
//! at that moment stays held forever in the child, which has only the forking thread.
//!
//! Background threads churn everything that takes a pool-wide lock or changes pool-wide
//! state: `LocalCache` handles created and dropped, allocations and frees through the pool and
//! through handles, `stats()`, and short-lived threads whose implicit caches are created at
//! their first call and retired at their exit. Meanwhile the main thread forks again and
//! again; each child allocates and frees through the pool, makes and drops a `LocalCache`,
//! reads `stats()`, asks for more than is free (an out-of-memory decision, which must not wait
//! for a split or merge that a thread absent from the child was in the middle of), and exits
//! with `_exit`. The parent gives each child a deadline and kills it if it has not exited by
//! then; each child writes the step it is in to memory shared with the parent, so the report
//! names where a hung child was stuck.
#![cfg(unix)]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use balloc_concurrent::ConcurrentPool;

/// Children forked in all.
const FORKS: usize = 200;

/// How long a child may take: it makes a dozen calls, which take microseconds, so a child
/// still running after this is stuck.
const CHILD_DEADLINE: Duration = Duration::from_secs(5);

/// Threads churning the pool while the main thread forks.
const CHURNERS: usize = 3;

/// How a child ended.
#[derive(Debug)]
enum Outcome {
    Exited0,
    /// Exited with a non-zero code (the step that failed) or was killed by a signal.
    Failed(String),
    /// Still running at the deadline; killed.
    Hung,
}

/// Handles each churning thread keeps alive, so that `stats()` walks a few dozen caches.
const HANDLES: usize = 8;

/// One churning thread's loop, until `stop`: everything that registers, deregisters or walks
/// the pool's caches, and plain allocations and frees in between.
fn churn(pool: &ConcurrentPool, stop: &AtomicBool, t: usize, ops: &AtomicU64) {
    let mut handles: Vec<_> = (0..HANDLES).map(|_| pool.local()).collect();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // A new handle's cache is registered; the one it replaces is flushed and deregistered.
        handles[i % HANDLES] = pool.local();
        let local = &handles[(i + 1) % HANDLES];
        let a = local.alloc(64 << (i % 8)).expect("a 64 MiB pool has room");
        let b = pool.alloc(100 + i % 5000).expect("a 64 MiB pool has room");
        local.free(b).expect("a live block");
        pool.free(a).expect("a live block");
        let s = pool.stats();
        assert_eq!(s.size, pool.size());
        if (i + t) % 16 == 0 {
            // A short-lived thread: its implicit cache is created by its first call and
            // retired (flushed and deregistered) at its exit, which the join waits for.
            std::thread::scope(|s| {
                s.spawn(|| {
                    let p = pool.alloc(256).expect("a 64 MiB pool has room");
                    pool.free(p).expect("a live block");
                    let _ = pool.stats();
                })
                .join()
                .expect("a short-lived thread panicked");
            });
        }
        ops.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a child does, step by step; a child records the step it is in (see [`Steps`]) and
/// exits with `10 + step` if that step goes wrong.
const STEPS: [&str; 7] = [
    "pool.alloc and pool.free through the forking thread's cache",
    "pool.local() (registers a cache)",
    "local.alloc and local.free",
    "dropping the LocalCache (flushes and deregisters its cache)",
    "pool.stats() (walks the registered caches)",
    "pool.alloc of the whole pool while a block is live (must report out-of-memory)",
    "pool.alloc and pool.free of 1 MiB",
];

/// What a child does with the pool; returns 0, or `10 + step` for the step that failed. Uses
/// no memory but the pool's and the stack, and prints nothing: other threads of the parent
/// may have held the system allocator's or stderr's locks at the fork.
fn child_uses_the_pool(pool: &ConcurrentPool, step: &AtomicU32) -> i32 {
    let at = |n: u32| step.store(n, Ordering::SeqCst);
    at(0);
    // The forking thread's implicit cache held blocks at the fork.
    let mut blocks: [Option<NonNull<u8>>; 8] = [None; 8];
    for (k, b) in blocks.iter_mut().enumerate() {
        match pool.alloc(64 << k) {
            Ok(p) => *b = Some(p),
            Err(_) => return 10,
        }
    }
    for p in blocks.iter().flatten() {
        if pool.free(*p).is_err() {
            return 10;
        }
    }
    at(1);
    let local = pool.local();
    at(2);
    let Ok(p) = local.alloc(4096) else {
        return 12;
    };
    if local.free(p).is_err() {
        return 12;
    }
    at(3);
    drop(local);
    at(4);
    if pool.stats().size != pool.size() {
        return 14;
    }
    at(5);
    let Ok(held) = pool.alloc(64) else {
        return 15;
    };
    if pool.alloc(pool.size()).is_ok() || pool.free(held).is_err() {
        return 15;
    }
    at(6);
    let Ok(p) = pool.alloc(1 << 20) else {
        return 16;
    };
    if pool.free(p).is_err() {
        return 16;
    }
    at(STEPS.len() as u32);
    0
}

/// One word per child in memory the parent shares with every child (an anonymous shared
/// mapping, which `fork` does not copy): the step each child is in, for the report.
struct Steps {
    words: NonNull<AtomicU32>,
}

impl Steps {
    const BYTES: usize = FORKS * size_of::<AtomicU32>();

    fn new() -> Self {
        // SAFETY: a new anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                Self::BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(
            p,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        Steps {
            words: NonNull::new(p.cast()).expect("mmap returned a mapping"),
        }
    }

    /// Child `i`'s word.
    fn get(&self, i: usize) -> &AtomicU32 {
        assert!(i < FORKS);
        // SAFETY: the mapping holds FORKS zero-filled words (a valid `AtomicU32` each), is
        // page-aligned, and lives until `self` is dropped.
        unsafe { &*self.words.as_ptr().add(i) }
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, not used after this.
        unsafe { libc::munmap(self.words.as_ptr().cast(), Self::BYTES) };
    }
}

/// Forks a child that runs [`child_uses_the_pool`], and waits for it until the deadline.
fn fork_one(pool: &ConcurrentPool, step: &AtomicU32) -> Outcome {
    // SAFETY: `fork` has no memory-safety preconditions. The child touches only the pool and
    // its own stack, and leaves with `_exit`, which runs no destructors and no `atexit`
    // handlers, so it never touches the parent's threads' state.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            child_uses_the_pool(pool, step)
        }))
        .unwrap_or(99);
        // SAFETY: ends the child at once, as above.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child, not yet reaped; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Outcome::Exited0
            } else if libc::WIFEXITED(status) {
                let code = libc::WEXITSTATUS(status);
                let what = (code as usize)
                    .checked_sub(10)
                    .and_then(|s| STEPS.get(s))
                    .unwrap_or(&"a panic");
                Outcome::Failed(format!("exit code {code}: {what}"))
            } else {
                Outcome::Failed(format!("status {status:#x}"))
            };
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitpid: {e}");
            continue;
        }
        if start.elapsed() > CHILD_DEADLINE {
            // SAFETY: `pid` is our child, not yet reaped, so the id cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Outcome::Hung;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
#[cfg_attr(miri, ignore = "Miri does not support fork")]
fn children_forked_while_threads_churn_the_pool_can_use_it() {
    let pool = ConcurrentPool::new(1 << 26).expect("a 64 MiB pool");
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let started = Barrier::new(CHURNERS + 1);
    let (hung, failed, churned) = std::thread::scope(|s| {
        let churners: Vec<_> = (0..CHURNERS)
            .map(|t| {
                let (pool, stop, ops, started) = (&pool, &stop, &ops, &started);
                s.spawn(move || {
                    started.wait();
                    churn(pool, stop, t, ops);
                })
            })
            .collect();
        // Stops the churners however this thread leaves the scope (the scope waits for them).
        let stopper = StopOnDrop(&stop);
        started.wait();
        while ops.load(Ordering::Relaxed) < 4 * CHURNERS as u64 {
            std::thread::yield_now();
        }
        let steps = Steps::new();
        let mut hung = Vec::new();
        let mut failed = Vec::new();
        for i in 0..FORKS {
            // The forking thread's own cache holds blocks at the fork, so the child starts
            // with a copy of a non-empty cache.
            let held: Vec<_> = (0..4).map(|k| pool.alloc(64 << k).expect("room")).collect();
            for p in held {
                pool.free(p).expect("a live block");
            }
            match fork_one(&pool, steps.get(i)) {
                Outcome::Exited0 => {}
                Outcome::Hung => {
                    let at = steps.get(i).load(Ordering::SeqCst) as usize;
                    hung.push(format!("child {i} in {}", STEPS.get(at).unwrap_or(&"exit")));
                }
                Outcome::Failed(how) => failed.push(format!("child {i}: {how}")),
            }
        }
        drop(stopper);
        for h in churners {
            h.join().expect("a churning thread panicked");
        }
        (hung, failed, ops.load(Ordering::Relaxed))
    });
    assert!(
        hung.is_empty() && failed.is_empty(),
        "balloc: fork: of {FORKS} children forked while {CHURNERS} threads churned the pool \
         ({churned} churn iterations), {} hung (killed after {} s: {}) and {} failed ({}); a \
         child hangs when the fork copied a lock some other thread held, or a state only that \
         thread would have ended",
        hung.len(),
        CHILD_DEADLINE.as_secs(),
        hung.join("; "),
        failed.len(),
        failed.join("; ")
    );
    pool.flush_thread_cache();
    let s = pool.stats();
    assert!(s.is_coalesced(), "the parent's pool is whole: {s:?}");
    pool.validate().expect("the parent's pool is valid");
}
