//! The bad-input matrix: one row per case. Each row starts from a pool holding one live 4 KiB
//! block, makes one bad call, and must get exactly the expected error; afterwards the pool must
//! validate, still hold the live block, and still serve.

use std::alloc::Layout;
use std::ptr::NonNull;

use balloc_core::{AllocError, BuddyPool, InitError, MAX_K};

use crate::POOL;

/// What a row does and expects, as a printable outcome.
type Row = (
    &'static str,
    fn(&mut BuddyPool, NonNull<u8>) -> String,
    &'static str,
);

fn at(p: NonNull<u8>, off: isize) -> NonNull<u8> {
    NonNull::new(p.as_ptr().wrapping_offset(off)).unwrap()
}

const ROWS: &[Row] = &[
    (
        "double free",
        |pool, live| {
            let q = pool.alloc(64).unwrap();
            pool.free(q).unwrap();
            let _ = live;
            format!("{:?}", pool.free(q))
        },
        "Err(DoubleFree)",
    ),
    (
        "free of a pointer from another pool",
        |pool, _| {
            let mut other = BuddyPool::new(POOL).unwrap();
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
        |pool, live| format!("{:?}", pool.free(at(live, 8))),
        "Err(Misaligned)",
    ),
    (
        "free of a dangling pointer past the end",
        |pool, _| {
            let end = at(pool.base(), POOL as isize);
            format!("{:?}", pool.free(end))
        },
        "Err(OutOfPool)",
    ),
    (
        "alloc of 0",
        |pool, _| format!("{:?}", pool.alloc(0)),
        "Err(ZeroSize)",
    ),
    (
        "alloc of pool size + 1",
        |pool, _| format!("{:?}", pool.alloc(POOL + 1)),
        "Err(TooLarge { requested: 1048577 })",
    ),
    (
        "alloc of usize::MAX",
        |pool, _| {
            format!(
                "{:?}",
                pool.alloc(usize::MAX)
                    == Err(AllocError::TooLarge {
                        requested: usize::MAX
                    })
            )
        },
        "true",
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
        "new(usize::MAX)",
        |_, _| {
            format!(
                "{:?}",
                BuddyPool::new(usize::MAX).err()
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
            match BuddyPool::new(1usize << MAX_K) {
                Err(InitError::Os { .. }) => "Os".into(),
                other => format!("{other:?}"),
            }
        },
        "Os",
    ),
    (
        "realloc to 0",
        |pool, live| format!("{:?}", pool.realloc(live, 0)),
        "Err(ZeroSize)",
    ),
    (
        "realloc to usize::MAX",
        |pool, live| {
            format!(
                "{:?}",
                pool.realloc(live, usize::MAX)
                    == Err(AllocError::TooLarge {
                        requested: usize::MAX
                    })
            )
        },
        "true",
    ),
    (
        "realloc of a freed block",
        |pool, _| {
            let q = pool.alloc(64).unwrap();
            pool.free(q).unwrap();
            format!("{:?}", pool.realloc(q, 10))
        },
        "Err(InvalidPointer(DoubleFree))",
    ),
];

#[test]
fn every_bad_input_gets_its_error_and_leaves_the_pool_serving() {
    let mut failures = Vec::new();
    for (name, row, expected) in ROWS {
        let mut pool = BuddyPool::new(POOL).unwrap();
        let live = pool.alloc(4096).unwrap();
        // SAFETY: a live 4 KiB block.
        unsafe { live.as_ptr().write_bytes(0x5A, 4096) };
        let got = row(&mut pool, live);
        if got != *expected {
            failures.push(format!("{name}: expected {expected}, got {got}"));
        }
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
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        ROWS.len(),
        failures.join("\n")
    );
}
