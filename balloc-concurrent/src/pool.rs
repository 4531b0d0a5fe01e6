//! [`ConcurrentPool`]: the `Send + Sync` buddy pool.

use core::alloc::Layout;
use core::ptr::NonNull;

use balloc_core::internal::{
    checked_layout_order, checked_size_order, fast_layout_order, layout_order,
};
use balloc_core::{AllocError, FreeError, InitError, Stats};

use crate::builder::PoolBuilder;
use crate::cache::Cache;
use crate::ladder::{self, Caller};
use crate::local::LocalCache;
use crate::region::Region;
use crate::shared::PoolShared;
use crate::thread_cache;
use crate::units::Order;

/// A buddy pool many threads allocate from and free to at once.
///
/// Blocks are powers of two from 64 B to the pool size, aligned to their size, with no header.
/// Blocks (by default 64 B to 64 KiB) go through per-thread caches: a hit is a few plain
/// loads and stores. Everything else, and every cache miss, uses atomic per-order bitmaps with
/// no lock. [`free`](Self::free) validates like `BuddyPool::free`.
///
/// # Examples
/// ```
/// use balloc_concurrent::ConcurrentPool;
/// use std::thread;
///
/// let pool = ConcurrentPool::new(1 << 20)?;
/// thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             // `Err` when out of memory, or contended: another thread carries the memory
///             // asked for (the first split of a new pool; see `contended_out_of_memory`).
///             if let Ok(p) = pool.alloc(100) {
///                 pool.free(p).unwrap();
///             }
///             // Thread exit returns the cache too, but `scope` does not wait for
///             // thread-local destructors (a `join` does): flush to see it at once.
///             pool.flush_thread_cache();
///         });
///     }
/// });
/// assert!(pool.stats().is_coalesced());
/// # Ok::<(), balloc_concurrent::InitError>(())
/// ```
pub struct ConcurrentPool {
    shared: NonNull<PoolShared>,
    /// Copied from the shared state: the thread-cache lookup key.
    id: u64,
    kval: u32,
}

// SAFETY: the shared state is only mutated through atomics (no lock), and its
// lifetime is reference counted; nothing in it is tied to one thread.
unsafe impl Send for ConcurrentPool {}
// SAFETY: as above: every `&self` method is safe to call from many threads at once.
unsafe impl Sync for ConcurrentPool {}

impl core::fmt::Debug for ConcurrentPool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ConcurrentPool")
            .field("base", &self.region().base)
            .field("kval", &self.kval)
            .finish()
    }
}

impl ConcurrentPool {
    /// A pool of `size` bytes with default cache settings (size rules as `BuddyPool::new`).
    ///
    /// # Errors
    /// [`InitError::TooLarge`] above 2^MAX_K; [`InitError::Os`] when the OS refuses.
    pub fn new(size: usize) -> Result<Self, InitError> {
        Self::builder().size(size).build()
    }

    /// Settings: size, cached orders, cache capacity and batch.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// # Safety
    /// - `shared` holds one strong and one weak reference that the pool takes over.
    pub(crate) unsafe fn from_shared(shared: NonNull<PoolShared>, kval: u32) -> Self {
        // SAFETY: the caller hands over a live shared state.
        let id = unsafe { shared.as_ref() }.id;
        Self { shared, id, kval }
    }

    #[inline]
    pub(crate) fn shared(&self) -> &PoolShared {
        // SAFETY: the pool holds a strong (and a weak) reference until it is dropped.
        unsafe { self.shared.as_ref() }
    }

    #[inline]
    pub(crate) fn region(&self) -> &Region {
        self.shared().region()
    }

    /// Order of the whole pool.
    #[inline]
    pub fn kval(&self) -> u32 {
        self.kval
    }

    /// Bytes managed by the pool.
    #[inline]
    pub fn size(&self) -> usize {
        1 << self.kval
    }

    /// True when `ptr` points into the pool's memory.
    #[inline]
    pub fn contains(&self, ptr: *const u8) -> bool {
        self.region().contains(ptr)
    }

    /// Allocates a block of order `btok(size)`, aligned to its size.
    ///
    /// # Errors
    /// [`AllocError::ZeroSize`], [`AllocError::TooLarge`], or [`AllocError::OutOfMemory`]
    /// (see the crate docs for exactly when: after this thread's cache was handed back and
    /// the depot drained, a search found nothing while no memory moved).
    #[inline]
    pub fn alloc(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        if let Some(p) = self.pop_fast(Order(fast_layout_order(size, 1))) {
            return Ok(p);
        }
        self.alloc_slow(size)
    }

    /// Fast path: a block of order `k` from this thread's cache in slot 0. Size 0 maps to
    /// order 64, whose stack is always empty.
    #[inline(always)]
    fn pop_fast(&self, k: Order) -> Option<NonNull<u8>> {
        let c = thread_cache::current(self.id)?;
        // SAFETY: the cache is this thread's, valid for this call (no re-entry below).
        unsafe { c.as_ref() }.pop(k)
    }

    /// Out-of-line slow path for `alloc`: checks, then the allocation path.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(Order(checked_size_order(size, self.kval)?))
    }

    /// Allocates a block that fits `layout` (order `btok(max(size, align))`).
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc), plus [`AllocError::AlignmentTooLarge`].
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        if let Some(p) = self.pop_fast(Order(fast_layout_order(layout.size(), layout.align()))) {
            return Ok(p);
        }
        self.alloc_layout_slow(layout)
    }

    /// Out-of-line slow path for `alloc_layout`.
    #[cold]
    #[inline(never)]
    fn alloc_layout_slow(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(self.layout_order(layout)?)
    }

    /// Allocates a block that fits `layout`, every byte zero. Blocks of uncached orders come
    /// from the bitmaps and only their parts on pages not known to be zero are written: pages
    /// never touched since the pool was mapped, or handed back by [`trim`](Self::trim) (or a
    /// purge), are left alone (and stay not resident). Cached orders are zeroed with a write.
    ///
    /// # Errors
    /// As [`alloc_layout`](Self::alloc_layout).
    pub fn alloc_zeroed_layout(&self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        let k = self.layout_order(layout)?;
        if self.region().config.caches(k) {
            return self
                .alloc_layout(layout)
                .map(|p| self.region().zero_block(p, k));
        }
        if let Some(c) = thread_cache::current(self.id) {
            // SAFETY: this thread's cache in slot 0, valid for this call (as `alloc_order`).
            return ladder::alloc_zeroed(self.caller(Some(unsafe { c.as_ref() })), k);
        }
        self.with_caller(|who| ladder::alloc_zeroed(who, k))
    }

    /// Resizes the live block at `ptr` from order `k` to order `m` without moving it: a
    /// shrink always succeeds (the rest goes back to the pool), a grow succeeds when the free
    /// buddies above the block make up the difference (with `zeroed`, the bytes gained beyond
    /// the old block come zeroed). False, with nothing changed, when it cannot.
    pub(crate) fn resize_in_place(
        &self,
        ptr: NonNull<u8>,
        k: Order,
        m: Order,
        zeroed: bool,
    ) -> bool {
        let region = self.region();
        let off = region.offset_of(ptr);
        match m.cmp(&k) {
            core::cmp::Ordering::Equal => true,
            core::cmp::Ordering::Greater => region.grow_in_place(off, k, m, zeroed),
            core::cmp::Ordering::Less => {
                region.shrink_in_place(off, k, m);
                true
            }
        }
    }

    /// Hands the pages of every free block of a page or more back to the OS, after draining
    /// the depot; returns the bytes handed back. Blocks held in thread caches count as used
    /// and stay. The pages read back as zeros when used again, one page fault each.
    ///
    /// Safe while other threads allocate: each free block is claimed (as a split claims it)
    /// before its pages go back, at most 2 MiB at a time, and released afterwards. A
    /// concurrent allocation may briefly see that much less free memory; its out-of-memory
    /// decision waits for the trim's move or searches again, so it never takes a search that
    /// the trim overlapped as proof of exhaustion. O(free bitmap words of a page and more,
    /// plus one claim per 2 MiB of free memory).
    ///
    /// # Examples
    /// ```
    /// use balloc_concurrent::ConcurrentPool;
    ///
    /// let pool = ConcurrentPool::new(1 << 24)?;
    /// let p = pool.alloc(1 << 20)?;
    /// // SAFETY: a live 1 MiB block of the pool.
    /// unsafe { p.as_ptr().write_bytes(1, 1 << 20) };
    /// pool.free(p)?;
    /// let given = pool.trim();
    /// # #[cfg(all(unix, not(miri)))]
    /// assert_eq!(given, 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trim(&self) -> usize {
        let region = self.region();
        region.drain_depot();
        region.trim(usize::MAX, usize::MAX).0
    }

    /// The order for `layout`, checked against this pool.
    pub(crate) fn layout_order(&self, layout: Layout) -> Result<Order, AllocError> {
        checked_layout_order(layout, self.kval).map(Order)
    }

    /// The allocation path through this thread's implicit cache (or none).
    fn alloc_order(&self, k: Order) -> Result<NonNull<u8>, AllocError> {
        if let Some(c) = thread_cache::current(self.id) {
            // SAFETY: this thread's cache in slot 0, valid for this call (the allocation path
            // never changes the thread's cache slots).
            return ladder::alloc(self.caller(Some(unsafe { c.as_ref() })), k);
        }
        self.with_caller(|who| ladder::alloc(who, k))
    }

    /// Runs `f` with this thread's implicit cache for the pool as the caller, or with no cache
    /// when the thread has none (thread-locals torn down, all slots taken, no memory).
    #[inline]
    fn with_caller<R>(&self, f: impl Fn(Caller<'_>) -> R) -> R {
        // SAFETY: `self` holds a strong reference for the call.
        let r = unsafe { thread_cache::with(self.shared, self.id, |c| f(self.caller(Some(c)))) };
        match r {
            Some(r) => r,
            None => f(self.caller(None)),
        }
    }

    /// The pool with `cache` (this thread's implicit cache, or none) as a caller.
    #[inline]
    fn caller<'c>(&'c self, cache: Option<&'c Cache>) -> Caller<'c> {
        Caller {
            shared: self.shared(),
            cache,
            explicit: false,
        }
    }

    /// Frees the block at `ptr` (from any thread), validated.
    ///
    /// # Errors
    /// [`FreeError::OutOfPool`], [`FreeError::Misaligned`], [`FreeError::Interior`], or
    /// [`FreeError::DoubleFree`] (also when two threads free one block at once: one wins).
    /// The pool is unchanged on error.
    #[inline]
    pub fn free(&self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        self.with_caller(|who| ladder::free_validated(who, ptr))
    }

    /// Frees a block the caller allocated from this pool with `layout`, without validation:
    /// the sized fast path `GlobalAlloc` uses.
    ///
    /// # Safety
    /// - `ptr` was returned by this pool for `layout` (or a layout of the same order), and is
    ///   not freed twice.
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
        if let Some(c) = thread_cache::current(self.id) {
            // SAFETY: the cache is this thread's, valid for this call (no re-entry below).
            if unsafe { c.as_ref() }.push(k, ptr) {
                return;
            }
        }
        self.dealloc_slow(ptr, k);
    }

    /// Out-of-line slow path for `dealloc`: a full stack, an uncached order, or no cache in
    /// slot 0.
    #[cold]
    #[inline(never)]
    fn dealloc_slow(&self, ptr: NonNull<u8>, k: Order) {
        self.region().debug_check_dealloc_order(ptr, k);
        self.with_caller(|who| ladder::dealloc(who, ptr, k));
    }

    /// Size of the allocated block at `ptr`, or `None` when `ptr` is not an allocated block's
    /// start. (A block sitting in a thread cache counts as allocated here.)
    pub fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        self.region().find_live(ptr).ok().map(|(_, k)| k.bytes())
    }

    /// A per-thread handle with its own cache: the fastest path. Its blocks go back to the pool
    /// when it is dropped.
    pub fn local(&self) -> LocalCache<'_> {
        LocalCache::new(self)
    }

    /// Hands this thread's cached blocks for this pool back to the shared bitmaps.
    pub fn flush_thread_cache(&self) {
        if let Some(c) = thread_cache::find(self.id) {
            // SAFETY: this thread's cache, valid for this call (nothing below re-enters the
            // thread's cache slots).
            ladder::flush(self.region(), unsafe { c.as_ref() });
        }
    }

    /// How many threads hold an implicit cache for this pool: one per thread that has called
    /// it (`alloc`, `free`, ...) and found a cache slot, until that thread exits.
    /// [`LocalCache`] handles are not counted. A snapshot.
    ///
    /// Once the count no longer includes a thread's cache, everything that cache's retirement
    /// did (its blocks flushed back, the depot drained, its return to the registry) happens
    /// before the caller's next step (an Acquire read of the count the retirement decrements
    /// last, with Release).
    pub fn thread_caches(&self) -> usize {
        self.shared().thread_caches()
    }

    /// Out-of-memory decision searches that another thread's move overlapped, so far: zero
    /// while threads only run out together (failing searches never invalidate each other).
    /// For the loom models.
    #[cfg(balloc_loom)]
    #[doc(hidden)]
    pub fn invalidated_searches(&self) -> usize {
        self.region().invalidated_searches()
    }

    /// The pressure epoch: how many allocations so far found memory short and asked every
    /// cache to hand its blocks back. For the loom models.
    #[cfg(balloc_loom)]
    #[doc(hidden)]
    pub fn pressure_epoch(&self) -> u64 {
        // Relaxed: a hint (see `ladder`); the models read it with no thread inside a call.
        self.shared()
            .pressure
            .load(crate::facade::Ordering::Relaxed)
    }

    /// How many out-of-memory answers so far were *contended*: every search of the decision
    /// was overlapped by another thread's split, merge or release, so the memory asked for may
    /// have existed, carried by a move in flight (typically a thread descheduled in the middle
    /// of a merge). Every other out-of-memory answer comes from a search that found no free
    /// block of the order or above while nothing in the pool moved. Non-zero on a pool with
    /// plenty of free memory means threads were preempted inside moves of large blocks; a
    /// `GlobalPool` serves such an allocation from its fallback.
    pub fn contended_out_of_memory(&self) -> usize {
        self.region().contended_out_of_memory()
    }

    /// A snapshot of where the bytes are: `allocated_bytes` (held by callers), `free_bytes`
    /// (free in the shared bitmaps), `cached_bytes` (free in thread caches and the depot).
    /// Exact when no thread is inside a call; O(metadata). `resident_bytes`: the bytes of the
    /// pool's region in physical memory, as `mincore` reports (one call per 4 MiB); where the
    /// OS cannot tell, the bytes not known to be untouched or handed back.
    pub fn stats(&self) -> Stats {
        let mut stats = self.region().stats();
        let cached = self.shared().registry.cached_bytes() + self.region().depot_bytes();
        stats.cached_bytes = cached;
        stats.allocated_bytes = stats.allocated_bytes.saturating_sub(cached);
        stats
    }

    /// Most bytes one thread's cache can hold: the bound on what a thread that stops using the
    /// pool (without `flush_thread_cache` or exiting) can strand.
    pub fn max_cached_bytes_per_thread(&self) -> usize {
        self.region().config.max_bytes_per_cache()
    }

    /// Most bytes the pool's depot can hold: full magazines of cached blocks on their way from
    /// one thread's cache to another's (see `stats().cached_bytes`). Unlike a thread's cache,
    /// the depot is drained by every thread's full flush and before any allocation reports
    /// out-of-memory.
    pub fn max_depot_bytes(&self) -> usize {
        self.region().config.max_depot_bytes()
    }

    /// Checks the shared bitmaps' invariants (no two free buddies, free and live blocks tile
    /// the pool, summaries cover every free block). Meaningful only while no thread is inside a
    /// call.
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.region().maps.validate()
    }
}

impl Drop for ConcurrentPool {
    fn drop(&mut self) {
        // This thread's cache would otherwise hold a slot (and blocks of a dead pool) until
        // thread exit; other threads' slots are reclaimed when they need one.
        // SAFETY: the pool still holds its strong reference here.
        unsafe { thread_cache::retire_current(self.id) };
        // SAFETY: the pool's strong and weak references, released once, never used after.
        unsafe {
            self.shared().release_strong();
            PoolShared::release_weak(self.shared);
        }
    }
}
