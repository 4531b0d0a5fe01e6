//! [`LocalCache`]: an explicit per-thread handle, the fastest way in.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::ptr::NonNull;

use balloc_core::internal::{checked_size_order, fast_layout_order, layout_order};
use balloc_core::{AllocError, FreeError};

use crate::cache::Cache;
use crate::ladder::{self, Caller};
use crate::pool::ConcurrentPool;
use crate::units::Order;

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
    /// This handle's cache, from the pool's registry; the pool's empty cache (whose fast paths
    /// always miss) when the system allocator could not provide one.
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
        let shared = pool.shared();
        let cache = shared.acquire_cache().unwrap_or(shared.empty_cache);
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
        // SAFETY: the cache is ours until `drop` (or is the pool's empty one, which lives as
        // long as the pool), and the handle is !Send and !Sync, so nothing else uses it.
        unsafe { self.cache.as_ref() }
    }

    /// The caller for the allocation path: this handle's cache, unless it is the empty one.
    #[inline]
    fn caller(&self) -> Caller<'_> {
        let shared = self.pool.shared();
        let real = self.cache != shared.empty_cache;
        Caller {
            shared,
            cache: real.then(|| self.fast()),
            explicit: true,
        }
    }

    /// Allocates a block of order `btok(size)`.
    ///
    /// # Errors
    /// As [`ConcurrentPool::alloc`]; before out-of-memory this handle's cache and this
    /// thread's implicit cache for the pool are both handed back.
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        // Size 0 maps to order 64, whose stack is always empty: no separate test.
        if let Some(p) = self.fast().pop(Order(fast_layout_order(size, 1))) {
            return Ok(p);
        }
        self.alloc_slow(size)
    }

    /// Out-of-line slow path for `alloc`: checks, then the allocation path.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let k = Order(checked_size_order(size, self.pool.kval())?);
        ladder::alloc(self.caller(), k)
    }

    /// Allocates a block that fits `layout`.
    ///
    /// # Errors
    /// As [`ConcurrentPool::alloc_layout`].
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        // Size 0 maps to order 64, whose stack is always empty: no separate test.
        let k = Order(fast_layout_order(layout.size(), layout.align()));
        if let Some(p) = self.fast().pop(k) {
            return Ok(p);
        }
        self.alloc_layout_slow(layout)
    }

    /// Out-of-line slow path for `alloc_layout`.
    #[cold]
    #[inline(never)]
    fn alloc_layout_slow(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        ladder::alloc(self.caller(), self.pool.layout_order(layout)?)
    }

    /// Allocates a block that fits `layout`, every byte zero (as
    /// [`ConcurrentPool::alloc_zeroed_layout`]).
    ///
    /// # Errors
    /// As [`ConcurrentPool::alloc_layout`].
    pub fn alloc_zeroed_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let k = self.pool.layout_order(layout)?;
        let region = self.pool.region();
        if region.config.caches(k) {
            return self.alloc_layout(layout).map(|p| region.zero_block(p, k));
        }
        ladder::alloc_zeroed(self.caller(), k)
    }

    /// Frees the block at `ptr` (allocated by any handle or thread), validated.
    ///
    /// # Errors
    /// As [`ConcurrentPool::free`].
    #[inline]
    pub fn free(&self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        ladder::free_validated(self.caller(), ptr)
    }

    /// Frees a block without validation, trusting `layout`: the sized fast path.
    ///
    /// # Safety
    /// - `ptr` was allocated from this handle's pool (through any handle) with `layout` or a
    ///   layout of the same order, and is not freed twice.
    ///
    /// # Aborts
    /// In every build, before the block reaches a cache or the bitmaps: when `ptr` is not
    /// inside the pool's region, or the block is already free (its free-tag is in its second
    /// word, or, for orders that are not cached, it is not live), the process stops with a
    /// message that starts with `balloc:` and names the fault, as glibc stops on a double free.
    /// A double free is caught while the block is still free; once it is handed out again, a
    /// second free of it cannot be told from its new owner's.
    #[inline]
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) {
        let k = Order(layout_order(layout.size(), layout.align()));
        if !self.fast().push(k, ptr) {
            self.dealloc_slow(ptr, k);
        }
    }

    /// Out-of-line slow path for `dealloc`: a full stack, an uncached order, or no cache.
    #[cold]
    #[inline(never)]
    fn dealloc_slow(&self, ptr: NonNull<u8>, k: Order) {
        self.pool.region().debug_check_dealloc_order(ptr, k);
        ladder::dealloc(self.caller(), ptr, k);
    }

    /// Hands every block this handle caches back to the pool.
    pub fn flush(&self) {
        if let Some(c) = self.caller().cache {
            ladder::flush(self.pool.region(), c);
        }
    }
}

impl Drop for LocalCache<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.caller().cache {
            // The borrowed pool holds a strong reference; the cache goes back to the registry
            // empty, for the next handle or thread.
            ladder::flush(self.pool.region(), c);
            self.pool.shared().registry.release(c);
        }
    }
}
