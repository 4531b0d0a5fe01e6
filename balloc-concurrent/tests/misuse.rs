//! Misuse of the trusted, sized frees stops the process, in release builds too: a double free
//! through each sized path, and a pointer the pool does not own, each in a child process (this
//! test binary run again with the case's name in `BALLOC_MISUSE_CASE`). The parent asserts the
//! child was stopped (aborted) with the `balloc:` message that names the fault, and that it
//! never got past the misuse: a child that survives allocates twice and reports whether one
//! block was handed out twice, which fails the case either way.
//!
//! A `GlobalPool` is the exception by design: a pointer outside its pool is its fallback's, so
//! freeing one through it must work.
//!
//! `harness = false`: `main` is the parent's loop over cases, or one child case.

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use balloc_concurrent::{ConcurrentPool, GlobalPool};

const CASE_VAR: &str = "BALLOC_MISUSE_CASE";
const DOUBLE_FREE: &str = "balloc: double free detected";
const FOREIGN: &str = "balloc: dealloc of a pointer that is not in this pool";
/// What a child prints when it survived the misuse and two allocations returned one block.
const TWICE: &str = "HANDED-OUT-TWICE";
/// What a child prints when it survived the misuse (the case then fails unless it expects to).
const SURVIVED: &str = "SURVIVED";

/// 64 B: cached on every path.
fn small() -> Layout {
    Layout::from_size_align(64, 8).unwrap()
}

/// 1 MiB: above the cached orders, so its frees go to the bitmaps directly.
fn large() -> Layout {
    Layout::from_size_align(1 << 20, 8).unwrap()
}

fn pool() -> ConcurrentPool {
    ConcurrentPool::new(1 << 24).expect("a 16 MiB pool")
}

/// A block of `layout` from `a`'s `GlobalAlloc::alloc`.
fn global_alloc(a: &impl GlobalAlloc, layout: Layout) -> NonNull<u8> {
    // SAFETY: the layout's size is not zero.
    NonNull::new(unsafe { a.alloc(layout) }).expect("alloc")
}

/// After a misuse the process should have stopped: allocate two blocks of `layout` and say
/// whether they are one.
fn survived(alloc: impl Fn() -> NonNull<u8>) {
    let (a, b) = (alloc(), alloc());
    if a == b {
        println!("{TWICE}");
    }
    println!("{SURVIVED}");
}

/// One misuse, run in a child.
struct Case {
    name: &'static str,
    /// The message the child must stop with; `None`: it must survive and exit 0.
    stops_with: Option<&'static str>,
    run: fn(),
}

const CASES: &[Case] = &[
    Case {
        name: "global-alloc double dealloc",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            let pool = pool();
            let p = global_alloc(&pool, small()).as_ptr();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                GlobalAlloc::dealloc(&pool, p, small());
                GlobalAlloc::dealloc(&pool, p, small());
            }
            survived(|| global_alloc(&pool, small()));
        },
    },
    Case {
        name: "allocator-api2 double deallocate",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            let pool = pool();
            let p = (&pool).allocate(small()).unwrap().cast::<u8>();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                (&pool).deallocate(p, small());
                (&pool).deallocate(p, small());
            }
            survived(|| (&pool).allocate(small()).unwrap().cast());
        },
    },
    Case {
        name: "local-cache double dealloc",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            let pool = pool();
            let local = pool.local();
            let p = local.alloc_layout(small()).unwrap();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                local.dealloc(p, small());
                local.dealloc(p, small());
            }
            survived(|| local.alloc_layout(small()).unwrap());
        },
    },
    Case {
        name: "pool double dealloc",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            let pool = pool();
            let p = pool.alloc_layout(small()).unwrap();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                pool.dealloc(p, small());
                pool.dealloc(p, small());
            }
            survived(|| pool.alloc_layout(small()).unwrap());
        },
    },
    Case {
        name: "double dealloc of an uncached block",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            let pool = pool();
            let local = pool.local();
            let p = local.alloc_layout(large()).unwrap();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                local.dealloc(p, large());
                local.dealloc(p, large());
            }
            survived(|| local.alloc_layout(large()).unwrap());
        },
    },
    Case {
        name: "double dealloc after the block left the cache",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            // The first free goes to the cache, a flush takes it to the bitmaps with its tag; the
            // second free finds the tag.
            let pool = pool();
            let local = pool.local();
            let p = local.alloc_layout(small()).unwrap();
            // SAFETY: (misuse under test) the block is freed twice.
            unsafe {
                local.dealloc(p, small());
                local.flush();
                local.dealloc(p, small());
            }
            survived(|| local.alloc_layout(small()).unwrap());
        },
    },
    Case {
        name: "double dealloc through a cache with no room",
        stops_with: Some(DOUBLE_FREE),
        run: || {
            // Fill the stack, so that the second free takes the slow path.
            let pool = ConcurrentPool::builder()
                .size(1 << 24)
                .cache_capacity(4)
                .build()
                .unwrap();
            let local = pool.local();
            let blocks: Vec<_> = (0..5)
                .map(|_| local.alloc_layout(small()).unwrap())
                .collect();
            // SAFETY: (misuse under test) blocks[0] is freed twice.
            unsafe {
                for &p in &blocks {
                    local.dealloc(p, small());
                }
                local.dealloc(blocks[0], small());
            }
            survived(|| local.alloc_layout(small()).unwrap());
        },
    },
    Case {
        name: "global-alloc foreign pointer",
        stops_with: Some(FOREIGN),
        run: || {
            let pool = pool();
            // SAFETY: (misuse under test) a system block freed to the pool.
            unsafe {
                let p = System.alloc(small());
                GlobalAlloc::dealloc(&pool, p, small());
            }
            survived(|| global_alloc(&pool, small()));
        },
    },
    Case {
        name: "local-cache foreign pointer",
        stops_with: Some(FOREIGN),
        run: || {
            let pool = pool();
            let local = pool.local();
            // SAFETY: (misuse under test) a system block freed to the pool.
            unsafe {
                let p = NonNull::new(System.alloc(small())).unwrap();
                local.dealloc(p, small());
            }
            survived(|| local.alloc_layout(small()).unwrap());
        },
    },
    Case {
        name: "pool foreign pointer of an uncached size",
        stops_with: Some(FOREIGN),
        run: || {
            let pool = pool();
            // SAFETY: (misuse under test) a system block freed to the pool.
            unsafe {
                let p = NonNull::new(System.alloc(large())).unwrap();
                pool.dealloc(p, large());
            }
            survived(|| pool.alloc_layout(large()).unwrap());
        },
    },
    Case {
        name: "global pool frees a foreign pointer to its fallback",
        stops_with: None,
        run: || {
            // A static, as a global allocator is (its pool lives for the process: a local one
            // would be reported as leaked by LeakSanitizer).
            static GLOBAL: GlobalPool = GlobalPool::new(1 << 24);
            let global = &GLOBAL;
            // SAFETY: a block of the system allocator, which is the global pool's fallback.
            unsafe {
                let p = System.alloc(small());
                assert!(!p.is_null());
                GlobalAlloc::dealloc(global, p, small());
            }
            survived(|| global_alloc(global, small()));
        },
    },
];

fn main() {
    if let Ok(name) = std::env::var(CASE_VAR) {
        let case = CASES.iter().find(|c| c.name == name).expect("a known case");
        (case.run)();
        return;
    }
    let exe = std::env::current_exe().expect("this test's path");
    let mut failed = Vec::new();
    for Case {
        name, stops_with, ..
    } in CASES
    {
        let out = Command::new(&exe)
            .env(CASE_VAR, name)
            .output()
            .expect("run the child");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let verdict = match stops_with {
            Some(message) => {
                if out.status.success() || stdout.contains(SURVIVED) {
                    Err(format!(
                        "went on after the misuse (twice: {})",
                        stdout.contains(TWICE)
                    ))
                } else if !stderr.contains(message) {
                    Err(format!("stopped without {message:?}"))
                } else if !aborted(&out.status) {
                    Err(format!("stopped, but not by abort: {}", out.status))
                } else {
                    Ok(())
                }
            }
            None if out.status.success() && !stdout.contains(TWICE) => Ok(()),
            None => Err(format!("failed: {}", out.status)),
        };
        match verdict {
            Ok(()) => println!("misuse: {name}: ok"),
            Err(why) => {
                println!("misuse: {name}: FAILED: {why}\n--- stderr:\n{stderr}---");
                failed.push(*name);
            }
        }
    }
    assert!(failed.is_empty(), "misuse cases failed: {failed:?}");
    println!("misuse: {} cases passed", CASES.len());
}

#[cfg(unix)]
fn aborted(status: &std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGABRT)
}

#[cfg(not(unix))]
fn aborted(status: &std::process::ExitStatus) -> bool {
    !status.success()
}
