//! `concurrent_ops`: arbitrary operations on one `ConcurrentPool` from 2 to 4 threads at once.
//!
//! The input picks the pool's cache settings, the thread count, and a list of operations, each
//! tagged with the thread that runs it. The threads start together at a barrier and run their
//! own lists; a block can be handed to another thread through a shared `Mutex<Vec>` and freed
//! there. Thread interleaving is up to the OS, so a crash may need several runs to reproduce
//! (`-runs=1000 crash-file`).
//!
//! The threads are a crew kept from one input to the next ([`Crew`]), as a service's worker
//! threads are: starting and joining up to four threads per input cost more than most inputs'
//! operations. So each worker's implicit cache for the pool lives on after an input (emptied by
//! its `flush_thread_cache`), and a later pool finds the slot of a dropped one to reclaim.
//!
//! The pool is kept too while consecutive inputs ask for the same settings ([`KEPT`]): every
//! input still starts on a pool whose memory is one free block, but what the pool learned
//! before (which pages it has touched or handed back, its depot's shards, its purge clock)
//! carries over, as in a long-running service. A crash that needs that history reproduces
//! only after the inputs before it; run the crash file repeatedly, as for timing.
//!
//! Checked while the threads run: every call's error is the one the rules give (out-of-memory
//! cannot be predicted while others allocate, so only its order is checked); a block's bytes
//! hold its own byte until it is freed, whichever thread frees it; frees of garbage pointers
//! whose outcome cannot depend on other threads (misaligned, outside the pool, inside a block the
//! thread holds) fail with exactly that error.
//!
//! Checked after all threads are joined (each flushed its caches, and exit returns them too):
//! no cached bytes; `validate()`; the blocks still held tile nothing twice and match
//! `stats().allocated_bytes`; exact errors for interior frees and double frees of them; an
//! allocation fails if and only if `stats().largest_free_block` is too small; and after
//! everything is freed, `stats().is_coalesced()`.

#![no_main]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Barrier, Mutex, OnceLock};

use arbitrary::Arbitrary;
use balloc_concurrent::{AllocError, ConcurrentPool, FreeError, LocalCache, MIN_K, SMALLEST_K};
use balloc_core::btok;
use balloc_fuzz::{next_tag, Block, Size};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    /// 2 + threads % 3 threads.
    threads: u8,
    /// Pool of 2^21 bytes instead of 2^20.
    big: bool,
    /// Cached orders are `SMALLEST_K..=SMALLEST_K + cached % 11` (up to 16).
    cached: u8,
    /// Blocks per cached order per thread: `capacity % 65` (0 turns caches off).
    capacity: u8,
    /// Blocks moved per refill or flush: `1 + batch % 64`.
    batch: u8,
    /// Each operation with the thread that runs it (`thread % threads`).
    ops: Vec<(u8, Op)>,
}

/// Which entry point frees a block.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Via {
    /// `ConcurrentPool::free` (validated, through the thread's implicit cache).
    Pool,
    /// `LocalCache::free` (validated).
    Local,
    /// `ConcurrentPool::dealloc` with the allocation's layout (trusted).
    PoolDealloc,
    /// `LocalCache::dealloc` with the allocation's layout (trusted).
    LocalDealloc,
}

/// A pointer whose free must fail the same way whatever the other threads do.
#[derive(Arbitrary, Debug)]
enum Garbage {
    /// An offset inside the pool that is not a multiple of 64.
    Misaligned(u32),
    /// `n` bytes before the pool.
    Before(u16),
    /// `n` bytes past its end.
    After(u16),
    /// `delta % size` bytes into a block this thread holds (not its start).
    Interior { index: u16, delta: u32 },
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: Size,
        local: bool,
    },
    AllocLayout {
        size: Size,
        align_shift: u8,
        local: bool,
    },
    Free {
        index: u16,
        via: Via,
    },
    /// Hands one of this thread's blocks to whichever thread takes it.
    Pass {
        index: u16,
    },
    /// Takes a block handed over by any thread and frees it.
    Take {
        via: Via,
    },
    FreeGarbage(Garbage),
    /// `usable_size` of a block this thread holds.
    UsableSize {
        index: u16,
    },
    /// `flush_thread_cache`, or the handle's `flush`.
    Flush {
        local: bool,
    },
    Yield,
}

/// A block a thread holds, with the layout it was allocated with (for `dealloc`).
#[derive(Debug, Clone, Copy)]
struct Held {
    block: Block,
    layout: Layout,
}

/// What all threads share.
struct Shared<'p> {
    pool: &'p ConcurrentPool,
    /// Blocks in transit from one thread to another.
    passed: Mutex<Vec<Held>>,
    start: Barrier,
    /// The pool's first byte.
    base: usize,
}

/// One thread's state.
struct Worker<'s, 'p> {
    shared: &'s Shared<'p>,
    local: LocalCache<'p>,
    held: Vec<Held>,
    tag: u8,
}

impl Worker<'_, '_> {
    fn pool(&self) -> &ConcurrentPool {
        self.shared.pool
    }

    /// Records an allocation, or checks its error. Out-of-memory is legal for any order that
    /// fits the pool: other threads may hold the memory.
    fn allocated(
        &mut self,
        r: Result<NonNull<u8>, AllocError>,
        k: Result<u32, AllocError>,
        layout: Layout,
    ) {
        match (r, k) {
            (Ok(p), Ok(k)) => {
                assert_eq!(
                    p.as_ptr().addr() % layout.align(),
                    0,
                    "aligned to {}",
                    layout.align()
                );
                assert_eq!(p.as_ptr().addr() % (1 << k), 0, "aligned to its size 2^{k}");
                assert!(self.pool().contains(p.as_ptr()), "inside the pool");
                self.tag = next_tag(self.tag);
                // SAFETY: just allocated to this thread, 2^k bytes.
                let block = unsafe { Block::fill(p, k, self.tag) };
                self.held.push(Held { block, layout });
            }
            (Err(AllocError::OutOfMemory { order }), Ok(k)) => assert_eq!(order, k),
            (r, k) => assert_eq!(r.map(|_| ()), k.map(|_| ()), "allocation outcome"),
        }
    }

    /// The order a request must get, or the error it must fail with (other than out-of-memory).
    fn expected(&self, bytes: usize, align: usize) -> Result<u32, AllocError> {
        let k = btok(bytes.max(align));
        if bytes == 0 {
            Err(AllocError::ZeroSize)
        } else if align > self.pool().size() {
            Err(AllocError::AlignmentTooLarge { align })
        } else if k > self.pool().kval() {
            Err(AllocError::TooLarge { requested: bytes })
        } else {
            Ok(k)
        }
    }

    fn free(&self, h: Held, via: Via) {
        // SAFETY: this thread holds the block.
        unsafe { h.block.check("before free") };
        match via {
            Via::Pool => assert_eq!(self.pool().free(h.block.ptr), Ok(())),
            Via::Local => assert_eq!(self.local.free(h.block.ptr), Ok(())),
            // SAFETY: the block was allocated from this pool with `h.layout` and is freed once
            // (this thread holds it and drops it from its list).
            Via::PoolDealloc => unsafe { self.pool().dealloc(h.block.ptr, h.layout) },
            // SAFETY: as above.
            Via::LocalDealloc => unsafe { self.local.dealloc(h.block.ptr, h.layout) },
        }
    }

    fn run(&mut self, op: &Op) {
        let size = self.pool().size();
        match *op {
            Op::Alloc { size: s, local } => {
                let bytes = s.bytes(size);
                let Ok(layout) = Layout::from_size_align(bytes, 1) else {
                    return;
                };
                let r = if local {
                    self.local.alloc(bytes)
                } else {
                    self.pool().alloc(bytes)
                };
                let want = self.expected(bytes, 1);
                self.allocated(r, want, layout);
            }
            Op::AllocLayout {
                size: s,
                align_shift,
                local,
            } => {
                let bytes = s.bytes(size);
                let Ok(layout) = Layout::from_size_align(bytes, 1 << (align_shift % 24)) else {
                    return;
                };
                let r = if local {
                    self.local.alloc_layout(layout)
                } else {
                    self.pool().alloc_layout(layout)
                };
                let want = self.expected(bytes, layout.align());
                self.allocated(r, want, layout);
            }
            Op::Free { index, via } if !self.held.is_empty() => {
                let h = self.held.swap_remove(index as usize % self.held.len());
                self.free(h, via);
            }
            Op::Pass { index } if !self.held.is_empty() => {
                let h = self.held.swap_remove(index as usize % self.held.len());
                self.shared.passed.lock().unwrap().push(h);
            }
            Op::Take { via } => {
                let h = self.shared.passed.lock().unwrap().pop();
                if let Some(h) = h {
                    self.free(h, via);
                }
            }
            Op::FreeGarbage(ref g) => self.free_garbage(g),
            Op::UsableSize { index } if !self.held.is_empty() => {
                let h = self.held[index as usize % self.held.len()];
                assert_eq!(self.pool().usable_size(h.block.ptr), Some(h.block.len()));
            }
            Op::Flush { local: true } => self.local.flush(),
            Op::Flush { local: false } => self.pool().flush_thread_cache(),
            Op::Yield => std::thread::yield_now(),
            Op::Free { .. } | Op::Pass { .. } | Op::UsableSize { .. } => {}
        }
    }

    fn free_garbage(&self, g: &Garbage) {
        let size = self.pool().size();
        // Garbage pointers are only compared by the pool, never dereferenced: no provenance.
        let base = std::ptr::without_provenance_mut::<u8>(self.shared.base);
        let (p, want) = match *g {
            Garbage::Misaligned(off) => {
                let off = off as usize % size;
                let off = if off.is_multiple_of(64) { off + 1 } else { off };
                (base.wrapping_add(off), FreeError::Misaligned)
            }
            Garbage::Before(n) => (base.wrapping_sub(1 + n as usize), FreeError::OutOfPool),
            Garbage::After(n) => (base.wrapping_add(size + n as usize), FreeError::OutOfPool),
            Garbage::Interior { index, delta } => {
                let Some(h) = self.held.get(index as usize % self.held.len().max(1)) else {
                    return;
                };
                let delta = delta as usize % h.block.len();
                let want = match delta {
                    0 => return,
                    d if d % (1 << SMALLEST_K) != 0 => FreeError::Misaligned,
                    _ => FreeError::Interior,
                };
                (h.block.ptr.as_ptr().wrapping_add(delta), want)
            }
        };
        let Some(p) = NonNull::new(p) else { return };
        assert_eq!(self.pool().free(p), Err(want), "free({p:p})");
        assert_eq!(self.local.free(p), Err(want), "local free({p:p})");
        assert_eq!(self.pool().usable_size(p), None);
    }
}

/// Threads kept across inputs: each takes jobs from its own channel, in order.
struct Crew {
    workers: Vec<Mutex<Sender<Job>>>,
}

/// A job for one worker: runs the input's list for that thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The most threads an input uses.
const MAX_THREADS: usize = 4;

impl Crew {
    fn get() -> &'static Crew {
        static CREW: OnceLock<Crew> = OnceLock::new();
        CREW.get_or_init(|| Crew {
            workers: (0..MAX_THREADS)
                .map(|_| {
                    let (tx, rx): (Sender<Job>, Receiver<Job>) = channel();
                    std::thread::spawn(move || {
                        for job in rx {
                            job();
                        }
                    });
                    Mutex::new(tx)
                })
                .collect(),
        })
    }

    /// Runs `work(i)` on workers `0..n` at once and returns their results in order, after all
    /// of them have finished; a panic in any of them is resumed here.
    fn run<R: Send>(&self, n: usize, work: &(dyn Fn(usize) -> R + Sync)) -> Vec<R> {
        let (done_tx, done_rx) = channel();
        for i in 0..n {
            let done_tx = done_tx.clone();
            let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(i)));
                // The receiver waits for every job below, so this send cannot fail.
                let _ = done_tx.send((i, r));
            });
            // SAFETY: the job borrows `work` (and what it borrows) for less than `'static`, but
            // this function does not return before every job has sent its result, and a job
            // touches nothing after that send (its panics are caught and sent too), so no
            // borrow outlives this call.
            let job: Job =
                unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + '_>, Job>(job) };
            self.workers[i]
                .lock()
                .unwrap()
                .send(job)
                .expect("crew workers never exit");
        }
        drop(done_tx);
        let mut results: Vec<Option<R>> = (0..n).map(|_| None).collect();
        let mut panic = None;
        for _ in 0..n {
            let (i, r) = done_rx.recv().expect("every job sends its result");
            match r {
                Ok(v) => results[i] = Some(v),
                Err(e) => panic = Some(e),
            }
        }
        if let Some(e) = panic {
            std::panic::resume_unwind(e);
        }
        results
            .into_iter()
            .map(|r| r.expect("a result per job"))
            .collect()
    }
}

/// After the threads: the pool is quiescent, so every outcome is exact.
fn check_quiescent(pool: &ConcurrentPool, mut held: Vec<Held>) {
    let stats = pool.stats();
    assert_eq!(
        stats.cached_bytes, 0,
        "threads ended and flushed: {stats:?}"
    );
    if let Err(e) = pool.validate() {
        panic!("validate after join: {e}");
    }
    held.sort_unstable_by_key(|h| h.block.addr());
    for w in held.windows(2) {
        assert!(
            w[0].block.addr() + w[0].block.len() <= w[1].block.addr(),
            "blocks held by two threads overlap: {:?} and {:?}",
            w[0].block,
            w[1].block
        );
    }
    let held_bytes: usize = held.iter().map(|h| h.block.len()).sum();
    assert_eq!(
        stats.allocated_bytes, held_bytes,
        "allocated bytes after join"
    );
    assert_eq!(stats.allocated_bytes + stats.free_bytes, pool.size());

    // Out-of-memory exactly when no free block is large enough (nothing is cached now).
    let largest = stats.largest_free_block;
    if largest > 0 && largest < pool.size() {
        assert_eq!(
            pool.alloc(2 * largest),
            Err(AllocError::OutOfMemory {
                order: btok(2 * largest)
            }),
            "no free block of {} bytes",
            2 * largest
        );
    }
    if largest > 0 {
        let p = pool
            .alloc(largest)
            .expect("a free block of `largest` bytes exists");
        pool.free(p).unwrap();
    } else {
        assert_eq!(
            pool.alloc(1),
            Err(AllocError::OutOfMemory { order: SMALLEST_K })
        );
    }
    pool.flush_thread_cache();

    for h in &held {
        let b = h.block;
        // SAFETY: the threads are joined; the blocks they left are ours now.
        unsafe { b.check("after join") };
        assert_eq!(pool.usable_size(b.ptr), Some(b.len()));
        if b.len() > 64 {
            let inner = NonNull::new(b.ptr.as_ptr().wrapping_add(64)).unwrap();
            assert_eq!(pool.free(inner), Err(FreeError::Interior));
        }
        assert_eq!(pool.free(b.ptr), Ok(()));
        // Nothing else allocates now, so the block stays free (in this thread's cache or the
        // bitmaps): a second free is a double free.
        assert_eq!(pool.free(b.ptr), Err(FreeError::DoubleFree));
    }
    pool.flush_thread_cache();
    // A block in a thread cache counts as allocated for `usable_size`; after the flush, none is.
    for h in &held {
        assert_eq!(pool.usable_size(h.block.ptr), None, "freed and flushed");
    }
    let stats = pool.stats();
    assert!(
        stats.is_coalesced(),
        "everything freed and flushed: {stats:?}"
    );
    if let Err(e) = pool.validate() {
        panic!("validate at the end: {e}");
    }
}

/// A pool's settings, as an input picks them.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Settings {
    size: usize,
    cached: u32,
    capacity: usize,
    batch: usize,
}

impl Settings {
    fn of(input: &Input) -> Self {
        Self {
            size: 1usize << (MIN_K + u32::from(input.big)),
            cached: u32::from(input.cached % 11),
            capacity: usize::from(input.capacity % 65),
            batch: 1 + usize::from(input.batch % 64),
        }
    }

    fn build(self) -> ConcurrentPool {
        ConcurrentPool::builder()
            .size(self.size)
            .cached_orders(SMALLEST_K..=SMALLEST_K + self.cached)
            .cache_capacity(self.capacity)
            .cache_batch(self.batch)
            .build()
            .expect("a pool of at most 2 MiB")
    }
}

std::thread_local! {
    /// The last input's pool, whole again (`check_quiescent` passed), kept for the next input
    /// if that one asks for the same settings (the fuzzer mutates an input's operations more
    /// often than its first bytes). A new pool per input spent about half of the run time in
    /// the kernel: mapping it, the page faults of its first use, unmapping it.
    static KEPT: std::cell::RefCell<Option<(Settings, ConcurrentPool)>> =
        const { std::cell::RefCell::new(None) };
}

fuzz_target!(|input: Input| {
    let threads = 2 + usize::from(input.threads % 3);
    let settings = Settings::of(&input);
    let size = settings.size;
    let kept = KEPT
        .with(|k| k.borrow_mut().take())
        .filter(|(kept, _)| *kept == settings);
    let pool = match kept {
        // The input that left it checked `stats().is_coalesced()` last.
        Some((_, pool)) => pool,
        None => {
            let pool = settings.build();
            assert!(pool.stats().is_coalesced());
            pool
        }
    };
    assert_eq!(pool.size(), size);

    // The whole-pool block starts at the pool's first byte.
    let whole = pool.alloc(size).expect("a new pool is one free block");
    pool.free(whole).unwrap();
    let shared = Shared {
        base: whole.as_ptr().addr(),
        pool: &pool,
        passed: Mutex::new(Vec::new()),
        start: Barrier::new(threads),
    };
    let mut lists: Vec<Vec<&Op>> = vec![Vec::new(); threads];
    for (t, op) in &input.ops {
        lists[usize::from(*t) % threads].push(op);
    }
    let work = |t: usize| {
        let shared = &shared;
        let mut w = Worker {
            shared,
            local: shared.pool.local(),
            held: Vec::new(),
            tag: 0,
        };
        shared.start.wait();
        for op in &lists[t] {
            w.run(op);
        }
        w.local.flush();
        shared.pool.flush_thread_cache();
        w.held
    };
    let mut held: Vec<Held> = Crew::get()
        .run(threads, &work)
        .into_iter()
        .flatten()
        .collect();
    held.append(&mut shared.passed.lock().unwrap());
    drop(shared);
    check_quiescent(&pool, held);
    KEPT.with(|k| *k.borrow_mut() = Some((settings, pool)));
});
