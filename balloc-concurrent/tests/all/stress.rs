//! Many threads, random mixed sizes and alignments, a third of frees on another thread; every
//! block carries a pattern unique to it, checked before it is freed. Afterwards the pool is
//! whole again.

use std::alloc::Layout;
use std::sync::mpsc;

use balloc_concurrent::ConcurrentPool;

use crate::{assert_whole, Rng, SendPtr};

/// Operations per thread: at least 10^5, so that rare interleavings get a chance.
const OPS: usize = if cfg!(miri) { 300 } else { 100_000 };
/// Blocks one thread keeps live at most.
const WINDOW: usize = if cfg!(miri) { 16 } else { 256 };

/// A live block and the id its pattern was made from.
struct Block {
    ptr: SendPtr,
    layout: Layout,
    id: u64,
}

// SAFETY: the block is owned by whichever thread holds this value.
unsafe impl Send for Block {}

/// Fills `block` with words derived from its id (the last partial word byte by byte).
fn fill(b: &Block) {
    let words = b.layout.size() / 8;
    let p = b.ptr.get().as_ptr();
    for i in 0..words {
        // SAFETY: the block holds at least layout.size() bytes and is 8-aligned (64 at least).
        unsafe { p.cast::<u64>().add(i).write(b.id ^ (i as u64) << 48) };
    }
    for i in words * 8..b.layout.size() {
        // SAFETY: inside the block.
        unsafe { p.add(i).write(b.id as u8 ^ i as u8) };
    }
}

#[track_caller]
fn check(b: &Block) {
    let words = b.layout.size() / 8;
    let p = b.ptr.get().as_ptr();
    for i in 0..words {
        // SAFETY: as in fill.
        let w = unsafe { p.cast::<u64>().add(i).read() };
        assert_eq!(
            w,
            b.id ^ (i as u64) << 48,
            "block {:p} (id {:#x}) word {i} overwritten",
            p,
            b.id
        );
    }
    for i in words * 8..b.layout.size() {
        // SAFETY: as in fill.
        let v = unsafe { p.add(i).read() };
        assert_eq!(
            v,
            b.id as u8 ^ i as u8,
            "block {:p} byte {i} overwritten",
            p
        );
    }
}

fn random_layout(rng: &mut Rng) -> Layout {
    let size = match rng.below(100) {
        0..=59 => 1 + rng.below(256),
        60..=89 => 1 + rng.below(4096),
        90..=98 => 1 + rng.below(32 << 10),
        _ => 1 + rng.below(256 << 10),
    } as usize;
    let align = 1usize << rng.below(13); // 1 .. 4096
    Layout::from_size_align(size, align).unwrap()
}

/// How one thread frees a block: through the pool, its handle, or the trusted sized path.
fn free_block(
    pool: &ConcurrentPool,
    local: &balloc_concurrent::LocalCache<'_>,
    b: Block,
    how: u64,
) {
    check(&b);
    match how % 3 {
        0 => pool.free(b.ptr.get()).unwrap(),
        1 => local.free(b.ptr.get()).unwrap(),
        // SAFETY: allocated from this pool with this layout, freed once.
        _ => unsafe { local.dealloc(b.ptr.get(), b.layout) },
    }
}

fn run(threads: usize, pool_size: usize) {
    let pool = ConcurrentPool::new(pool_size).unwrap();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    // Joined explicitly: a scope alone does not wait for thread-local destructors (which
    // return the threads' caches), a join does.
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (t, rx) in receivers.into_iter().enumerate() {
            let tx = senders[(t + 1) % threads].clone();
            let pool = &pool;
            handles.push(s.spawn(move || {
                let local = pool.local();
                let mut rng =
                    Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
                let mut live: Vec<Block> = Vec::new();
                let mut next_id = (t as u64) << 40;
                let mut failures = 0usize;
                for _ in 0..OPS {
                    while let Ok(b) = rx.try_recv() {
                        let how = rng.next_u64();
                        free_block(pool, &local, b, how);
                    }
                    if live.len() < WINDOW && (live.is_empty() || rng.below(2) == 0) {
                        let layout = random_layout(&mut rng);
                        let r = if rng.below(2) == 0 {
                            local.alloc_layout(layout)
                        } else {
                            pool.alloc_layout(layout)
                        };
                        match r {
                            Ok(p) => {
                                assert_eq!(p.as_ptr().addr() % layout.align(), 0);
                                next_id += 1;
                                let b = Block {
                                    ptr: SendPtr(p),
                                    layout,
                                    id: next_id,
                                };
                                fill(&b);
                                live.push(b);
                            }
                            Err(_) => failures += 1,
                        }
                    } else {
                        let b = live.swap_remove(rng.below(live.len() as u64) as usize);
                        if rng.below(3) == 0 {
                            check(&b);
                            tx.send(b).unwrap();
                        } else {
                            let how = rng.next_u64();
                            free_block(pool, &local, b, how);
                        }
                    }
                }
                for b in live.drain(..) {
                    free_block(pool, &local, b, 0);
                }
                drop(tx);
                // Free what the previous thread still sends, until it is done.
                for b in rx {
                    let how = rng.next_u64();
                    free_block(pool, &local, b, how);
                }
                failures
            }));
        }
        drop(senders);
        for h in handles {
            h.join().unwrap();
        }
    });
    assert_whole(&pool);
}

/// Pool large enough that the window (256 live blocks of ≤ 256 KiB per thread) never runs out
/// (Miri: 16 live blocks per thread on 1 MiB, where large-aligned reservations are slow).
const BIG: usize = if cfg!(miri) { 1 << 20 } else { 1 << 30 };

#[test]
fn stress_2_threads() {
    run(2, BIG);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri: 2 threads cover the interleavings; more only cost time"
)]
fn stress_4_threads() {
    run(4, BIG);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri: 2 threads cover the interleavings; more only cost time"
)]
fn stress_8_threads() {
    run(8, BIG);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "Miri: 2 threads cover the interleavings; more only cost time"
)]
fn stress_16_threads() {
    run(16, BIG);
}

#[test]
fn stress_small_pool_with_out_of_memory() {
    // 4 threads on 1 MiB: allocations fail often; the pool must stay consistent and whole.
    run(if cfg!(miri) { 2 } else { 4 }, 1 << 20);
}
