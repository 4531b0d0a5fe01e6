//! [`LocalCache`]: an explicit per-thread handle, the fastest way in.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::NonNull;

use balloc_core::order::{checked_size_order, fast_layout_order, layout_order};
use balloc_core::{AllocError, FreeError};

use crate::cache::Cache;
use crate::pool::ConcurrentPool;

/// A thread's own cache over a [`ConcurrentPool`] (`!Send`): a hit costs a few plain loads and
/// stores, with no thread-local lookup and no atomic read-modify-write.
///
/// Blocks may be freed through any handle or through the pool, on any thread. Dropping the
/// handle returns its cached blocks to the pool.
///
/// # Examples
/// ```
/// use balloc_concurrent::ConcurrentPool;
/// use std::alloc::Layout;
///
/// let pool = ConcurrentPool::new(1 << 20)?;
/// let local = pool.local();
/// let layout = Layout::from_size_align(48, 16).unwrap();
/// let p = local.alloc_layout(layout).unwrap();
/// // SAFETY: `p` came from this pool with `layout` and is freed once.
/// unsafe { local.dealloc(p, layout) };
/// drop(local);
/// assert!(pool.stats().is_coalesced());
/// # Ok::<(), balloc_concurrent::InitError>(())
/// ```
pub struct LocalCache<'a> {
    pool: &'a ConcurrentPool,
    /// `Cache::empty()` when the system allocator could not provide a cache: its fast paths
    /// always miss and the slow paths go to the shared bitmaps.
    cache: NonNull<Cache>,
    _not_send: PhantomData<*mut ()>,
}

impl core::fmt::Debug for LocalCache<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalCache")
            .field("pool", self.pool)
            .finish_non_exhaustive()
    }
}

impl<'a> LocalCache<'a> {
    pub(crate) fn new(pool: &'a ConcurrentPool) -> Self {
        // SAFETY: `pool` holds a strong reference for as long as the handle borrows it.
        let cache =
            NonNull::new(unsafe { Cache::create(pool.shared()) }).unwrap_or_else(Cache::empty);
        Self {
            pool,
            cache,
            _not_send: PhantomData,
        }
    }

    /// The pool this handle allocates from.
    pub fn pool(&self) -> &'a ConcurrentPool {
        self.pool
    }

    /// The cache for fast paths (possibly the empty one, which always misses).
    #[inline(always)]
    fn fast(&self) -> &Cache {
        // SAFETY: the cache lives until `drop` (or is the static empty one), and the handle is
        // !Send and !Sync, so nothing else uses it meanwhile.
        unsafe { self.cache.as_ref() }
    }

    /// The cache for slow paths: `None` for the empty cache (use the shared bitmaps).
    #[inline]
    fn cache(&self) -> Option<&Cache> {
        if Cache::is_empty_cache(self.cache) {
            None
        } else {
            Some(self.fast())
        }
    }

    /// Allocates a block of order `btok(size)`.
    ///
    /// # Errors
    /// As [`ConcurrentPool::alloc`].
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        // Size 0 maps to order 64, whose stack is always empty: no separate test.
        if let Some(p) = self.fast().pop_ptr(fast_layout_order(size, 1)) {
            return Ok(p);
        }
        self.alloc_slow(size)
    }

    /// Out-of-line slow path for `alloc`: checks, refill, shared bitmaps.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(checked_size_order(size, self.pool.kval())?)
    }

    /// Allocates a block that fits `layout`.
    ///
    /// # Errors
    /// As [`ConcurrentPool::alloc_layout`].
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // Size 0 maps to order 64, whose stack is always empty: no separate test.
        if let Some(p) = self
            .fast()
            .pop_ptr(fast_layout_order(layout.size(), layout.align()))
        {
            return Ok(p);
        }
        self.alloc_layout_slow(layout)
    }

    /// Out-of-line slow path for `alloc_layout`.
    #[cold]
    #[inline(never)]
    fn alloc_layout_slow(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(self.pool.layout_order(layout)?)
    }

    fn alloc_order(&self, k: u32) -> Result<NonNull<u8>, AllocError> {
        let off = match self.cache() {
            Some(c) => c.alloc(k),
            None => self.pool.alloc_uncached(k),
        };
        off.map(|off| self.pool.core().ptr_at(off))
            .ok_or(AllocError::OutOfMemory { order: k })
    }

    /// Frees the block at `ptr` (allocated by any handle or thread), validated.
    ///
    /// # Errors
    /// As [`ConcurrentPool::free`].
    #[inline]
    pub fn free(&self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let core = self.pool.core();
        let (off, k) = core.find_live(ptr)?;
        match self.cache() {
            Some(c) => c.free_validated(off, k),
            None => core.free_validated_shared(off, k),
        }
    }

    /// Frees a block without validation, trusting `layout`: the sized fast path.
    ///
    /// # Safety
    /// - `ptr` was allocated from this handle's pool (through any handle) with `layout` or a
    ///   layout of the same order, and is not freed twice.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let k = layout_order(layout.size(), layout.align());
        if !self.fast().try_dealloc(ptr, k) {
            self.dealloc_slow(ptr, k);
        }
    }

    /// Out-of-line slow path for `dealloc`: a full stack, an uncached order, or no cache.
    #[cold]
    #[inline(never)]
    fn dealloc_slow(&self, ptr: NonNull<u8>, k: u32) {
        let core = self.pool.core();
        let off = ptr.as_ptr().addr().wrapping_sub(core.base.as_ptr().addr());
        debug_assert_eq!(
            core.find_live(ptr),
            Ok((off, k)),
            "dealloc of a block not allocated with this layout"
        );
        match self.cache() {
            Some(c) => c.dealloc(ptr, k),
            None => {
                let r = core.free_validated_shared(off, k);
                debug_assert!(r.is_ok(), "dealloc of a block that is not allocated");
            }
        }
    }

    /// Hands every block this handle caches back to the pool.
    pub fn flush(&self) {
        if let Some(c) = self.cache() {
            c.flush_all();
        }
    }
}

impl Drop for LocalCache<'_> {
    fn drop(&mut self) {
        if !Cache::is_empty_cache(self.cache) {
            // SAFETY: the cache came from `Cache::create`, is used by nobody else, and the
            // borrowed pool holds a strong reference.
            unsafe { Cache::destroy(self.cache.as_ptr()) };
        }
    }
}
