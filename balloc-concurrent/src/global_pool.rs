//! [`GlobalPool`]: a lazily built pool usable as `#[global_allocator]`, with the system
//! allocator behind it.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};
use std::alloc::System;

use balloc_core::Stats;

use crate::owned_counters::OwnedCounters;
use crate::pool::ConcurrentPool;

/// A snapshot of a [`GlobalPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalPoolStats {
    /// The pool's own statistics; `None` before its first allocation built it (or if building
    /// it failed).
    pub pool: Option<Stats>,
    /// Allocations the system allocator served instead (too large, out of memory, or before
    /// the pool was built), since the start.
    pub fallback_allocations: u64,
    /// Bytes requested by those allocations.
    pub fallback_bytes: u64,
}

const UNINIT: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// A pool for `#[global_allocator]`: built on first use, falling back to the system allocator
/// for requests it cannot serve (too large, out of memory, or while it is being built). What
/// fell back is counted: [`GlobalPool::stats`].
///
/// A full pool costs little: once an allocation has decided the pool is out of memory, later
/// ones of that size or larger find that out with a few loads and go to the system allocator,
/// until memory comes back to the pool.
///
/// # Examples
/// ```no_run
/// use balloc_concurrent::GlobalPool;
///
/// #[global_allocator]
/// static POOL: GlobalPool = GlobalPool::new(1 << 30);
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();   // lives in the pool
///     assert_eq!(v.len(), 1000);
/// }
/// ```
pub struct GlobalPool {
    size: usize,
    /// Allocations served by the system allocator, and their bytes: per-thread slots, so that
    /// counting costs no read-modify-write and threads falling back at once write no line in
    /// common.
    fallback: OwnedCounters<2>,
    /// UNINIT → BUILDING → READY or FAILED; only the thread that won UNINIT → BUILDING writes
    /// `pool`, before its Release store of READY.
    state: AtomicU8,
    pool: UnsafeCell<MaybeUninit<ConcurrentPool>>,
}

// SAFETY: `pool` is written once, before `state` becomes READY (Release), and only read after
// an Acquire load sees READY; ConcurrentPool itself is Sync.
unsafe impl Sync for GlobalPool {}

impl core::fmt::Debug for GlobalPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GlobalPool")
            .field("size", &self.size)
            .field("pool", &self.pool())
            .finish_non_exhaustive()
    }
}

impl GlobalPool {
    /// A pool of `size` bytes (rules as `ConcurrentPool::new`), reserved on first allocation.
    pub const fn new(size: usize) -> Self {
        Self {
            size,
            fallback: OwnedCounters::new(),
            state: AtomicU8::new(UNINIT),
            pool: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The pool, once built; `None` before, while building, or if building failed.
    #[inline]
    pub fn pool(&self) -> Option<&ConcurrentPool> {
        // Acquire: pairs with the Release store of READY, so the pool's fields are visible.
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY means `pool` was initialised and is never written again.
            Some(unsafe { (*self.pool.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// What the pool holds, and what went to the system allocator instead.
    pub fn stats(&self) -> GlobalPoolStats {
        let [allocations, bytes] = self.fallback.sum();
        GlobalPoolStats {
            pool: self.pool().map(ConcurrentPool::stats),
            fallback_allocations: allocations,
            fallback_bytes: bytes,
        }
    }

    /// Hands the pages of the pool's free blocks back to the OS: [`ConcurrentPool::trim`]
    /// (0 before the pool is built).
    pub fn trim(&self) -> usize {
        self.pool().map_or(0, ConcurrentPool::trim)
    }

    /// Counts one allocation served by the system allocator.
    #[inline]
    fn count_fallback(&self, layout: Layout) {
        self.fallback.add([1, layout.size() as u64]);
    }

    #[inline]
    fn get_or_build(&self) -> Option<&ConcurrentPool> {
        if let Some(p) = self.pool() {
            return Some(p);
        }
        self.build_slow()
    }

    /// Out-of-line slow path: the first allocation builds the pool. Anyone arriving while it is
    /// being built (including the builder itself, re-entrantly) uses the system allocator.
    #[cold]
    #[inline(never)]
    fn build_slow(&self) -> Option<&ConcurrentPool> {
        if self
            .state
            .compare_exchange(UNINIT, BUILDING, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            return self.pool();
        }
        match ConcurrentPool::new(self.size) {
            Ok(pool) => {
                // SAFETY: we won UNINIT → BUILDING, so we are the only writer, and nobody
                // reads before READY.
                unsafe { (*self.pool.get()).write(pool) };
                self.state.store(READY, Ordering::Release);
                self.pool()
            }
            Err(_) => {
                self.state.store(FAILED, Ordering::Release);
                None
            }
        }
    }
}

// SAFETY: every block comes either from the pool (when it can serve) or from `System`; dealloc
// sends a pointer back to whichever owns its address range. Never panics.
unsafe impl GlobalAlloc for GlobalPool {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(pool) = self.get_or_build() {
            if let Ok(p) = pool.alloc_layout(layout) {
                return p.as_ptr();
            }
        }
        self.count_fallback(layout);
        // SAFETY: forwarded GlobalAlloc contract.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(pool) = self.get_or_build() {
            if let Ok(p) = pool.alloc_zeroed_layout(layout) {
                return p.as_ptr();
            }
        }
        self.count_fallback(layout);
        // SAFETY: forwarded GlobalAlloc contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    /// In place when the block is the pool's and the new size fits it (same order, or a
    /// shrink that gives the rest back, or a grow over free buddies); otherwise a new block
    /// (the pool's, or the system allocator's), a copy and a free.
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with `layout.align()` is a valid layout (GlobalAlloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if let Some(pool) = self.pool().filter(|p| p.contains(ptr)) {
            // SAFETY: the pointer is in the pool, so the pool allocated it with `layout` (a
            // non-zero size, GlobalAlloc's contract), and a block's address is non-null.
            let p = unsafe { core::ptr::NonNull::new_unchecked(ptr) };
            // SAFETY: as above.
            if unsafe { crate::global_alloc::resize_in_place(pool, p, layout, new_layout, false) } {
                return ptr;
            }
        }
        // SAFETY: forwarded GlobalAlloc contract.
        unsafe { crate::global_alloc::realloc_by_copy(self, ptr, layout, new_layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.pool() {
            // SAFETY: the pointer is in the pool, so the pool allocated it with `layout`.
            Some(pool) if pool.contains(ptr) => unsafe { GlobalAlloc::dealloc(pool, ptr, layout) },
            // SAFETY: not the pool's, so System's, allocated with `layout`.
            _ => unsafe { System.dealloc(ptr, layout) },
        }
    }
}
