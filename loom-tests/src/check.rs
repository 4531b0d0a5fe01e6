//! Blocks that know who holds them, the pools the scenarios use, and the end-of-scenario checks
//! of DESIGN.md's invariants.
//!
//! Every failed check panics with a message that starts with [`BROKEN`], so a `should_panic`
//! test can tell a caught bug from any other panic.

use core::cell::Cell;
use core::ptr::NonNull;

use balloc_concurrent::{AllocError, ConcurrentPool};

/// Prefix of every invariant failure's panic message.
pub const BROKEN: &str = "balloc invariant broken";

/// Smallest block (2^SMALLEST_K bytes).
pub const MIN: usize = 1 << balloc_concurrent::SMALLEST_K;

/// A pool with thread caches off, so every call hits the shared bitmaps. Under loom `size` may
/// be as small as 128 bytes (two smallest blocks); on real threads it rounds up to 2^MIN_K.
pub fn uncached(size: usize) -> ConcurrentPool {
    ConcurrentPool::builder()
        .size(size)
        .cache_capacity(0)
        .build()
        .expect("pool")
}

/// A pool whose threads cache one smallest block each (and nothing else): capacity 1, batch 1,
/// so refill, flush and retirement run on every cache miss or second free. Caching needs
/// `size >= 2^14` under loom: one order may cache at most 1/256 of the pool (config.rs).
pub fn cached(size: usize) -> ConcurrentPool {
    let pool = ConcurrentPool::builder()
        .size(size)
        .cached_orders(balloc_concurrent::SMALLEST_K..=balloc_concurrent::SMALLEST_K)
        .cache_capacity(1)
        .cache_batch(1)
        .build()
        .expect("pool");
    assert_eq!(
        pool.max_cached_bytes_per_thread(),
        MIN,
        "one cached block per thread"
    );
    pool
}

/// A block handed out by a pool, stamped with the thread that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    ptr: NonNull<u8>,
    size: usize,
    owner: usize,
}

// SAFETY: a block is plain pool memory, owned by whichever thread holds this value; the pool is
// `Sync`, and `free` may be called from any thread.
unsafe impl Send for Block {}

impl Block {
    /// Allocates `size` bytes for thread `owner` and stamps them. `None` on out-of-memory (any
    /// other error is a failed check).
    pub fn try_alloc(pool: &ConcurrentPool, size: usize, owner: usize) -> Option<Block> {
        match pool.alloc(size) {
            Ok(ptr) => {
                let b = Block { ptr, size, owner };
                b.stamp();
                Some(b)
            }
            Err(AllocError::OutOfMemory { .. }) => None,
            Err(e) => panic!("{BROKEN}: allocation of {size} B failed with {e:?}"),
        }
    }

    /// Allocates where the scenario's setup knows there is room.
    pub fn alloc(pool: &ConcurrentPool, size: usize, owner: usize) -> Block {
        Self::try_alloc(pool, size, owner)
            .unwrap_or_else(|| panic!("{BROKEN}: setup allocation of {size} B ran out of memory"))
    }

    /// The block's address.
    pub fn ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// The block's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    fn stamp_value(&self) -> usize {
        0xB10C_0000 | self.owner
    }

    fn words(&self) -> [*mut usize; 2] {
        let first = self.ptr.as_ptr().cast::<usize>();
        [
            first,
            first.wrapping_byte_add(self.size - size_of::<usize>()),
        ]
    }

    fn stamp(&self) {
        for w in self.words() {
            // SAFETY: the block is ours, at least 64 bytes, 64-aligned: both words are in it.
            unsafe { w.write_volatile(self.stamp_value()) };
        }
    }

    /// Checks that nobody else wrote into the block while we held it.
    pub fn check(&self) {
        for w in self.words() {
            // SAFETY: as in `stamp`.
            let v = unsafe { w.read_volatile() };
            assert_eq!(
                v,
                self.stamp_value(),
                "{BROKEN}: double hand-out: block {:p} ({} B) of thread {} was written by \
                 someone else",
                self.ptr,
                self.size,
                self.owner
            );
        }
    }

    /// Checks the contents, then frees the block through the validated path.
    pub fn free(self, pool: &ConcurrentPool) {
        self.check();
        if let Err(e) = pool.free(self.ptr) {
            panic!("{BROKEN}: free of held block {self:?} failed: {e:?}");
        }
    }

    /// Checks the contents, then resizes the block to `new_size` bytes through
    /// `GlobalAlloc::realloc` (in place when it can: same order, a shrink, or a grow over free
    /// buddies; else a new block and a copy). The first word must survive; the result is
    /// stamped again. `None` when the pool had no room for a moved block (the old one is then
    /// still held, and freed here).
    pub fn resize(self, pool: &ConcurrentPool, new_size: usize) -> Option<Block> {
        use core::alloc::GlobalAlloc;
        self.check();
        let old = core::alloc::Layout::from_size_align(self.size, 1).expect("layout");
        // SAFETY: the block is live in `pool`, allocated for a layout of this order.
        let p = unsafe { GlobalAlloc::realloc(pool, self.ptr.as_ptr(), old, new_size) };
        let Some(ptr) = NonNull::new(p) else {
            self.free(pool);
            return None;
        };
        // SAFETY: a live block of at least `new_size >= 64` bytes.
        let first = unsafe { ptr.as_ptr().cast::<usize>().read_volatile() };
        assert_eq!(
            first,
            self.stamp_value(),
            "{BROKEN}: a resize lost the block's contents"
        );
        let b = Block {
            ptr,
            size: new_size,
            owner: self.owner,
        };
        b.stamp();
        Some(b)
    }

    fn overlaps(&self, other: &Block) -> bool {
        let (a, b) = (self.ptr.as_ptr().addr(), other.ptr.as_ptr().addr());
        a < b + other.size && b < a + self.size
    }
}

/// Allocates every byte of the pool except its last smallest block, largest blocks first:
/// `kval - SMALLEST_K` blocks (half, quarter, …, 64 B).
pub fn fill_all_but_last_block(pool: &ConcurrentPool, owner: usize) -> Vec<Block> {
    (balloc_concurrent::SMALLEST_K..pool.kval())
        .rev()
        .map(|k| Block::alloc(pool, 1 << k, owner))
        .collect()
}

/// Checks, with no thread inside a call, that `held` are all the blocks callers hold:
/// `validate()` passes, no two held blocks overlap and none was overwritten, each is live at
/// its size, and every byte is in exactly one place
/// (`allocated_bytes + free_bytes + cached_bytes == size`, `allocated_bytes == Σ held`).
pub fn check_quiescent(pool: &ConcurrentPool, held: &[Block]) {
    if let Err(e) = pool.validate() {
        panic!("{BROKEN}: validate: {e}");
    }
    for (i, a) in held.iter().enumerate() {
        a.check();
        for b in &held[i + 1..] {
            assert!(
                !a.overlaps(b),
                "{BROKEN}: double hand-out: {a:?} overlaps {b:?}"
            );
        }
        assert_eq!(
            pool.usable_size(a.ptr),
            Some(a.size),
            "{BROKEN}: held block {a:?} is not live at its size"
        );
    }
    let s = pool.stats();
    assert_eq!(
        s.allocated_bytes + s.free_bytes + s.cached_bytes,
        s.size,
        "{BROKEN}: bytes in no place or in two: {s:?}"
    );
    let held_bytes: usize = held.iter().map(|b| b.size).sum();
    assert_eq!(
        s.allocated_bytes, held_bytes,
        "{BROKEN}: allocated_bytes disagrees with what callers hold: {s:?}"
    );
}

/// Frees `held`, returns this thread's cache, and checks that the pool is whole again: one free
/// block of the top order, nothing cached, `validate()` passing.
pub fn release_all(pool: &ConcurrentPool, held: Vec<Block>) {
    for b in held {
        b.free(pool);
    }
    pool.flush_thread_cache();
    let s = pool.stats();
    assert!(
        s.is_coalesced() && s.cached_bytes == 0 && s.allocated_bytes == 0,
        "{BROKEN}: the pool did not coalesce after every block came back: {s:?}"
    );
    if let Err(e) = pool.validate() {
        panic!("{BROKEN}: validate after all frees: {e}");
    }
}

/// [`check_quiescent`], then [`release_all`].
pub fn finish(pool: &ConcurrentPool, held: Vec<Block>) {
    check_quiescent(pool, &held);
    release_all(pool, held);
}

std::thread_local! {
    /// Per OS thread: loom runs all of one model's threads on the test's OS thread.
    static TOLERATED_OOMS: Cell<usize> = const { Cell::new(0) };
}

/// Records an out-of-memory that the scenario allows (another thread held the memory, in a
/// call or in its cache, during the whole allocation). Reported with the model's statistics.
pub fn tolerated_oom() {
    TOLERATED_OOMS.with(|c| c.set(c.get() + 1));
}

/// Takes this OS thread's count of tolerated out-of-memory results since the last call.
pub fn take_tolerated_ooms() -> usize {
    TOLERATED_OOMS.with(|c| c.replace(0))
}
