//! A per-thread cache: per order, a bounded stack of free blocks, owned by one thread.
//!
//! Cost of a hit: `pop` is one load of the length, one load of the slot, one store of the
//! length; `push` the same with a store to the slot. No atomic read-modify-write, and nothing
//! another thread writes (the length is atomic only so `stats` can read it from elsewhere).
//! A miss refills `batch` blocks from the shared bitmaps; a full stack flushes its `batch`
//! oldest blocks back. Blocks in a cache are live in the bitmaps and carry their tag (see
//! `tags`), so validated frees recognise them as free.
//!
//! Orderings: `len` is only written by the owner, so its loads and stores are `Relaxed` (they
//! order nothing: the slots are plain memory only the owner touches); `stats` reads it as a
//! snapshot. The pressure epoch is a `Relaxed` hint (see `alloc_slow`).
//!
//! Invariant: `0 <= len[k] <= cap[k]`, and `slots[k][..len[k]]` are distinct tagged blocks of
//! order `k` that no caller holds.
//!
//! **Deviation from DESIGN.md ("caches drained before OOM").** Only the owner touches a stack,
//! which is what makes a hit cost no atomic RMW. Taking blocks out of another thread's stack
//! safely would need the owner to synchronise on every hit (an RMW, or a store-load fence).
//! Measured on this project's 2-vCPU machine, a 64 B alloc+free pair through `LocalCache` took
//! 9–12 ns; with one `fetch_add` (or one `SeqCst` fence) added per alloc and per free it took
//! 50–60 ns (`/tmp/pairbench`-style loop, 3 runs each, noisy host). So an allocation that runs out flushes its own cache, bumps the
//! pool's pressure epoch (every other cache flushes everything at its next slow path) and
//! retries a few times; blocks cached by threads that do not call the pool again stay
//! stranded until they do, call `flush_thread_cache`, or exit. The bound, tested, is
//! `max_cached_bytes_per_thread()` per such thread (each order capped at 1 MiB and at 1/256
//! of the pool), and `stats().cached_bytes` shows it.

use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout, System};

use balloc_core::FreeError;

use crate::primitive::{AtomicUsize, Ordering};
use crate::shared::{Core, PoolShared};
use crate::tags::TagKey;

/// One stack per possible order value, indexed by `k & 63` (no bounds check on the fast path;
/// orders that are not cached have capacity 0, and `btok`'s 64 for impossible sizes maps to
/// the empty stack 0).
const STACKS: usize = 64;

struct Stack {
    /// Blocks held; written only by the owner (plain load + store), read by `stats`.
    len: AtomicUsize,
    cap: usize,
    batch: usize,
    /// `cap` offsets.
    slots: *mut usize,
}

impl Stack {
    /// A stack with no room: pops and pushes always miss.
    #[cfg(not(balloc_loom))]
    const fn none() -> Stack {
        Stack {
            len: AtomicUsize::new(0),
            cap: 0,
            batch: 0,
            slots: core::ptr::null_mut(),
        }
    }
}

/// The cache that holds and serves nothing (all capacities 0), for a `LocalCache` that could
/// not get memory for a real one: its fast paths then always miss, with no null test.
#[cfg(not(balloc_loom))]
struct EmptyCache(Cache);

// SAFETY: the empty cache is never written: every pop sees len 0 and every push sees cap 0
// before touching anything, and it is never registered (its Cells stay as they are).
#[cfg(not(balloc_loom))]
unsafe impl Sync for EmptyCache {}

#[cfg(not(balloc_loom))]
static EMPTY: EmptyCache = EmptyCache(Cache {
    base: NonNull::dangling(),
    tags: TagKey::NONE,
    shared: NonNull::dangling(),
    pool_id: u64::MAX,
    stacks: [const { Stack::none() }; STACKS],
    slots: core::ptr::null_mut(),
    total_slots: 0,
    seen_pressure: Cell::new(0),
    next: Cell::new(core::ptr::null_mut()),
    prev: Cell::new(core::ptr::null_mut()),
});

/// One thread's cache for one pool.
pub(crate) struct Cache {
    /// The pool's base, copied so a hit never reaches the shared state.
    pub(crate) base: NonNull<u8>,
    tags: TagKey,
    shared: NonNull<PoolShared>,
    pub(crate) pool_id: u64,
    stacks: [Stack; STACKS],
    /// The slots of all stacks, one allocation of `total_slots` words.
    slots: *mut usize,
    total_slots: usize,
    /// The pool's `pressure` epoch this cache last acted on.
    seen_pressure: Cell<u64>,
    /// Registry links, guarded by the pool's registry lock.
    next: Cell<*mut Cache>,
    prev: Cell<*mut Cache>,
}

impl Cache {
    /// The shared cache that holds and serves nothing (see `EMPTY`). Its fast paths always
    /// miss; callers must send its slow paths to the pool instead (see [`Self::is_empty_cache`]).
    pub(crate) fn empty() -> NonNull<Cache> {
        #[cfg(not(balloc_loom))]
        {
            NonNull::from(&EMPTY.0)
        }
        #[cfg(balloc_loom)]
        {
            panic!("balloc: no memory for a thread cache (loom models never run out)")
        }
    }

    /// Whether `c` is [`Self::empty`].
    #[inline]
    pub(crate) fn is_empty_cache(c: NonNull<Cache>) -> bool {
        #[cfg(not(balloc_loom))]
        {
            core::ptr::eq(c.as_ptr(), &EMPTY.0)
        }
        #[cfg(balloc_loom)]
        {
            let _ = c;
            false
        }
    }

    /// A new, empty, registered cache for the pool, in memory from the system allocator.
    /// Returns null when the system allocator fails (callers then use the shared path).
    ///
    /// # Safety
    /// - the caller holds a strong reference to `shared` for the whole call.
    pub(crate) unsafe fn create(shared: NonNull<PoolShared>) -> *mut Cache {
        // SAFETY: the caller holds a strong reference.
        let pool = unsafe { shared.as_ref() };
        let config = &pool.core().config;
        let total = config.slots;
        let slots = if total == 0 {
            core::ptr::null_mut()
        } else {
            // SAFETY: non-zero size.
            let p = unsafe { System.alloc(Layout::array::<usize>(total).expect("small")) };
            if p.is_null() {
                return core::ptr::null_mut();
            }
            p.cast::<usize>()
        };
        let mut at = 0usize;
        let stacks = core::array::from_fn(|k| {
            let cap = config.capacity.get(k).copied().unwrap_or(0) as usize;
            let start = at;
            at += cap;
            Stack {
                len: AtomicUsize::new(0),
                cap,
                batch: config.batch.get(k).copied().unwrap_or(0) as usize,
                slots: slots.wrapping_add(start),
            }
        });
        let cache = Cache {
            base: pool.core().base,
            tags: pool.core().tags.key(),
            shared,
            pool_id: pool.id,
            stacks,
            slots,
            total_slots: total,
            seen_pressure: Cell::new(pool.pressure.load(Ordering::Relaxed)),
            next: Cell::new(core::ptr::null_mut()),
            prev: Cell::new(core::ptr::null_mut()),
        };
        // SAFETY: non-zero size.
        let ptr = unsafe { System.alloc(Layout::new::<Cache>()) }.cast::<Cache>();
        if ptr.is_null() {
            if total > 0 {
                // SAFETY: allocated above with this layout, and never handed out.
                unsafe {
                    System.dealloc(slots.cast(), Layout::array::<usize>(total).expect("small"))
                };
            }
            return core::ptr::null_mut();
        }
        // SAFETY: freshly allocated for a Cache; then registered while we hold a strong ref.
        unsafe {
            ptr.write(cache);
            pool.register(ptr);
        }
        ptr
    }

    /// Flushes every block, deregisters and frees the cache.
    ///
    /// # Safety
    /// - `this` came from `create`, is not used after, and the caller holds a strong reference.
    pub(crate) unsafe fn destroy(this: *mut Cache) {
        // SAFETY: valid until freed below; the caller holds a strong reference.
        unsafe {
            let cache = &*this;
            cache.flush_all();
            cache.shared.as_ref().deregister(this);
            Self::free_memory(this);
        }
    }

    /// Frees the cache's memory without touching the pool (it may be gone).
    ///
    /// # Safety
    /// - `this` came from `create`, is deregistered or its pool is dead, and is not used after.
    pub(crate) unsafe fn free_memory(this: *mut Cache) {
        // SAFETY: allocated in `create` with these layouts.
        unsafe {
            let total = (*this).total_slots;
            if total > 0 {
                System.dealloc(
                    (*this).slots.cast(),
                    Layout::array::<usize>(total).expect("small"),
                );
            }
            core::ptr::drop_in_place(this);
            System.dealloc(this.cast(), Layout::new::<Cache>());
        }
    }

    #[inline]
    pub(crate) fn shared(&self) -> NonNull<PoolShared> {
        self.shared
    }

    #[inline]
    fn core(&self) -> &Core {
        // SAFETY: a cache is only used while its user holds a strong reference to the pool
        // (a LocalCache borrows the pool; thread caches upgrade or run inside a pool call).
        unsafe { self.shared.as_ref() }.core()
    }

    #[inline(always)]
    fn stack(&self, k: u32) -> &Stack {
        &self.stacks[(k & 63) as usize]
    }

    /// Fast path: a cached block of order `k`, untagged, ready for a caller.
    #[inline(always)]
    pub(crate) fn pop(&self, k: u32) -> Option<usize> {
        self.pop_ptr(k)
            .map(|p| p.as_ptr().addr() - self.base.as_ptr().addr())
    }

    /// Fast path: as [`Self::pop`], as a pointer (computed once, then used for the tag store,
    /// so the compiler need not reload the base after the store).
    #[inline(always)]
    pub(crate) fn pop_ptr(&self, k: u32) -> Option<NonNull<u8>> {
        let s = self.stack(k);
        let len = s.len.load(Ordering::Relaxed);
        if len == 0 {
            return None;
        }
        // SAFETY: len <= cap, so slot len - 1 is initialised and ours.
        let off = unsafe { *s.slots.add(len - 1) };
        s.len.store(len - 1, Ordering::Relaxed);
        Core::debug_check(self.base, off, k);
        // SAFETY: off < pool size, so base + off is inside the region (non-null).
        let p = unsafe { NonNull::new_unchecked(self.base.as_ptr().wrapping_add(off)) };
        // SAFETY: the block was cached, so it is ours and inside the region.
        unsafe { self.tags.clear_at(p, off) };
        Some(p)
    }

    /// Fast path: caches the block at `off` of order `k`, whose tag the caller has set.
    /// Returns false when the stack is full (or the order is not cached).
    #[inline(always)]
    fn push(&self, k: u32, off: usize) -> bool {
        let s = self.stack(k);
        let len = s.len.load(Ordering::Relaxed);
        if len >= s.cap {
            return false;
        }
        // SAFETY: len < cap, inside this stack's slots.
        unsafe { *s.slots.add(len) = off };
        s.len.store(len + 1, Ordering::Relaxed);
        true
    }

    /// Allocates a block of order `k`: from the cache, else refilled, else from the shared
    /// bitmaps directly; flushing caches before giving up.
    #[inline]
    pub(crate) fn alloc(&self, k: u32) -> Option<usize> {
        match self.pop(k) {
            Some(off) => Some(off),
            None => self.alloc_slow(k),
        }
    }

    /// Out-of-line slow path for `alloc`: refill, shared path, then out-of-memory handling.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, k: u32) -> Option<usize> {
        self.check_pressure();
        if let Some(off) = self.refill_and_pop(k) {
            return Some(off);
        }
        let core = self.core();
        if let Some(off) = core.alloc_shared(k) {
            return Some(off);
        }
        // Out of memory in the shared bitmaps. Our own cached blocks may coalesce into what we
        // need; then ask every other cache to flush at its next slow path, and retry a little.
        self.flush_all();
        // SAFETY: we hold a strong reference (see `core`).
        unsafe { self.shared.as_ref() }.alloc_retrying(k)
    }

    fn refill_and_pop(&self, k: u32) -> Option<usize> {
        let s = self.stack(k);
        if s.cap == 0 {
            return None;
        }
        let len = s.len.load(Ordering::Relaxed);
        let want = s.batch.min(s.cap - len).max(1);
        let mut n = len;
        self.core().refill(k, want, |off| {
            // SAFETY: refill pushes at most `want <= cap - len` blocks.
            unsafe { *s.slots.add(n) = off };
            n += 1;
        });
        s.len.store(n, Ordering::Relaxed);
        self.pop(k)
    }

    /// Frees a block of order `k` at `off` that the caller is known to hold (trusted path):
    /// tag it and cache it, flushing a batch when the stack is full.
    #[inline(always)]
    pub(crate) fn dealloc(&self, off: usize, k: u32) {
        if !self.try_dealloc(off, k) {
            self.dealloc_slow(off, k);
        }
    }

    /// Fast path of `dealloc`: caches the block if its stack has room. False on a miss.
    #[inline(always)]
    pub(crate) fn try_dealloc(&self, off: usize, k: u32) -> bool {
        let s = self.stack(k);
        let len = s.len.load(Ordering::Relaxed);
        if len >= s.cap {
            return false;
        }
        #[cfg(feature = "debug-fill")]
        self.core().debug_fill_freed(off, k);
        // SAFETY: the caller holds the block, so it is ours to tag.
        unsafe { self.tags.set(self.base, off) };
        // SAFETY: len < cap, inside this stack's slots.
        unsafe { *s.slots.add(len) = off };
        s.len.store(len + 1, Ordering::Relaxed);
        true
    }

    /// Out-of-line slow path for `dealloc`: a full stack, or an order that is not cached.
    #[cold]
    #[inline(never)]
    fn dealloc_slow(&self, off: usize, k: u32) {
        self.core().debug_fill_freed(off, k);
        if self.stack(k).cap > 0 {
            // SAFETY: the caller holds the block, so it is ours to tag.
            unsafe { self.tags.set(self.base, off) };
            self.push_slow(k, off);
        } else {
            let freed = self.core().free_shared(off, k);
            debug_assert!(freed.is_ok(), "trusted dealloc of a block that is not live");
        }
    }

    /// Frees the block at `off` of order `k` after validation found it live: claims its tag
    /// (cacheable orders) or its live bit, so a racing double free gets the error.
    pub(crate) fn free_validated(&self, off: usize, k: u32) -> Result<(), FreeError> {
        let core = self.core();
        if core.config.caches(k) {
            // SAFETY: the block was live when validated, so it is inside the mapped region.
            unsafe { core.tags.claim(core.base, off)? };
            core.debug_fill_freed(off, k);
            if !self.push(k, off) {
                self.push_slow(k, off);
            }
            Ok(())
        } else {
            core.debug_fill_freed(off, k);
            core.free_shared(off, k)
        }
    }

    /// Out-of-line slow path for a free into a full stack: flush the oldest batch, then push.
    #[cold]
    #[inline(never)]
    fn push_slow(&self, k: u32, off: usize) {
        self.check_pressure();
        let s = self.stack(k);
        if s.cap > 0 {
            self.flush_oldest(s, k, s.batch);
            let pushed = self.push(k, off);
            debug_assert!(pushed, "a flushed stack has room");
        } else {
            let r = self.core().free_shared(off, k);
            debug_assert!(r.is_ok(), "cached-order block not live");
        }
    }

    /// Returns the `count` oldest blocks of stack `k` to the shared bitmaps.
    fn flush_oldest(&self, s: &Stack, k: u32, count: usize) {
        let len = s.len.load(Ordering::Relaxed);
        let count = count.min(len);
        // SAFETY: the first `count <= len` slots are initialised and ours.
        let batch = unsafe { core::slice::from_raw_parts(s.slots, count) };
        self.core().free_batch(k, batch);
        // SAFETY: both ranges lie within the stack's `len` initialised slots.
        unsafe { core::ptr::copy(s.slots.add(count), s.slots, len - count) };
        s.len.store(len - count, Ordering::Relaxed);
    }

    /// Returns every cached block to the shared bitmaps.
    pub(crate) fn flush_all(&self) {
        for (i, s) in self.stacks.iter().enumerate() {
            // `cap` first: a plain field, so uncached orders cost no atomic load (nor a loom step).
            if s.cap > 0 && s.len.load(Ordering::Relaxed) > 0 {
                self.flush_oldest(s, i as u32, usize::MAX);
            }
        }
    }

    /// If some allocation ran out since we last looked, give everything back.
    fn check_pressure(&self) {
        // SAFETY: we hold a strong reference (see `core`).
        let now = unsafe { self.shared.as_ref() }
            .pressure
            .load(Ordering::Relaxed);
        if now != self.seen_pressure.get() {
            self.seen_pressure.set(now);
            self.flush_all();
        }
    }

    /// Bytes this cache holds (readable from any thread).
    pub(crate) fn cached_bytes(&self) -> usize {
        self.stacks
            .iter()
            .enumerate()
            .filter(|(_, s)| s.cap > 0)
            .map(|(k, s)| s.len.load(Ordering::Relaxed) << k)
            .sum()
    }

    pub(crate) fn next_registered(&self) -> *mut Cache {
        self.next.get()
    }

    /// Links `this` at the front of the list at `head`.
    ///
    /// # Safety
    /// - `this` is valid and unlinked; every cache in the list is valid; the caller holds the
    ///   registry lock.
    pub(crate) unsafe fn link_front(this: *mut Cache, head: &mut *mut Cache) {
        // SAFETY: guaranteed valid by the caller.
        unsafe {
            (*this).next.set(*head);
            (*this).prev.set(core::ptr::null_mut());
            if !head.is_null() {
                (**head).prev.set(this);
            }
        }
        *head = this;
    }

    /// Unlinks `this` from the list at `head`.
    ///
    /// # Safety
    /// - `this` is in the list; every cache in the list is valid; the caller holds the lock.
    pub(crate) unsafe fn unlink(this: *mut Cache, head: &mut *mut Cache) {
        // SAFETY: guaranteed valid by the caller.
        unsafe {
            let next = (*this).next.get();
            let prev = (*this).prev.get();
            if prev.is_null() {
                *head = next;
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
        }
    }
}
