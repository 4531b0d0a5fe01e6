//! Runs `N` alloc + free pairs of one size on one allocator, for counting instructions with
//! callgrind (`balloc-bench/callgrind.sh` does the counting and the subtraction).
//!
//! ```text
//! callgrind_pair <allocator> <iterations> [size]
//! ```
//! Allocators: `buddy-pool`, `heap` (buddy_system_allocator `Heap<32>`), `balloc-local`,
//! `balloc-global`, `system`, `mimalloc`, `jemalloc`. (snmalloc aborts under valgrind.)
//!
//! `buddy-pool-batch` and `heap-batch` run `core/batch` from `benches/core.rs` instead: rounds
//! of [`BATCH_LEN`] allocs of sizes cycling through [`BATCH_SIZES`] (`size` is ignored), then
//! the frees in allocation order; `iterations` counts alloc + free pairs (a multiple of
//! `BATCH_LEN`), so the script's result is again instructions per pair.
//!
//! `balloc-pc-local` is the `producer-consumer` workload on one thread: one `ConcurrentPool`, two
//! `LocalCache`s, a producer and a consumer. The producer allocates a burst of [`BURST`]
//! blocks of `size`, the consumer frees them in order, and so on; `iterations` counts alloc +
//! free pairs. The producer's cache only ever empties and the consumer's only fills, so blocks
//! reach the producer again through the depot (or the bitmaps), as between two threads, while
//! callgrind, which runs one thread at a time, counts every instruction. There is no
//! `balloc-pc-global`: through `GlobalAlloc` a thread has one implicit cache per pool, so on
//! one thread both ends would be that one cache, and the loop would be a plain pair loop
//! (`balloc-global`), not a hand-over.
//!
//! Both the pool and the heap manage 16 MiB, as in `benches/core.rs`. Setup differs per
//! allocator, so the script runs two iteration counts and divides the difference.
//!
//! The cost of running out of memory (`src/bin/exhaustion.rs` times the same calls): on a
//! 16 MiB `ConcurrentPool` made full by `balloc_bench::exhaust::fill`, `full-pool` makes
//! `iterations` failing `pool.alloc(size)` calls and `full-local` failing `LocalCache::alloc(size)`
//! calls; `full-global` makes alloc + free pairs through a `GlobalPool` whose pool is full, so
//! its system fallback serves them (compare with `system`).

use core::alloc::{GlobalAlloc, Layout};
use core::hint::black_box;
use core::ptr::NonNull;

use balloc_bench::exhaust::fill;
use balloc_bench::workload::{BATCH_LEN, BATCH_SIZES};
use balloc_concurrent::{ConcurrentPool, GlobalPool};
use balloc_core::internal::Mapping;
use balloc_core::BuddyPool;

const REGION: usize = 1 << 24;

/// `balloc-pc-local`: blocks the producer allocates before the consumer frees them.
const BURST: usize = 32;

/// The measured loop, the same for every allocator: `alloc` and `free` are inlined into it.
#[inline(never)]
fn pairs(
    n: u64,
    size: usize,
    mut alloc: impl FnMut(usize) -> NonNull<u8>,
    mut free: impl FnMut(NonNull<u8>, usize),
) {
    for _ in 0..n {
        let p = alloc(black_box(size));
        free(black_box(p), size);
    }
}

/// The failing calls' loop: `alloc` must fail every time.
#[inline(never)]
fn fails<T, E>(n: u64, size: usize, mut alloc: impl FnMut(usize) -> Result<T, E>) {
    for _ in 0..n {
        assert!(
            black_box(alloc(black_box(size))).is_err(),
            "an allocation succeeded on a full pool"
        );
    }
}

/// `core/batch`'s loop: `n / BATCH_LEN` rounds of `BATCH_LEN` allocs, then their frees in order.
#[inline(never)]
fn batches(
    n: u64,
    mut alloc: impl FnMut(usize) -> NonNull<u8>,
    mut free: impl FnMut(NonNull<u8>, usize),
) {
    let mut live = Vec::with_capacity(BATCH_LEN);
    for _ in 0..n / BATCH_LEN as u64 {
        for i in 0..BATCH_LEN {
            let size = BATCH_SIZES[i % BATCH_SIZES.len()];
            live.push((alloc(black_box(size)), size));
        }
        for (p, size) in live.drain(..) {
            free(black_box(p), size);
        }
    }
}

/// The one-thread producer-consumer loop: bursts of [`BURST`] `produce` calls, each burst
/// then freed in order by `consume`; `n` pairs in all (the last burst shorter if need be).
#[inline(never)]
fn bursts(
    n: u64,
    size: usize,
    mut produce: impl FnMut(usize) -> NonNull<u8>,
    mut consume: impl FnMut(NonNull<u8>, usize),
) {
    let mut burst = Vec::with_capacity(BURST);
    let mut left = n;
    while left > 0 {
        let len = left.min(BURST as u64);
        for _ in 0..len {
            burst.push(produce(black_box(size)));
        }
        for p in burst.drain(..) {
            consume(black_box(p), size);
        }
        left -= len;
    }
}

/// `Layout` for `size` bytes with alignment 8, as the peers are asked.
fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

/// A `Heap<32>` managing all of `region`; the caller keeps `region` alive longer than the heap.
fn heap_over(region: &Mapping) -> std::cell::RefCell<buddy_system_allocator::Heap<32>> {
    let mut heap = buddy_system_allocator::Heap::<32>::new();
    // SAFETY: the region is REGION writable bytes that nothing else uses, and the caller keeps
    // it alive while the heap is used (declared before the heap, so dropped after).
    unsafe { heap.init(region.as_ptr().as_ptr().addr(), REGION) };
    std::cell::RefCell::new(heap)
}

fn global<A: GlobalAlloc>(a: &A, n: u64, size: usize) {
    pairs(
        n,
        size,
        // SAFETY: the size is non-zero.
        |s| NonNull::new(unsafe { a.alloc(layout(s)) }).expect("alloc"),
        // SAFETY: `p` came from `a.alloc(layout(s))` just now and is freed once.
        |p, s| unsafe { a.dealloc(p.as_ptr(), layout(s)) },
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: callgrind_pair <buddy-pool|heap|buddy-pool-batch|heap-batch|balloc-local|balloc-global|balloc-pc-local|system|mimalloc|jemalloc|full-pool|full-local|full-global> <iterations> [size]";
    let which = args.next().expect(usage);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let size: usize = args.next().map_or(64, |s| s.parse().expect(usage));
    match which.as_str() {
        "buddy-pool" => {
            let mut pool = BuddyPool::new(REGION).expect("reserve the pool");
            let pool = std::cell::RefCell::new(&mut pool);
            pairs(
                n,
                size,
                |s| pool.borrow_mut().alloc(s).expect("alloc"),
                |p, _| pool.borrow_mut().free(p).expect("free"),
            );
        }
        "buddy-pool-batch" => {
            let mut pool = BuddyPool::new(REGION).expect("reserve the pool");
            let pool = std::cell::RefCell::new(&mut pool);
            batches(
                n,
                |s| pool.borrow_mut().alloc(s).expect("alloc"),
                |p, _| pool.borrow_mut().free(p).expect("free"),
            );
        }
        "heap-batch" => {
            let region = Mapping::reserve(REGION, REGION).expect("reserve the region");
            let heap = heap_over(&region);
            batches(
                n,
                |s| heap.borrow_mut().alloc(layout(s)).expect("alloc"),
                // SAFETY: `p` came from this heap with `layout(s)` and is freed once.
                |p, s| unsafe { heap.borrow_mut().dealloc(p, layout(s)) },
            );
        }
        "heap" => {
            let region = Mapping::reserve(REGION, REGION).expect("reserve the region");
            let heap = heap_over(&region);
            pairs(
                n,
                size,
                |s| heap.borrow_mut().alloc(layout(s)).expect("alloc"),
                // SAFETY: `p` came from this heap with `layout(s)` just now and is freed once.
                |p, s| unsafe { heap.borrow_mut().dealloc(p, layout(s)) },
            );
        }
        "balloc-local" => {
            let pool = ConcurrentPool::new(REGION).expect("reserve the pool");
            // `LocalCache` takes `&self`: no `RefCell` (whose borrow flag would cost the loop
            // 8 instructions per pair that are not the allocator's).
            let local = pool.local();
            pairs(
                n,
                size,
                |s| local.alloc_layout(layout(s)).expect("alloc"),
                // SAFETY: `p` came from this cache with `layout(s)` just now and is freed once.
                |p, s| unsafe { local.dealloc(p, layout(s)) },
            );
        }
        "balloc-pc-local" => {
            let pool = ConcurrentPool::new(REGION).expect("reserve the pool");
            let (producer, consumer) = (pool.local(), pool.local());
            bursts(
                n,
                size,
                |s| producer.alloc_layout(layout(s)).expect("alloc"),
                // SAFETY: `p` came from this pool with `layout(s)` and is freed once.
                |p, s| unsafe { consumer.dealloc(p, layout(s)) },
            );
        }
        "balloc-global" => global(
            &ConcurrentPool::new(REGION).expect("reserve the pool"),
            n,
            size,
        ),
        "full-pool" => {
            let pool = ConcurrentPool::new(REGION).expect("reserve the pool");
            let _held = fill(&pool);
            fails(n, size, |s| pool.alloc(s));
        }
        "full-local" => {
            let pool = ConcurrentPool::new(REGION).expect("reserve the pool");
            let _held = fill(&pool);
            let local = pool.local();
            fails(n, size, |s| local.alloc(s));
        }
        "full-global" => {
            let gp = GlobalPool::new(REGION);
            // The first allocation builds the pool; then it is filled.
            global(&gp, 1, size);
            let _held = fill(gp.pool().expect("the GlobalPool built its pool"));
            global(&gp, n, size);
        }
        "system" => global(&std::alloc::System, n, size),
        "mimalloc" => global(&mimalloc::MiMalloc, n, size),
        "jemalloc" => global(&tikv_jemallocator::Jemalloc, n, size),
        other => panic!("unknown allocator {other:?}; {usage}"),
    }
}
