//! The bad-input matrix: one row per case. Each row starts from a pool holding one live 4 KiB
//! block, makes one bad call (through the pool, a `LocalCache` or `GlobalAlloc`), and must get
//! exactly the expected error; afterwards the pool must validate, still hold the live block
//! with its contents, and still serve.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::Barrier;

use balloc_concurrent::{AllocError, ConcurrentPool, FreeError, InitError, MAX_K};

use crate::{SendPtr, POOL};

type Row = (
    &'static str,
    fn(&ConcurrentPool, NonNull<u8>) -> String,
    &'static str,
);

fn at(p: NonNull<u8>, off: isize) -> NonNull<u8> {
    NonNull::new(p.as_ptr().wrapping_offset(off)).unwrap()
}

const ROWS: &[Row] = &[
    (
        "double free (cached order)",
        |pool, _| {
            let q = pool.alloc(64).unwrap();
            pool.free(q).unwrap();
            format!("{:?}", pool.free(q))
        },
        "Err(DoubleFree)",
    ),
    (
        "double free (uncached order, through a handle)",
        |pool, _| {
            let local = pool.local();
            let q = local.alloc(POOL / 4).unwrap();
            local.free(q).unwrap();
            format!("{:?}", local.free(q))
        },
        "Err(DoubleFree)",
    ),
    (
        "double free of the same pointer from two threads at once",
        |pool, _| {
            let q = SendPtr(pool.alloc(256).unwrap());
            let barrier = Barrier::new(2);
            let mut results: Vec<Result<(), FreeError>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            let r = pool.free(q.get());
                            pool.flush_thread_cache();
                            r
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).collect()
            });
            results.sort_by_key(|r| r.is_err());
            format!("{results:?}")
        },
        "[Ok(()), Err(DoubleFree)]",
    ),
    (
        "free of a pointer from another pool",
        |pool, _| {
            let other = ConcurrentPool::new(POOL).unwrap();
            let q = other.alloc(64).unwrap();
            format!("{:?}", pool.free(q))
        },
        "Err(OutOfPool)",
    ),
    (
        "free of an interior pointer",
        |pool, live| format!("{:?}", pool.free(at(live, 128))),
        "Err(Interior)",
    ),
    (
        "free of a misaligned pointer",
        |pool, live| format!("{:?}", pool.local().free(at(live, 8))),
        "Err(Misaligned)",
    ),
    (
        "free of a dangling pointer past the end",
        |pool, live| {
            let base = at(live, -((live.as_ptr().addr() % POOL) as isize));
            format!("{:?}", pool.free(at(base, POOL as isize)))
        },
        "Err(OutOfPool)",
    ),
    (
        "alloc of 0",
        |pool, _| format!("{:?} {:?}", pool.alloc(0), pool.local().alloc(0)),
        "Err(ZeroSize) Err(ZeroSize)",
    ),
    (
        "alloc of pool size + 1",
        |pool, _| format!("{:?}", pool.alloc(POOL + 1)),
        "Err(TooLarge { requested: 1048577 })",
    ),
    (
        "alloc of usize::MAX",
        |pool, _| {
            let want = Err(AllocError::TooLarge {
                requested: usize::MAX,
            });
            format!(
                "{} {}",
                pool.alloc(usize::MAX) == want,
                pool.local().alloc(usize::MAX) == want
            )
        },
        "true true",
    ),
    (
        "alloc_layout with alignment above the pool",
        |pool, _| {
            format!(
                "{:?}",
                pool.alloc_layout(Layout::from_size_align(8, 2 * POOL).unwrap())
            )
        },
        "Err(AlignmentTooLarge { align: 2097152 })",
    ),
    (
        "GlobalAlloc::alloc too large: null, no panic",
        |pool, _| {
            // SAFETY: a valid, non-zero layout.
            let p =
                unsafe { GlobalAlloc::alloc(pool, Layout::from_size_align(2 * POOL, 8).unwrap()) };
            format!("{}", p.is_null())
        },
        "true",
    ),
    (
        "GlobalAlloc::realloc to more than the pool: null, old block kept",
        |pool, live| {
            let layout = Layout::from_size_align(4096, 8).unwrap();
            // SAFETY: `live` was allocated with a 4 KiB layout of the same order; the new size is
            // a valid layout size (below isize::MAX rounded to the alignment).
            let p = unsafe {
                GlobalAlloc::realloc(pool, live.as_ptr(), layout, isize::MAX as usize - 4095)
            };
            format!("{}", p.is_null())
        },
        "true",
    ),
    (
        "new(usize::MAX)",
        |_, _| {
            format!(
                "{}",
                ConcurrentPool::new(usize::MAX).err()
                    == Some(InitError::TooLarge {
                        requested: usize::MAX
                    })
            )
        },
        "true",
    ),
    (
        "new with a size the OS refuses",
        |_, _| {
            if cfg!(miri) {
                return "Os".into(); // Miri's stand-in for mmap cannot refuse politely
            }
            match ConcurrentPool::new(1usize << MAX_K) {
                Err(InitError::Os { .. }) => "Os".into(),
                other => format!("{other:?}"),
            }
        },
        "Os",
    ),
];

#[test]
fn every_bad_input_gets_its_error_and_leaves_the_pool_serving() {
    let mut failures = Vec::new();
    for (name, row, expected) in ROWS {
        let pool = ConcurrentPool::new(POOL).unwrap();
        let live = pool.alloc(4096).unwrap();
        // SAFETY: a live 4 KiB block.
        unsafe { live.as_ptr().write_bytes(0x5A, 4096) };
        let got = row(&pool, live);
        if got != *expected {
            failures.push(format!("{name}: expected {expected}, got {got}"));
        }
        pool.flush_thread_cache();
        if let Err(e) = pool.validate() {
            failures.push(format!("{name}: pool invalid afterwards: {e}"));
        }
        if pool.usable_size(live) != Some(4096) {
            failures.push(format!("{name}: the live block was lost"));
        }
        // SAFETY: still live (checked above), 4 KiB.
        if !unsafe { std::slice::from_raw_parts(live.as_ptr(), 4096) }
            .iter()
            .all(|&b| b == 0x5A)
        {
            failures.push(format!("{name}: the live block's contents changed"));
        }
        match pool.alloc(64).map(|p| pool.free(p)) {
            Ok(Ok(())) => {}
            other => failures.push(format!("{name}: pool no longer serves: {other:?}")),
        }
        pool.free(live).unwrap();
        pool.flush_thread_cache();
        let s = pool.stats();
        if !s.is_coalesced() {
            failures.push(format!(
                "{name}: pool not whole after the live block's free: {s:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}
