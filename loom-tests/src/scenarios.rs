//! One execution of each race, on the threads of [`crate::sync`]: loom's (every interleaving,
//! see `tests/models`) or std's (a smoke run on real threads, see `tests/smoke.rs`).
//!
//! Sizes are written as fractions of `pool.size()`, so a scenario means the same on a 128-byte
//! loom pool and on the 1 MiB pool real threads get. Each scenario ends with
//! [`finish`]: no double hand-out, every byte in exactly one place,
//! `validate()` passing, and the pool coalesced once every block is back.
//!
//! An allocation must succeed whenever the pool has room for it counting memory that other
//! threads hold mid-split or mid-merge (bitmaps.rs counts those as transits and reports
//! out-of-memory only when none overlapped the search). Where room depends on another thread's
//! call having finished, a flag says so: a thread that saw another's Release flag before it
//! began knows that call had finished. Out-of-memory while another thread holds the memory
//! (allocated, or in its cache) is allowed, and counted ([`tolerated_oom`]).
//!
//! The checks run with no thread inside a call. A thread's exit is a call: its thread-local
//! destructor retires its cache (flush, depot drain, which may return blocks thread 0
//! deposited, deregistration). So after joining every other thread, thread 0 waits until the
//! only thread cache left is its own (`OWN`, [`wait_retired`]), which also orders every
//! retirement before the checks. Under loom nothing else does: see [`crate::sync::join`].

use std::sync::Arc;

use balloc_concurrent::{ConcurrentPool, FreeError};

use crate::check::{
    cached, check_quiescent, fill_all_but_last_block, finish, tolerated_oom, uncached, Block,
    BROKEN, MIN,
};
use crate::sync::{
    invalidated_searches, is_up, join, join_exited, pressure_epoch, raise, spawn, wait_for,
    wait_retired, AtomicBool,
};

/// Two smallest blocks: the tiniest pool loom accepts.
const TWO_BLOCKS: usize = 2 * MIN;
/// Four smallest blocks: room for a split of two levels.
const FOUR_BLOCKS: usize = 4 * MIN;
/// Thread caches left once every other thread is joined: thread 0's (this thread's), made by
/// its first call on the pool, which every scenario makes before it joins.
const OWN: usize = 1;
/// 128 smallest blocks: order 6 spans two bitmap words, so it has a summary word over them.
const TWO_WORDS: usize = 128 * MIN;
/// The smallest pool whose threads may cache a smallest block (1/256 of the pool per order).
const CACHEABLE: usize = 256 * MIN;

fn flags<const N: usize>() -> Arc<[AtomicBool; N]> {
    Arc::new(core::array::from_fn(|_| AtomicBool::new(false)))
}

fn collect(parts: impl IntoIterator<Item = Option<Block>>) -> Vec<Block> {
    parts.into_iter().flatten().collect()
}

/// One thread's side of an allocation race between threads `0` and `1` in a pool with room for
/// both: it must succeed. Memory another thread has taken out of the bitmaps mid-split or
/// mid-merge does not excuse an out-of-memory (the pool's transit word, bitmaps.rs).
fn race_alloc(pool: &ConcurrentPool, size: usize, me: usize) -> Block {
    Block::try_alloc(pool, size, me).unwrap_or_else(|| {
        panic!(
            "{BROKEN}: false out-of-memory: thread {me} found no {size}-byte block in a pool \
             with room for both threads"
        )
    })
}

/// Model 1a: two threads claim the whole pool (one free block, one bit) at once: exactly one
/// gets it.
pub fn whole_pool_claimed_once() {
    let pool = Arc::new(uncached(TWO_BLOCKS));
    let size = pool.size();
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || Block::try_alloc(&pool, size, 1))
    };
    let mine = Block::try_alloc(&pool, size, 0);
    let theirs = join_exited(t, &pool, OWN);
    let held = collect([mine, theirs]);
    assert_eq!(
        held.len(),
        1,
        "{BROKEN}: {} threads were handed the whole pool",
        held.len()
    );
    finish(&pool, held);
}

/// Model 1b: two threads allocate a smallest block each from a pool of two: both succeed, with
/// distinct blocks (one splits the top block while the other searches; since the transit word
/// of bitmaps.rs, memory mid-split no longer excuses an out-of-memory).
pub fn two_smallest_blocks() {
    let pool = Arc::new(uncached(TWO_BLOCKS));
    let half = pool.size() / 2;
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || race_alloc(&pool, half, 1))
    };
    let mine = race_alloc(&pool, half, 0);
    let theirs = join_exited(t, &pool, OWN);
    finish(&pool, vec![mine, theirs]);
}

/// Model 2a: two threads free two buddies at once: they merge into one free block of the top
/// order.
pub fn buddies_freed_at_once() {
    let pool = Arc::new(uncached(TWO_BLOCKS));
    let half = pool.size() / 2;
    let a = Block::alloc(&pool, half, 0);
    let b = Block::alloc(&pool, half, 1);
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || b.free(&pool))
    };
    a.free(&pool);
    join_exited(t, &pool, OWN);
    let s = pool.stats();
    assert!(
        s.is_coalesced(),
        "{BROKEN}: buddies freed at once did not coalesce: {s:?}"
    );
    finish(&pool, Vec::new());
}

/// Model 2b: three threads free a quarter, its buddy quarter and the other half at once: the
/// merges cascade over two levels into the top block, whoever finishes last.
pub fn merge_cascade() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let (quarter, half) = (pool.size() / 4, pool.size() / 2);
    let a = Block::alloc(&pool, quarter, 0);
    let b = Block::alloc(&pool, quarter, 1);
    let c = Block::alloc(&pool, half, 2);
    let ts = [b, c].map(|blk| {
        let pool = Arc::clone(&pool);
        spawn(move || blk.free(&pool))
    });
    a.free(&pool);
    for t in ts {
        join(t);
    }
    wait_retired(&pool, OWN);
    let s = pool.stats();
    assert!(
        s.is_coalesced(),
        "{BROKEN}: a cascade of merges did not coalesce: {s:?}"
    );
    finish(&pool, Vec::new());
}

/// Model 3: two threads free two buddy quarters (the second merge cascades into the top block)
/// while a third allocates a quarter: the claim and the merges fight over the same bits.
pub fn merge_races_claim() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let quarter = pool.size() / 4;
    let x = Block::alloc(&pool, quarter, 1);
    let y = Block::alloc(&pool, quarter, 2);
    let ts = [x, y].map(|blk| {
        let pool = Arc::clone(&pool);
        spawn(move || blk.free(&pool))
    });
    // At least half the pool is free throughout (in the bitmaps or in a merge's transit).
    let mine = race_alloc(&pool, quarter, 0);
    for t in ts {
        join(t);
    }
    wait_retired(&pool, OWN);
    finish(&pool, vec![mine]);
}

/// Model 4a: two threads allocate a quarter each from one free block of the top order: one
/// splits it (two levels), the other claims a published half or quarter.
pub fn split_race_same_order() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let quarter = pool.size() / 4;
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || race_alloc(&pool, quarter, 1))
    };
    let mine = race_alloc(&pool, quarter, 0);
    let theirs = join_exited(t, &pool, OWN);
    finish(&pool, vec![mine, theirs]);
}

/// Model 4b: a quarter and a half from one free block of the top order at once.
pub fn split_race_mixed_orders() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let (quarter, half) = (pool.size() / 4, pool.size() / 2);
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || race_alloc(&pool, quarter, 1))
    };
    let mine = race_alloc(&pool, half, 0);
    let theirs = join_exited(t, &pool, OWN);
    finish(&pool, vec![mine, theirs]);
}

/// Setup of the cache models: a cacheable pool where every byte is allocated (by thread 0)
/// except the last smallest block, which thread 1 will take into its cache. Returns the pool and thread 0's blocks.
fn last_block_cached_by_thread_1() -> (Arc<ConcurrentPool>, Vec<Block>) {
    let pool = Arc::new(cached(CACHEABLE));
    let held = fill_all_but_last_block(&pool, 0);
    (pool, held)
}

/// Thread 1's part: take a smallest block (in the cache models: the last one) into its cache
/// (alloc through a refill, free into the cache), then say so.
fn cache_a_block(pool: &ConcurrentPool, cached_flag: &AtomicBool) {
    Block::alloc(pool, MIN, 1).free(pool);
    raise(cached_flag);
}

/// Thread 0's allocation of the last block while thread 1 may be handing it back: if `gone`
/// was up before it began, it must succeed. Afterwards (once `wait` has joined thread 1) a
/// retry must succeed. Then the whole pool is checked.
fn alloc_last_block(
    pool: &ConcurrentPool,
    mut held: Vec<Block>,
    gone: &AtomicBool,
    wait: impl FnOnce(),
    what: &str,
) {
    let seen = is_up(gone);
    let first = Block::try_alloc(pool, MIN, 0);
    if first.is_none() {
        assert!(
            !seen,
            "{BROKEN}: false out-of-memory: the only free block was {what} before the \
             allocation began"
        );
        tolerated_oom();
    }
    wait();
    let b = first.unwrap_or_else(|| {
        Block::try_alloc(pool, MIN, 0).unwrap_or_else(|| {
            panic!("{BROKEN}: false out-of-memory: the only free block was {what}")
        })
    });
    held.push(b);
    finish(pool, held);
}

/// Model 5a: a thread flushes its cache (`flush_thread_cache`) while another allocates the one
/// block that cache holds.
pub fn cache_flush_races_alloc() {
    let (pool, held) = last_block_cached_by_thread_1();
    let f = flags::<2>(); // [cached, flushed]
    let t = {
        let (pool, f) = (Arc::clone(&pool), Arc::clone(&f));
        spawn(move || {
            cache_a_block(&pool, &f[0]);
            pool.flush_thread_cache();
            raise(&f[1]);
        })
    };
    wait_for(&f[0]);
    alloc_last_block(
        &pool,
        held,
        &f[1],
        || join_exited(t, &pool, OWN),
        "flushed from a cache",
    );
}

/// Model 5b: a thread exits (its thread-local cache is retired by the destructor) while
/// another allocates the one block that cache holds. The allocation may run out while the
/// cache lives; once the thread is joined and its cache retired (see [`join_exited`]), a
/// retry must find the block.
pub fn thread_exit_races_alloc() {
    let (pool, held) = last_block_cached_by_thread_1();
    let cached_flag = flags::<1>();
    let exited = AtomicBool::new(false);
    let t = {
        let (pool, f) = (Arc::clone(&pool), Arc::clone(&cached_flag));
        spawn(move || cache_a_block(&pool, &f[0]))
    };
    wait_for(&cached_flag[0]);
    alloc_last_block(
        &pool,
        held,
        &exited,
        || join_exited(t, &pool, OWN),
        "returned by an exited thread's cache",
    );
}

/// Model 5c: the documented bound. Thread 1's cache holds the only free block, so thread 0's
/// allocation runs out and raises the pool's pressure epoch; thread 1's next slow path (here
/// an allocation of an uncached order) must flush, after which thread 0 succeeds.
pub fn pressure_makes_holder_flush() {
    let (pool, mut held) = last_block_cached_by_thread_1();
    let f = flags::<3>(); // [cached, out of memory, slow path done]
    let t = {
        let (pool, f) = (Arc::clone(&pool), Arc::clone(&f));
        spawn(move || {
            cache_a_block(&pool, &f[0]);
            wait_for(&f[1]);
            // A slow path: order 7 is not cached. Its buddy is held, so it runs out itself.
            let other = Block::try_alloc(&pool, 2 * MIN, 1);
            raise(&f[2]);
            other
        })
    };
    wait_for(&f[0]);
    let first = Block::try_alloc(&pool, MIN, 0);
    if first.is_none() {
        // The bound: the block sits in a cache whose thread has not run a slow path since.
        let s = pool.stats();
        assert_eq!(
            (s.free_bytes, s.cached_bytes),
            (0, MIN),
            "{BROKEN}: out of memory with bytes free or uncached: {s:?}"
        );
        tolerated_oom();
    }
    raise(&f[1]);
    wait_for(&f[2]);
    let b = first.unwrap_or_else(|| {
        Block::try_alloc(&pool, MIN, 0).unwrap_or_else(|| {
            panic!(
                "{BROKEN}: false out-of-memory: the cache holding the block ran a slow path \
                 after the pressure signal but did not flush"
            )
        })
    });
    held.push(b);
    held.extend(join_exited(t, &pool, OWN));
    finish(&pool, held);
}

/// Model 6: three threads, mixed orders: one allocates and frees a quarter, one frees a
/// quarter it was given then allocates and frees a half, one allocates and frees a half. All
/// memory comes back and coalesces.
pub fn three_threads_mixed_orders() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let (quarter, half) = (pool.size() / 4, pool.size() / 2);
    let x = Block::alloc(&pool, quarter, 2);
    let t1 = {
        let pool = Arc::clone(&pool);
        spawn(move || match Block::try_alloc(&pool, quarter, 1) {
            Some(a) => a.free(&pool),
            None => tolerated_oom(),
        })
    };
    let t2 = {
        let pool = Arc::clone(&pool);
        spawn(move || {
            x.free(&pool);
            match Block::try_alloc(&pool, half, 2) {
                Some(b) => b.free(&pool),
                None => tolerated_oom(),
            }
        })
    };
    match Block::try_alloc(&pool, half, 0) {
        Some(c) => c.free(&pool),
        None => tolerated_oom(),
    }
    join(t1);
    join(t2);
    wait_retired(&pool, OWN);
    finish(&pool, Vec::new());
}

/// Two frees of one block at once: exactly one `Ok`, the other `DoubleFree`.
fn racing_double_free(pool: Arc<ConcurrentPool>) {
    let b = Block::alloc(&pool, MIN, 0);
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || pool.free(b.ptr()))
    };
    let mine = pool.free(b.ptr());
    let theirs = join_exited(t, &pool, OWN);
    let results = [mine, theirs];
    assert!(
        results.contains(&Ok(())) && results.contains(&Err(FreeError::DoubleFree)),
        "{BROKEN}: two frees of one block at once gave {results:?}, not one Ok and one DoubleFree"
    );
    finish(&pool, Vec::new());
}

/// Model 7a: two threads free one cached-order block at once: the tag CAS (tags.rs) lets
/// exactly one in; the winner's cache holds the block (returned at its exit or flush).
pub fn double_free_race_cached() {
    racing_double_free(Arc::new(cached(CACHEABLE)));
}

/// Model 7b: the same without caches: the live bit's `fetch_and` lets exactly one in.
pub fn double_free_race_uncached() {
    racing_double_free(Arc::new(uncached(TWO_BLOCKS)));
}

/// Model 7c: summary hints (summary.rs). Order 6 spans two words with a summary word over
/// them; word 0 holds one free block. One thread claims it (the word empties, its hint goes
/// stale), one frees another block of word 0 (the word refills and re-marks its hint), and one
/// allocates (its search may clear the stale hint just as it is re-marked). No hint may be
/// lost: an allocation that began after the free finished must succeed, and `validate` checks
/// that no non-empty word is hidden.
pub fn summary_hint_race() {
    let pool = Arc::new(uncached(TWO_WORDS));
    // Blocks 0, 1, 2 held as smallest blocks, block 3 free; every larger block held.
    let mut held = vec![
        Block::alloc(&pool, MIN, 0),
        Block::alloc(&pool, MIN, 0),
        Block::alloc(&pool, MIN, 0),
    ];
    for k in (balloc_concurrent::SMALLEST_K + 2..pool.kval()).rev() {
        held.push(Block::alloc(&pool, 1 << k, 0));
    }
    let a = held.remove(0);
    check_quiescent(&pool, &held.iter().copied().chain([a]).collect::<Vec<_>>());
    let freed = flags::<1>();
    let claim = |pool: &ConcurrentPool, me: usize, freed: &[AtomicBool; 1]| {
        let seen = is_up(&freed[0]);
        let b = Block::try_alloc(pool, MIN, me);
        match &b {
            Some(_) => {}
            None if seen => panic!(
                "{BROKEN}: false out-of-memory: thread {me} found no free block after a free \
                 left two (a summary hint was lost?)"
            ),
            None => tolerated_oom(),
        }
        b
    };
    let t1 = {
        let (pool, freed) = (Arc::clone(&pool), Arc::clone(&freed));
        spawn(move || claim(&pool, 1, &freed))
    };
    let t2 = {
        let (pool, freed) = (Arc::clone(&pool), Arc::clone(&freed));
        spawn(move || {
            a.free(&pool);
            raise(&freed[0]);
        })
    };
    let mine = claim(&pool, 0, &freed);
    let theirs = join(t1);
    join(t2);
    wait_retired(&pool, OWN);
    held.extend(mine);
    held.extend(theirs);
    finish(&pool, held);
}

/// Model 7d: the pool is dropped while a thread whose cache holds one of its blocks exits:
/// the strong / weak counts (shared.rs) decide who flushes and who frees. The exiting thread is
/// the model's main thread (its thread-local destructors run at the end of the execution,
/// after this function returns); the other thread drops a reference to the pool that may be
/// the last. Every order of the drop, the destructor's upgrade and the releases is run; loom
/// reports any panic or deadlock. (Loom cannot see a use-after-free of plain memory, so this
/// model checks the counting protocol, not that nothing touches a dropped region.)
pub fn pool_drop_races_thread_exit() {
    let pool = crate::sync::Arc::new(cached(CACHEABLE));
    // Now in this thread's cache (under loom, whose thread-locals are fresh in every
    // execution; a long-lived real thread may have no cache slot left and free it directly).
    Block::alloc(&pool, MIN, 0).free(&pool);
    let other = crate::sync::Arc::clone(&pool);
    let _detached = spawn(move || drop(other)); // maybe the last reference: drops the pool
    drop(pool); // maybe the last reference; then this thread exits, retiring its cache
}

/// Model 8: the depot (depot.rs). Thread 1 frees two cached-order blocks: the second free finds
/// its one-block cache full and deposits the first block as a magazine, while thread 0, whose
/// cache is empty, allocates: it takes that magazine (or refills from the bitmaps) and must
/// succeed without being handed a block anyone holds. Thread 1 then exits: its cache's
/// retirement (a thread-local destructor) returns `b` and drains the depot, and once it has
/// finished (see [`join_exited`]) the pool is whole.
pub fn depot_handoff() {
    // No peek before the magazine CAS, so loom explores the hand-over (see `loom_depot_peek`).
    #[cfg(balloc_loom)]
    balloc_concurrent::loom_depot_peek(false);
    let pool = Arc::new(cached(CACHEABLE));
    let a = Block::alloc(&pool, MIN, 1);
    let b = Block::alloc(&pool, MIN, 1);
    let c = Block::alloc(&pool, MIN, 0);
    // Thread 0's cache starts empty: its next allocation misses.
    pool.flush_thread_cache();
    let t = {
        let pool = Arc::clone(&pool);
        spawn(move || {
            a.free(&pool);
            b.free(&pool);
        })
    };
    let mine = race_alloc(&pool, MIN, 0);
    join_exited(t, &pool, OWN);
    finish(&pool, vec![c, mine]);
}

/// The smallest block that is the buddy of `b` (a smallest block), among `blocks`.
fn take_buddy(blocks: &mut Vec<Block>, b: &Block) -> Block {
    let buddy = b.ptr().as_ptr().addr() ^ MIN;
    let i = blocks
        .iter()
        .position(|c| c.size() == MIN && c.ptr().as_ptr().addr() == buddy)
        .expect("the buddy is held");
    blocks.swap_remove(i)
}

/// Makes thread 0's cache take depot home 0 (a cache takes its home at its first deposit),
/// so that the next cache to deposit gets home 1: thread 0 frees `x` and `y` (smallest blocks
/// it holds, its one-block stack empty), so `x` goes to the depot, then allocates them back
/// (`y` from its stack, `x` from the depot). Returns them, at their addresses.
fn take_home_0(pool: &ConcurrentPool, x: Block, y: Block) -> (Block, Block) {
    let (xp, yp) = (x.ptr(), y.ptr());
    x.free(pool);
    y.free(pool);
    let y = Block::alloc(pool, MIN, 0);
    let x = Block::alloc(pool, MIN, 0);
    assert_eq!(
        (x.ptr(), y.ptr()),
        (xp, yp),
        "the blocks came back from stack and depot"
    );
    (x, y)
}

/// Model 8b: the depot's shards (depot.rs). Thread 0's cache has depot home 0 (see
/// `take_home_0`); thread 1's takes home 1 at its first deposit. The pool is full; thread 1
/// frees two smallest blocks `x` and `y` (from thread 0): `x` into its one-block cache, then,
/// the stack being full, `x` to the depot as a magazine in shard 1. Meanwhile thread 0
/// allocates a smallest block: its cache is empty and its affinity is shard 0. If the deposit
/// was done before the allocation began, the allocation must find the magazine in shard 1,
/// without raising the pressure epoch (asking every cache to flush), which a look at shard 0
/// alone followed by the out-of-memory path would.
pub fn magazine_in_another_shard_is_taken() {
    #[cfg(balloc_loom)]
    balloc_concurrent::loom_depot_peek(false);
    let pool = Arc::new(cached(CACHEABLE));
    let mut held = fill_all_but_last_block(&pool, 0);
    let y = held
        .pop()
        .expect("the last block filled is a smallest block");
    // The pool is full from here on.
    let x = Block::alloc(&pool, MIN, 0);
    let (x, y) = take_home_0(&pool, x, y);
    let f = flags::<2>(); // [deposited, checked]
    let t = {
        let (pool, f) = (Arc::clone(&pool), Arc::clone(&f));
        spawn(move || {
            x.free(&pool);
            y.free(&pool);
            raise(&f[0]);
            wait_for(&f[1]);
        })
    };
    let seen = is_up(&f[0]);
    let first = Block::try_alloc(&pool, MIN, 0);
    let epoch = pressure_epoch(&pool);
    // Thread 1 may go (and retire its cache) before any check can fail, so that a failure is
    // reported as one, not as a thread left waiting.
    raise(&f[1]);
    join_exited(t, &pool, OWN);
    if seen {
        if let Some(epoch) = epoch {
            assert_eq!(
                epoch, 0,
                "{BROKEN}: an allocation that a magazine in the depot could serve raised the \
                 pressure epoch: the magazine in another shard was not found"
            );
        }
        assert!(
            first.is_some(),
            "{BROKEN}: false out-of-memory: a magazine was in the depot before the allocation"
        );
    } else if first.is_none() {
        tolerated_oom();
    }
    let b = first.unwrap_or_else(|| {
        Block::try_alloc(&pool, MIN, 0).unwrap_or_else(|| {
            panic!("{BROKEN}: false out-of-memory: the only free block was returned at exit")
        })
    });
    held.push(b);
    finish(&pool, held);
}

/// Model 8c: an out-of-memory decision drains every shard of the depot. The pool is full;
/// thread 0 holds four smallest blocks, `x` and `y` buddies. Thread 1 (depot home 1) frees `x`
/// and then `v`: `x` goes to the depot, in shard 1, and `v` stays in thread 1's cache.
/// Meanwhile thread 0 (home 0) frees `y` into its own cache and allocates a block of twice the
/// smallest size (an order that is not cached): no such block is free, so it flushes its own
/// cache (`y` to the bitmaps) and drains the depot, whose `x` merges with `y`. If the deposit
/// was done before the allocation began, the allocation must succeed.
pub fn out_of_memory_drains_every_shard() {
    let pool = Arc::new(cached(CACHEABLE));
    let mut held = fill_all_but_last_block(&pool, 0);
    // Four smallest blocks: `y` from the fill; the last free block `x` and the two halves of
    // the fill's block of twice the smallest size, freed and allocated again.
    let y = held
        .pop()
        .expect("the last block filled is a smallest block");
    let pair = held.pop().expect("a block of twice the smallest size");
    assert_eq!(pair.size(), 2 * MIN);
    pair.free(&pool);
    let mut smallest: Vec<Block> = (0..3).map(|_| Block::alloc(&pool, MIN, 0)).collect();
    let x = take_buddy(&mut smallest, &y);
    let (x, y) = take_home_0(&pool, x, y);
    let v = smallest.pop().expect("three were allocated");
    held.extend(smallest);
    let f = flags::<2>(); // [deposited, checked]
    let t = {
        let (pool, f) = (Arc::clone(&pool), Arc::clone(&f));
        spawn(move || {
            x.free(&pool);
            v.free(&pool);
            raise(&f[0]);
            wait_for(&f[1]);
        })
    };
    let seen = is_up(&f[0]);
    y.free(&pool);
    let first = Block::try_alloc(&pool, 2 * MIN, 0);
    // As in model 8b: thread 1 goes first.
    raise(&f[1]);
    join_exited(t, &pool, OWN);
    if first.is_none() {
        assert!(
            !seen,
            "{BROKEN}: false out-of-memory: the memory was in a depot magazine before the \
             allocation began"
        );
        tolerated_oom();
    }
    let b = first.unwrap_or_else(|| {
        Block::try_alloc(&pool, 2 * MIN, 0).unwrap_or_else(|| {
            panic!("{BROKEN}: false out-of-memory: every block came back at thread exit")
        })
    });
    held.push(b);
    finish(&pool, held);
}

/// Model 9a/9b: `threads` threads (this one included) run out of memory together, in a pool
/// whose one block thread 0 holds. Every allocation must return out-of-memory, and, since
/// nothing moves, no decision may find its search overlapped by another's: failing searches
/// write nothing a transit snapshot sees. The rule they replaced (every search opened a
/// transit) let threads that ran out together invalidate each other's searches forever.
pub fn out_of_memory_together(threads: usize) {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let all = Block::alloc(&pool, pool.size(), 0);
    let ts: Vec<_> = (1..threads)
        .map(|me| {
            let pool = Arc::clone(&pool);
            spawn(move || Block::try_alloc(&pool, MIN, me).map(|b| b.size()))
        })
        .collect();
    let mine = Block::try_alloc(&pool, MIN, 0).map(|b| b.size());
    let theirs: Vec<_> = ts.into_iter().map(join).collect();
    assert!(
        mine.is_none() && theirs.iter().all(Option::is_none),
        "{BROKEN}: an allocation succeeded in a pool with no free byte"
    );
    wait_retired(&pool, OWN);
    if let Some(n) = invalidated_searches(&pool) {
        assert_eq!(
            n, 0,
            "{BROKEN}: failing searches invalidated each other ({n} decision searches redone)"
        );
    }
    finish(&pool, vec![all]);
}

/// Model 9a: two threads run out together.
pub fn out_of_memory_together_2() {
    out_of_memory_together(2);
}

/// Model 9b: three threads run out together.
pub fn out_of_memory_together_3() {
    out_of_memory_together(3);
}

/// Model 10: thread 0 grows its quarter (the pool's first) to a half in place while thread 1
/// frees the buddy quarter above it and thread 2 allocates a quarter. The grow claims the buddy
/// with one `fetch_and` if it is free, racing the free's merge-or-mark CAS and the claim; when
/// the buddy is not free (yet, or any more) it moves the block instead. Whatever the order: no
/// block handed out twice, every byte in one place, and a whole pool at the end.
pub fn grow_in_place_races_buddy_free_and_claim() {
    let pool = Arc::new(uncached(FOUR_BLOCKS));
    let (quarter, half) = (pool.size() / 4, pool.size() / 2);
    let a = Block::alloc(&pool, quarter, 0);
    let b = Block::alloc(&pool, quarter, 1);
    assert_eq!(a.ptr().as_ptr().wrapping_add(quarter), b.ptr().as_ptr());
    let freer = {
        let pool = Arc::clone(&pool);
        spawn(move || b.free(&pool))
    };
    let claimer = {
        let pool = Arc::clone(&pool);
        spawn(move || {
            let got = Block::try_alloc(&pool, quarter, 2);
            if got.is_none() {
                // Thread 0's moved block took the free half and thread 1's quarter was not
                // back yet: the pool had no free quarter during the search.
                tolerated_oom();
            }
            got
        })
    };
    let grown = a.resize(&pool, half);
    if grown.is_none() {
        tolerated_oom();
    }
    join(freer);
    let claimed = join(claimer);
    wait_retired(&pool, OWN);
    finish(&pool, collect([grown, claimed]));
}
