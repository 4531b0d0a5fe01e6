//! Exhaustion ends the moment memory is freed: after threads have run the pool out of memory
//! (through their caches and the pool), a block freed by one of them serves the very next
//! allocation of its size on another thread, a fresh one with nothing cached, in one call;
//! and two freed buddies serve an allocation of twice the size.

use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;
use std::sync::mpsc;

use balloc_concurrent::{AllocError, ConcurrentPool, LocalCache};

use crate::{assert_whole, SendPtr, POOL};

/// How an exhausting thread allocates, and frees: its own `LocalCache` or the pool (its
/// implicit thread cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Pool,
    Local,
}

/// How a block is freed: validated, or through the trusted sized path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Free {
    Free,
    Dealloc,
}

/// How the fresh thread asks for its one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    PoolAlloc,
    NewLocalAlloc,
    AllocLayout,
    GlobalAlloc,
}

/// Threads that exhaust the pool together.
const THREADS: usize = if cfg!(miri) { 2 } else { 4 };

/// Thread `t` allocates through its cache or the pool.
fn via(t: usize) -> Via {
    if t % 2 == 0 {
        Via::Local
    } else {
        Via::Pool
    }
}

/// Frees `p` (a block of `block` bytes) through `via` and `how`.
fn free(
    pool: &ConcurrentPool,
    local: Option<&LocalCache<'_>>,
    p: SendPtr,
    block: usize,
    how: Free,
) {
    let layout = Layout::from_size_align(block, 1).unwrap();
    match (local, how) {
        (None, Free::Free) => pool.free(p.get()).unwrap(),
        (Some(local), Free::Free) => local.free(p.get()).unwrap(),
        // SAFETY: a live block of this pool, allocated with a layout of `block` bytes (the same
        // order as `layout`), freed once.
        (None, Free::Dealloc) => unsafe { pool.dealloc(p.get(), layout) },
        // SAFETY: as above.
        (Some(local), Free::Dealloc) => unsafe { local.dealloc(p.get(), layout) },
    }
}

/// One allocation of `size` bytes on a new thread, through `ask`.
fn ask_on_a_fresh_thread(
    pool: &ConcurrentPool,
    size: usize,
    ask: Ask,
) -> Result<NonNull<u8>, AllocError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let layout = Layout::from_size_align(size, 8).unwrap();
            match ask {
                Ask::PoolAlloc => pool.alloc(size),
                Ask::NewLocalAlloc => pool.local().alloc(size),
                Ask::AllocLayout => pool.alloc_layout(layout),
                Ask::GlobalAlloc => {
                    // SAFETY: a layout of non-zero size.
                    let p = unsafe { GlobalAlloc::alloc(pool, layout) };
                    NonNull::new(p).ok_or(AllocError::OutOfMemory {
                        order: size.trailing_zeros(),
                    })
                }
            }
            .map(SendPtr)
        })
        .join()
        .unwrap()
        .map(SendPtr::get)
    })
}

/// Exhausts a fresh pool with blocks of `block` bytes on [`THREADS`] threads, then has them
/// free blocks (`(i, t, how)`: the `i`-th block by address, freed by thread `t` through
/// `how`), then asks a fresh thread, once, for `want` bytes: it must get the freed memory.
fn serves_at_once(block: usize, frees: &[(usize, usize, Free)], want: usize, ask: Ask) {
    let pool = ConcurrentPool::new(POOL).unwrap();
    std::thread::scope(|s| {
        // The channels live in this closure: if it panics, dropping the command senders ends
        // the threads' loops, so the scope can join them.
        let (blocks_tx, blocks_rx) = mpsc::channel::<Vec<SendPtr>>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut commands = Vec::new();
        let mut threads = Vec::new();
        for t in 0..THREADS {
            let (command_tx, command_rx) = mpsc::channel::<(SendPtr, Free)>();
            commands.push(command_tx);
            let (pool, blocks_tx, done_tx) = (&pool, blocks_tx.clone(), done_tx.clone());
            threads.push(s.spawn(move || {
                let local = (via(t) == Via::Local).then(|| pool.local());
                let mut mine = Vec::new();
                loop {
                    let r = match &local {
                        Some(local) => local.alloc(block),
                        None => pool.alloc(block),
                    };
                    match r {
                        Ok(p) => mine.push(SendPtr(p)),
                        Err(AllocError::OutOfMemory { .. }) => break,
                        Err(e) => panic!("{e:?}"),
                    }
                }
                blocks_tx.send(mine).unwrap();
                drop(blocks_tx);
                // Frees what it is told to, then stays alive with its cache as the frees left
                // it until the test is done.
                for (p, how) in command_rx {
                    free(pool, local.as_ref(), p, block, how);
                    done_tx.send(()).unwrap();
                }
            }));
        }
        drop(blocks_tx);
        let mut blocks: Vec<SendPtr> = blocks_rx.iter().take(THREADS).flatten().collect();
        blocks.sort();
        assert_eq!(
            blocks.len(),
            POOL / block,
            "each thread stops at its first out-of-memory, with its cache flushed: together \
             they hold the whole pool"
        );
        let mut freed = Vec::new();
        for &(i, t, how) in frees {
            commands[t].send((blocks[i], how)).unwrap();
            done_rx.recv().unwrap();
            freed.push(format!("block {i} by thread {t} ({:?}, {how:?})", via(t)));
        }
        let got = ask_on_a_fresh_thread(&pool, want, ask);
        let freed = freed.join(", ");
        let p = got.unwrap_or_else(|e| {
            panic!(
                "after {THREADS} threads exhausted the pool with {block} B blocks and freed \
                 {freed}, one {ask:?} of {want} B on a fresh thread got {e:?}: freed memory \
                 must serve the next allocation at once"
            )
        });
        let first = blocks[frees[0].0].get().as_ptr();
        assert_eq!(
            p.as_ptr(),
            first.map_addr(|a| a & !(want - 1)),
            "the only free memory is what was freed"
        );
        // Clean up: every other block, and the new one, freed from this thread.
        drop(commands);
        for h in threads {
            h.join().unwrap();
        }
        for (i, q) in blocks.iter().enumerate() {
            if !frees.iter().any(|&(j, _, _)| j == i) {
                pool.free(q.get()).unwrap();
            }
        }
        pool.free(p).unwrap();
    });
    pool.flush_thread_cache();
    assert_whole(&pool);
}

/// 1 KiB: cached (4 per thread in a 1 MiB pool). 64 KiB: above the 1 MiB pool's cached orders.
const CACHED: usize = 1 << 10;
const UNCACHED: usize = 64 << 10;

/// The thread that allocates and frees through a `LocalCache`, and one that uses the pool.
const LOCAL: usize = 0;
const POOL_THREAD: usize = 1;

#[test]
fn a_block_freed_with_pool_free_serves_a_fresh_thread_at_once() {
    serves_at_once(
        CACHED,
        &[(7, POOL_THREAD, Free::Free)],
        CACHED,
        Ask::PoolAlloc,
    );
}

#[test]
fn a_block_freed_with_pool_dealloc_serves_a_fresh_thread_at_once() {
    serves_at_once(
        CACHED,
        &[(8, POOL_THREAD, Free::Dealloc)],
        CACHED,
        Ask::NewLocalAlloc,
    );
}

#[test]
fn a_block_freed_through_a_local_cache_serves_a_fresh_thread_at_once() {
    serves_at_once(CACHED, &[(9, LOCAL, Free::Free)], CACHED, Ask::AllocLayout);
    serves_at_once(
        CACHED,
        &[(0, LOCAL, Free::Dealloc)],
        CACHED,
        Ask::GlobalAlloc,
    );
}

#[test]
fn an_uncached_block_freed_serves_a_fresh_thread_at_once() {
    serves_at_once(
        UNCACHED,
        &[(3, POOL_THREAD, Free::Free)],
        UNCACHED,
        Ask::PoolAlloc,
    );
    serves_at_once(
        UNCACHED,
        &[(4, LOCAL, Free::Dealloc)],
        UNCACHED,
        Ask::GlobalAlloc,
    );
}

#[test]
fn two_freed_buddies_serve_twice_their_size_at_once() {
    // The pool is tiled by equal blocks, so blocks 2i and 2i + 1 by address are buddies:
    // freed on two threads, they merge into one block of twice the size.
    serves_at_once(
        CACHED,
        &[(10, LOCAL, Free::Free), (11, POOL_THREAD, Free::Dealloc)],
        2 * CACHED,
        Ask::PoolAlloc,
    );
    serves_at_once(
        UNCACHED,
        &[(6, POOL_THREAD, Free::Dealloc), (7, LOCAL, Free::Free)],
        2 * UNCACHED,
        Ask::NewLocalAlloc,
    );
}
