//! The standard allocator traits over the pool's front-ends: `GlobalAlloc` for
//! `ConcurrentPool` (and, in `global_pool`, for `GlobalPool`), and `allocator_api2`'s
//! `Allocator` for `&ConcurrentPool` and `&LocalCache`, written once (`impl_allocator`).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use allocator_api2::alloc::{AllocError as ApiAllocError, Allocator};
use balloc_core::internal::layout_order;

use crate::local::LocalCache;
use crate::pool::ConcurrentPool;
use crate::units::Order;

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

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_zeroed_layout(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with `layout.align()` is a valid layout (GlobalAlloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: GlobalAlloc's contract: `ptr` is a live block of this pool for `layout`
        // (so non-null, and of non-zero size).
        if unsafe { resize_in_place(self, NonNull::new_unchecked(ptr), layout, new_layout, false) }
        {
            return ptr;
        }
        // SAFETY: forwarded GlobalAlloc contract.
        unsafe { realloc_by_copy(self, ptr, layout, new_layout) }
    }
}

/// Resizes the pool's live block at `ptr` (allocated for `old`, non-zero size) to fit `new`
/// without moving it: same order, a shrink, or a grow over free buddies (with `zeroed`, the
/// bytes absorbed above the old block come zeroed). False when it cannot (the block is
/// unchanged).
///
/// # Safety
/// - `ptr` is a live block of `pool` allocated with `old` (or a layout of the same order), and
///   `old.size()` is not zero.
pub(crate) unsafe fn resize_in_place(
    pool: &ConcurrentPool,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> bool {
    let k = Order(layout_order(old.size(), old.align()));
    let Ok(m) = pool.layout_order(new) else {
        return false; // zero-sized, or larger than the pool
    };
    pool.resize_in_place(ptr, k, m, zeroed)
}

/// The `realloc` that moves: a new block of `a` for `new`, the first `min(old, new)` bytes
/// copied, the old block freed; null (the old block kept) when `a` has none.
///
/// # Safety
/// - GlobalAlloc's `realloc` contract: `ptr` is a live block of `a` allocated with `old`, and
///   `new` is `old` with the new size.
pub(crate) unsafe fn realloc_by_copy<A: GlobalAlloc>(
    a: &A,
    ptr: *mut u8,
    old: Layout,
    new: Layout,
) -> *mut u8 {
    // SAFETY: forwarded GlobalAlloc contract.
    let fresh = unsafe { a.alloc(new) };
    if !fresh.is_null() {
        // SAFETY: both blocks are live, distinct, and at least min(old, new) bytes long.
        unsafe {
            ptr::copy_nonoverlapping(ptr, fresh, old.size().min(new.size()));
            a.dealloc(ptr, old);
        }
    }
    fresh
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
            fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, ApiAllocError> {
                if layout.size() == 0 {
                    return Ok(dangling(layout));
                }
                let p = self
                    .alloc_zeroed_layout(layout)
                    .map_err(|_| ApiAllocError)?;
                let len = 1usize << layout_order(layout.size(), layout.align());
                Ok(NonNull::slice_from_raw_parts(p, len))
            }

            #[inline]
            unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
                if layout.size() != 0 {
                    // SAFETY: Allocator's contract: `ptr` is a live block from `allocate`
                    // with `layout`.
                    unsafe { self.dealloc(ptr, layout) }
                }
            }

            unsafe fn grow(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, ApiAllocError> {
                // SAFETY: Allocator's contract for `grow`, forwarded.
                unsafe { resize(*self, ptr, old, new, false) }
            }

            unsafe fn grow_zeroed(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, ApiAllocError> {
                // SAFETY: Allocator's contract for `grow_zeroed`, forwarded.
                unsafe { resize(*self, ptr, old, new, true) }
            }

            unsafe fn shrink(
                &self,
                ptr: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, ApiAllocError> {
                // SAFETY: Allocator's contract for `shrink`, forwarded.
                unsafe { resize(*self, ptr, old, new, false) }
            }
        }
    };
}

/// What `Allocator::{grow, grow_zeroed, shrink}` need of a front-end: its pool, which resizes
/// in place (a block's place in the bitmaps does not depend on the handle that holds it).
trait Resizable {
    fn pool(&self) -> &ConcurrentPool;
}

impl Resizable for &ConcurrentPool {
    fn pool(&self) -> &ConcurrentPool {
        self
    }
}

impl Resizable for &LocalCache<'_> {
    fn pool(&self) -> &ConcurrentPool {
        LocalCache::pool(self)
    }
}

/// `grow`, `grow_zeroed` and `shrink`: in place when [`resize_in_place`] can (same order, a
/// shrink, or a grow over free buddies), otherwise a new block, a copy of the old bytes and a
/// free.
///
/// # Safety
/// - Allocator's contract for those methods: `ptr` is a live block of `a` that fits `old`,
///   and `new.size()` is at least (grow) or at most (shrink) `old.size()`.
unsafe fn resize<A: Allocator + Resizable>(
    a: A,
    ptr: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Result<NonNull<[u8]>, ApiAllocError> {
    // SAFETY: the Allocator contract (`ptr` is `a`'s, allocated with `old`), and a non-zero
    // size checked first.
    if old.size() != 0 && unsafe { resize_in_place(a.pool(), ptr, old, new, zeroed) } {
        let k = Order(layout_order(old.size(), old.align()));
        let m = Order(layout_order(new.size(), new.align()));
        if zeroed {
            // The old block's tail beyond `old.size()` (a grow keeps `m >= k`); the region
            // zeroed what was absorbed above it.
            // SAFETY: inside the live block we hold (`old.size() <= k.bytes()`).
            unsafe {
                ptr.as_ptr()
                    .add(old.size())
                    .write_bytes(0, k.bytes() - old.size())
            };
        }
        return Ok(NonNull::slice_from_raw_parts(ptr, m.bytes()));
    }
    let fresh = if zeroed {
        a.allocate_zeroed(new)?
    } else {
        a.allocate(new)?
    };
    // SAFETY: both blocks are live and distinct; each holds at least min(old, new) bytes.
    unsafe {
        ptr::copy_nonoverlapping(
            ptr.as_ptr(),
            fresh.cast::<u8>().as_ptr(),
            old.size().min(new.size()),
        );
        a.deallocate(ptr, old);
    }
    Ok(fresh)
}

impl_allocator!(ConcurrentPool);
impl_allocator!(LocalCache<'_>);
