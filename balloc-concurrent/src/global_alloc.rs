//! The standard allocator traits: `GlobalAlloc` for the pool and for [`GlobalPool`] (a lazily
//! built pool usable as `#[global_allocator]`), and `allocator_api2`'s `Allocator` for
//! `&ConcurrentPool` and `&LocalCache`.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU8, Ordering};
use std::alloc::System;

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};
use balloc_core::order::layout_order;

use crate::local::LocalCache;
use crate::pool::ConcurrentPool;

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes aligned to
// `layout.align()` (blocks are aligned to their own size, which is at least the alignment),
// never handed out twice until freed; it never panics. `dealloc` takes back exactly such blocks.
unsafe impl GlobalAlloc for ConcurrentPool {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_layout(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc` with `layout` (so non-null).
        unsafe { ConcurrentPool::dealloc(self, NonNull::new_unchecked(ptr), layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout_order(new_size, layout.align()) == layout_order(layout.size(), layout.align()) {
            return ptr; // the block already fits: same order
        }
        // SAFETY: `new_size` with `layout.align()` is a valid layout (GlobalAlloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded GlobalAlloc contract.
        let new = unsafe { GlobalAlloc::alloc(self, new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and at least min(old, new) bytes long.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                GlobalAlloc::dealloc(self, ptr, layout);
            }
        }
        new
    }
}

/// A dangling, aligned pointer for zero-sized allocations (no provenance, never dereferenced).
fn dangling(layout: Layout) -> NonNull<[u8]> {
    let p = ptr::without_provenance_mut::<u8>(layout.align());
    // SAFETY: an alignment is never zero.
    NonNull::slice_from_raw_parts(unsafe { NonNull::new_unchecked(p) }, 0)
}

/// `Allocator::allocate` over any `alloc_layout`: zero-sized requests get a dangling pointer,
/// others a whole block (its full power-of-two size is usable).
#[inline]
fn allocate_with(
    layout: Layout,
    alloc: impl FnOnce(Layout) -> Result<NonNull<u8>, balloc_core::AllocError>,
) -> Result<NonNull<[u8]>, ApiAllocError> {
    if layout.size() == 0 {
        return Ok(dangling(layout));
    }
    let p = alloc(layout).map_err(|_| ApiAllocError)?;
    let len = 1usize << layout_order(layout.size(), layout.align());
    Ok(NonNull::slice_from_raw_parts(p, len))
}

// SAFETY: blocks are valid for their whole size (a power of two ≥ layout.size(), aligned to it)
// until deallocated; the allocator (a shared reference to the pool) may be copied freely and
// all copies refer to the same pool. Zero-sized requests get a dangling, aligned pointer.
unsafe impl Allocator for &ConcurrentPool {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        allocate_with(layout, |l| self.alloc_layout(l))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: Allocator's contract: `ptr` is a live block from `allocate` with `layout`.
            unsafe { ConcurrentPool::dealloc(self, ptr, layout) }
        }
    }
}

// SAFETY: as for `&ConcurrentPool`; the handle is !Send, so its copies stay on one thread.
unsafe impl Allocator for &LocalCache<'_> {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
        allocate_with(layout, |l| self.alloc_layout(l))
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: Allocator's contract: `ptr` is a live block from `allocate` with `layout`.
            unsafe { LocalCache::dealloc(self, ptr, layout) }
        }
    }
}

const UNINIT: u8 = 0;
const BUILDING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// A pool for `#[global_allocator]`: built on first use, falling back to the system allocator
/// for requests it cannot serve (too large, out of memory, or while it is being built).
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
    /// UNINIT → BUILDING → READY or FAILED; only the thread that won UNINIT → BUILDING writes
    /// `pool`, before its Release store of READY.
    state: AtomicU8,
    pool: UnsafeCell<MaybeUninit<ConcurrentPool>>,
}

// SAFETY: `pool` is written once, before `state` becomes READY (Release), and only read after
// an Acquire load sees READY; ConcurrentPool itself is Sync.
unsafe impl Sync for GlobalPool {}

impl GlobalPool {
    /// A pool of `size` bytes (rules as `ConcurrentPool::new`), reserved on first allocation.
    pub const fn new(size: usize) -> Self {
        Self {
            size,
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
        // SAFETY: forwarded GlobalAlloc contract.
        unsafe { System.alloc(layout) }
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
