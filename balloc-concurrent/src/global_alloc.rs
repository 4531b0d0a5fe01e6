//! The standard allocator traits over the pool's front-ends: `GlobalAlloc` for
//! `ConcurrentPool` (and, in `global_pool`, for `GlobalPool`), and `allocator_api2`'s
//! `Allocator` for `&ConcurrentPool` and `&LocalCache`, written once (`impl_allocator`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};
use balloc_core::internal::layout_order;

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

    /// Frees through [`ConcurrentPool::dealloc`], with its checks: a pointer outside the pool
    /// or a block that is already free stops the process with a `balloc:` message.
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

/// `allocator_api2::Allocator` for a shared reference to a front-end with `alloc_layout` and
/// an unsafe sized `dealloc` (`ConcurrentPool`, `LocalCache`): one body for both.
macro_rules! impl_allocator {
    ($handle:ty) => {
        // SAFETY: blocks are valid for their whole size (a power of two ≥ layout.size(),
        // aligned to it) until deallocated; the allocator (a shared reference) may be copied
        // freely and all copies refer to the same pool (a `LocalCache` is !Send, so its copies
        // stay on one thread). Zero-sized requests get a dangling, aligned pointer.
        unsafe impl Allocator for &$handle {
            #[inline]
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
                if layout.size() == 0 {
                    return Ok(dangling(layout));
                }
                let p = self.alloc_layout(layout).map_err(|_| ApiAllocError)?;
                // The whole block is usable: its order's size.
                let len = 1usize << layout_order(layout.size(), layout.align());
                Ok(NonNull::slice_from_raw_parts(p, len))
            }

            /// Frees through the handle's sized `dealloc`, with its checks: a pointer outside
            /// the pool or a block that is already free stops the process with a `balloc:`
            /// message.
            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                if layout.size() != 0 {
                    // SAFETY: Allocator's contract: `ptr` is a live block from `allocate`
                    // with `layout`.
                    unsafe { self.dealloc(ptr, layout) }
                }
            }
        }
    };
}

impl_allocator!(ConcurrentPool);
impl_allocator!(LocalCache<'_>);
