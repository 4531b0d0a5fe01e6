//! The one interface every allocator under test is driven through, and the adapters for the
//! peers.
//!
//! An allocator is shared by all threads ([`BenchAlloc`], `Sync`); each thread works through its
//! own handle ([`LocalAlloc`]), which is where balloc's per-thread [`LocalCache`] lives. For the
//! `GlobalAlloc` peers the handle is just a reference. Every free passes the allocation's
//! `Layout`, as `GlobalAlloc::dealloc` gets it; an adapter whose allocator validates frees
//! ignores it.
//!
//! [`LocalCache`]: https://docs.rs/balloc-concurrent

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use std::sync::Mutex;

use balloc_core::internal::Mapping;
use balloc_core::BuddyPool;

/// An allocator under test, shared by the threads of a run.
pub trait BenchAlloc: Sync {
    /// A thread's handle on the allocator.
    type Local<'a>: LocalAlloc
    where
        Self: 'a;

    /// False only for the ring-only stand-in, whose "blocks" must never be touched.
    const REAL: bool = true;

    /// A handle for the calling thread.
    fn local(&self) -> Self::Local<'_>;

    /// Bytes the allocator itself counts as allocated (whole blocks), where it can say.
    fn allocated_bytes(&self) -> Option<usize> {
        None
    }
}

/// One thread's way into a [`BenchAlloc`].
pub trait LocalAlloc {
    /// A block that fits `layout`, or `None` when the allocator refuses (counted as an error).
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>>;

    /// Gives a block back. The block may have come from another thread's handle.
    ///
    /// # Safety
    /// - `ptr` was returned by `alloc(layout)` of a handle of the same allocator,
    /// - and has not been given back since.
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout);
}

/// A block in flight between threads: the pointer and the layout it was allocated with.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    /// Start of the block.
    pub ptr: NonNull<u8>,
    /// The layout it was allocated with.
    pub layout: Layout,
}

// SAFETY: a `Block` is an owned allocation handed from one thread to another; every allocator
// under test allows a block to be freed by a thread other than the one that allocated it.
unsafe impl Send for Block {}

/// Any `GlobalAlloc` (the system allocator, mimalloc, jemalloc, snmalloc, LockedHeap, balloc's
/// `ConcurrentPool`) driven through `GlobalAlloc` directly, as `#[global_allocator]` would be.
#[derive(Debug, Default)]
pub struct Global<A>(pub A);

impl<A: GlobalAlloc + Sync> BenchAlloc for Global<A> {
    type Local<'a>
        = &'a A
    where
        Self: 'a;

    fn local(&self) -> &A {
        &self.0
    }
}

impl<A: GlobalAlloc> LocalAlloc for &A {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: every layout the workloads use has a non-zero size.
        NonNull::new(unsafe { GlobalAlloc::alloc(*self, layout) })
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout` and is live.
        unsafe { GlobalAlloc::dealloc(*self, ptr.as_ptr(), layout) }
    }
}

/// balloc's single-threaded core under one `std::sync::Mutex`: what a user gets without
/// `balloc-concurrent`. Frees go through the validated `BuddyPool::free`.
#[derive(Debug)]
pub struct MutexBuddy(pub Mutex<BuddyPool>);

impl MutexBuddy {
    /// A pool of `size` bytes (lazily reserved).
    ///
    /// # Panics
    /// When the OS refuses the reservation.
    pub fn new(size: usize) -> Self {
        Self(Mutex::new(
            BuddyPool::new(size).expect("reserve the BuddyPool"),
        ))
    }
}

impl BenchAlloc for MutexBuddy {
    type Local<'a> = &'a MutexBuddy;

    fn local(&self) -> &MutexBuddy {
        self
    }

    fn allocated_bytes(&self) -> Option<usize> {
        Some(self.0.lock().unwrap().stats().allocated_bytes)
    }
}

impl LocalAlloc for &MutexBuddy {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.0.lock().unwrap().alloc_layout(layout).ok()
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, _layout: Layout) {
        self.0
            .lock()
            .unwrap()
            .free(ptr)
            .expect("BuddyPool rejected a free that the workload believes valid");
    }
}

/// `buddy_system_allocator` 0.13's `LockedHeap<32>` (a spin lock over its `Heap`), over a
/// region reserved like a `BuddyPool`'s: lazily, aligned to its own size, so it starts as one
/// free block of the top order.
pub struct LockedBuddyHeap {
    heap: buddy_system_allocator::LockedHeap<32>,
    /// Declared after `heap`: the region outlives every use of it.
    _region: Mapping,
}

impl core::fmt::Debug for LockedBuddyHeap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LockedBuddyHeap").finish_non_exhaustive()
    }
}

impl LockedBuddyHeap {
    /// A heap over a fresh region of `size` bytes (a power of two).
    ///
    /// # Panics
    /// When the OS refuses the reservation.
    pub fn new(size: usize) -> Self {
        let region = Mapping::reserve(size, size).expect("reserve the heap region");
        let heap = buddy_system_allocator::LockedHeap::<32>::new();
        // SAFETY: the region is `size` writable bytes that nothing else uses, and it lives as
        // long as `heap` (both are fields of the returned value; `heap` drops first).
        unsafe { heap.lock().init(region.as_ptr().as_ptr().addr(), size) };
        Self {
            heap,
            _region: region,
        }
    }
}

impl BenchAlloc for LockedBuddyHeap {
    type Local<'a> = &'a buddy_system_allocator::LockedHeap<32>;

    fn local(&self) -> &buddy_system_allocator::LockedHeap<32> {
        &self.heap
    }

    fn allocated_bytes(&self) -> Option<usize> {
        Some(self.heap.lock().stats_alloc_actual())
    }
}

/// Not an allocator: hands out dangling, never-touched pointers, so that a workload run over it
/// measures its own overhead (the producer-consumer ring) alone.
#[derive(Debug, Default)]
pub struct RingOnly;

impl BenchAlloc for RingOnly {
    type Local<'a> = RingOnly;
    const REAL: bool = false;

    fn local(&self) -> RingOnly {
        RingOnly
    }
}

impl LocalAlloc for RingOnly {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        // A dangling pointer: `BenchAlloc::REAL` is false, so no workload dereferences it.
        NonNull::new(core::ptr::without_provenance_mut(layout.align()))
    }

    #[inline]
    unsafe fn dealloc(&mut self, _ptr: NonNull<u8>, _layout: Layout) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<A: BenchAlloc>(a: &A) {
        let mut local = a.local();
        let layout = Layout::from_size_align(100, 8).unwrap();
        let p = local.alloc(layout).expect("alloc");
        if A::REAL {
            // SAFETY: `p` is a live block of at least 100 bytes.
            unsafe { p.as_ptr().write_bytes(0xA5, 100) };
        }
        // SAFETY: `p` came from `local.alloc(layout)` and is live.
        unsafe { local.dealloc(p, layout) };
    }

    #[test]
    fn every_adapter_round_trips() {
        round_trip(&Global(std::alloc::System));
        round_trip(&MutexBuddy::new(1 << 20));
        round_trip(&LockedBuddyHeap::new(1 << 20));
        round_trip(&RingOnly);
    }

    #[test]
    fn pool_adapters_report_allocated_bytes() {
        let m = MutexBuddy::new(1 << 20);
        let mut l = m.local();
        let layout = Layout::from_size_align(100, 8).unwrap();
        let p = l.alloc(layout).unwrap();
        assert_eq!(m.allocated_bytes(), Some(128));
        // SAFETY: `p` came from `l.alloc(layout)` and is live.
        unsafe { l.dealloc(p, layout) };
        assert_eq!(m.allocated_bytes(), Some(0));
    }
}
