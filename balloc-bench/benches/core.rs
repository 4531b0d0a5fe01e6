//! `balloc_core::BuddyPool` against `buddy_system_allocator` 0.13's `Heap<32>`, single-threaded,
//! over the same 16 MiB region size:
//!
//! - `core/pair-64`: alloc + free of 64 B in a loop;
//! - `core/batch`: 1,000 allocs of sizes cycling 64..4096 (each power of two in turn), then the
//!   1,000 frees in allocation order;
//! - `core/free-shuffled`: 10,000 live 64 B blocks freed in a fixed-seed random order; only the
//!   frees are timed.
//!
//! The Heap's region is reserved like the pool's (lazily, aligned to its size), so both start as
//! one free block of order 24. Both get the same requests: the Heap a `Layout` with alignment 8
//! (what its callers pass), the pool the size.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use core::alloc::Layout;
use core::hint::black_box;
use core::ptr::NonNull;
use std::time::{Duration, Instant};

use balloc_bench::rng::Rng;
use balloc_bench::workload::{BATCH_LEN, BATCH_SIZES};
use balloc_core::internal::Mapping;
use balloc_core::BuddyPool;
use buddy_system_allocator::Heap;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Region size for both allocators: 16 MiB, room for the 10,000 live blocks and the batch.
const REGION: usize = 1 << 24;
/// Live blocks in `free-shuffled`.
const SHUFFLED: usize = 10_000;

/// The two allocators behind one face.
trait Single {
    fn alloc(&mut self, size: usize) -> NonNull<u8>;
    fn free(&mut self, ptr: NonNull<u8>, size: usize);
}

impl Single for BuddyPool {
    #[inline]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        BuddyPool::alloc(self, size).expect("pool alloc")
    }

    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, _size: usize) {
        BuddyPool::free(self, ptr).expect("pool free");
    }
}

/// `Heap<32>` over its own region (the region outlives the heap: fields drop in order).
struct BsaHeap {
    heap: Heap<32>,
    _region: Mapping,
}

impl BsaHeap {
    fn new() -> Self {
        let region = Mapping::reserve(REGION, REGION).expect("reserve the heap region");
        let mut heap = Heap::<32>::new();
        // SAFETY: the region is REGION writable bytes that nothing else uses, and it lives as
        // long as `heap` (both are fields of the returned value; `heap` drops first).
        unsafe { heap.init(region.as_ptr().as_ptr().addr(), REGION) };
        Self {
            heap,
            _region: region,
        }
    }
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 8).expect("valid layout")
}

impl Single for BsaHeap {
    #[inline]
    fn alloc(&mut self, size: usize) -> NonNull<u8> {
        self.heap.alloc(layout(size)).expect("heap alloc")
    }

    #[inline]
    fn free(&mut self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: `ptr` came from `alloc(size)` of this heap, so with `layout(size)`, and the
        // benches free each block once.
        unsafe { self.heap.dealloc(ptr, layout(size)) }
    }
}

fn each<F: FnMut(&str, &mut dyn Single)>(mut f: F) {
    f(
        "BuddyPool",
        &mut BuddyPool::new(REGION).expect("reserve the pool"),
    );
    f("Heap<32>", &mut BsaHeap::new());
}

fn pair_64(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/pair-64");
    group.throughput(Throughput::Elements(1));
    each(|name, a| {
        group.bench_function(name, |b| {
            b.iter(|| {
                let p = a.alloc(black_box(64));
                a.free(black_box(p), 64);
            })
        });
    });
    group.finish();
}

fn batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/batch");
    group.throughput(Throughput::Elements(BATCH_LEN as u64));
    each(|name, a| {
        let mut live = Vec::with_capacity(BATCH_LEN);
        group.bench_function(name, |b| {
            b.iter(|| {
                for i in 0..BATCH_LEN {
                    let size = BATCH_SIZES[i % BATCH_SIZES.len()];
                    live.push((a.alloc(black_box(size)), size));
                }
                for (p, size) in live.drain(..) {
                    a.free(black_box(p), size);
                }
            })
        });
    });
    group.finish();
}

fn free_shuffled(c: &mut Criterion) {
    let mut group = c.benchmark_group("core/free-shuffled");
    group.throughput(Throughput::Elements(SHUFFLED as u64));
    group.sample_size(20);
    let mut order: Vec<usize> = (0..SHUFFLED).collect();
    Rng::new(0x5EED, 0).shuffle(&mut order);
    each(|name, a| {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let blocks: Vec<NonNull<u8>> = (0..SHUFFLED).map(|_| a.alloc(64)).collect();
                    let start = Instant::now();
                    for &i in &order {
                        a.free(black_box(blocks[i]), 64);
                    }
                    total += start.elapsed();
                }
                total
            })
        });
    });
    group.finish();
}

criterion_group!(benches, pair_64, batch, free_shuffled);
criterion_main!(benches);
