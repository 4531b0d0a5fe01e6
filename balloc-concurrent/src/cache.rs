//! A per-thread cache: per order, a bounded stack of free blocks, owned by one thread.
//!
//! Cost of a hit: `pop` is one load of the stack's top, one load of the slot, one store of the
//! top, and a store that clears the block's tag; `push` the same with stores to the slot and
//! the tag. No atomic read-modify-write, and nothing another thread writes (the top is atomic
//! only so `stats` can read it from elsewhere).
//! A miss takes a magazine from the depot (see `depot`) or refills `batch` blocks from the
//! shared bitmaps; a full stack hands its `batch` oldest blocks to the depot, or flushes them
//! back to the bitmaps when the depot has no room. Blocks in a cache are live in the bitmaps and carry their tag (see
//! `tags`), so validated frees recognise them as free.
//!
//! Orderings: `top` is only written by the owner, so its loads and stores are `Relaxed` (they
//! order nothing: the slots are plain memory only the owner touches); `stats` reads it as a
//! snapshot. The pressure epoch is a `Relaxed` hint (see `alloc_slow`).
//!
//! Invariant: `0 <= len[k] <= cap[k]`, and `slots[k][..len[k]]` are the addresses of distinct
//! tagged blocks of order `k` that no caller holds. Slots hold addresses, not offsets, so a hit
//! needs no base arithmetic; a pointer is rebuilt from the pool's base with `with_addr`, which
//! keeps the region's provenance.
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

use crate::primitive::{AtomicPtr, Ordering};
use crate::shared::{Core, PoolShared};
use crate::tags::TagKey;

/// One stack per possible order value `0..=usize::BITS`, indexed by the order itself. The
/// order functions (`btok`, `fast_layout_order`) compute `usize::BITS - leading_zeros(..)`,
/// which the compiler knows is at most 64, so indexing needs no bounds check on the fast
/// path. Orders that are not cached (and 64, the order of impossible sizes) have capacity 0.
const STACKS: usize = usize::BITS as usize + 1;

/// A bounded stack of block addresses in the slots `bottom..limit`, filled up to `top`.
///
/// Pointers rather than a length: a pop compares `top` with `bottom` and a push with `limit`,
/// then reads or writes `*top` directly, with no index arithmetic and no separate load of the
/// slots' address (2 instructions less per alloc+free pair, callgrind).
struct Stack {
    /// The next free slot, `bottom + len`; written only by the owner (plain load + store),
    /// read by `stats`.
    top: AtomicPtr<usize>,
    /// The first slot.
    bottom: *mut usize,
    /// One past the last slot: `bottom + cap`.
    limit: *mut usize,
    batch: usize,
}

impl Stack {
    /// A stack with no room: pops and pushes always miss.
    #[cfg(not(balloc_loom))]
    const fn none() -> Stack {
        Stack {
            top: AtomicPtr::new(core::ptr::null_mut()),
            bottom: core::ptr::null_mut(),
            limit: core::ptr::null_mut(),
            batch: 0,
        }
    }

    /// Slots in all.
    #[inline]
    fn cap(&self) -> usize {
        (self.limit.addr() - self.bottom.addr()) / size_of::<usize>()
    }

    /// Blocks held (a snapshot when read from another thread than the owner).
    #[inline]
    fn len(&self) -> usize {
        (self.top.load(Ordering::Relaxed).addr() - self.bottom.addr()) / size_of::<usize>()
    }

    /// The `count` oldest blocks (owner only; `count <= len`).
    #[inline]
    fn oldest(&self, count: usize) -> &[usize] {
        debug_assert!(count <= self.len());
        // SAFETY: the first `len >= count` slots are initialised, and only the owner (the
        // caller) writes them.
        unsafe { core::slice::from_raw_parts(self.bottom, count) }
    }

    /// Drops the `count` oldest blocks, moving the rest down (owner only; `count <= len`).
    #[inline]
    fn drop_oldest(&self, count: usize) {
        let len = self.len();
        debug_assert!(count <= len);
        // SAFETY: both ranges lie within the stack's `len` initialised slots.
        unsafe { core::ptr::copy(self.bottom.add(count), self.bottom, len - count) };
        self.set_len(len - count);
    }

    /// Sets the number of blocks held (owner only; `n <= cap`).
    #[inline]
    fn set_len(&self, n: usize) {
        debug_assert!(n <= self.cap());
        self.top
            .store(self.bottom.wrapping_add(n), Ordering::Relaxed);
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
            let bottom = slots.wrapping_add(start);
            Stack {
                top: AtomicPtr::new(bottom),
                bottom,
                limit: bottom.wrapping_add(cap),
                batch: config.batch.get(k).copied().unwrap_or(0) as usize,
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
        &self.stacks[k as usize]
    }

    /// Offset of the block at `p` from the pool base.
    #[inline(always)]
    fn offset_of(&self, p: NonNull<u8>) -> usize {
        p.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr())
    }

    /// The block at offset `off`, with the region's provenance.
    #[inline(always)]
    fn block_at(&self, off: usize) -> NonNull<u8> {
        // SAFETY: off < pool size, so base + off is inside the region (non-null).
        unsafe { NonNull::new_unchecked(self.base.as_ptr().wrapping_add(off)) }
    }

    /// Fast path: a cached block of order `k`, untagged, ready for a caller.
    #[inline(always)]
    pub(crate) fn pop(&self, k: u32) -> Option<usize> {
        self.pop_ptr(k).map(|p| self.offset_of(p))
    }

    /// Fast path: as [`Self::pop`], as a pointer.
    #[inline(always)]
    pub(crate) fn pop_ptr(&self, k: u32) -> Option<NonNull<u8>> {
        let s = self.stack(k);
        let top = s.top.load(Ordering::Relaxed);
        if top == s.bottom {
            return None;
        }
        // SAFETY: bottom < top <= limit, so top - 1 is an initialised slot of this stack.
        let top = unsafe { top.sub(1) };
        // SAFETY: as above.
        let addr = unsafe { *top };
        s.top.store(top, Ordering::Relaxed);
        // SAFETY: `addr` is a block start inside the region (stack invariant), so non-null;
        // `with_addr` gives the pointer the region's provenance.
        let p = unsafe { NonNull::new_unchecked(self.base.as_ptr().with_addr(addr)) };
        Core::debug_check(self.base, self.offset_of(p), k);
        // SAFETY: the block was cached, so it is ours and inside the region.
        unsafe { self.tags.clear_at(p, self.offset_of(p)) };
        Some(p)
    }

    /// Fast path: caches the block at `off` of order `k`, whose tag the caller has set.
    /// Returns false when the stack is full (or the order is not cached).
    #[inline(always)]
    fn push(&self, k: u32, off: usize) -> bool {
        let s = self.stack(k);
        let top = s.top.load(Ordering::Relaxed);
        if top == s.limit {
            return false;
        }
        // SAFETY: bottom <= top < limit: a slot of this stack, and top + 1 <= limit.
        unsafe {
            *top = self.block_at(off).as_ptr().addr();
            s.top.store(top.add(1), Ordering::Relaxed);
        }
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
        let cap = s.cap();
        if cap == 0 {
            return None;
        }
        let len = s.len();
        let mut n = len;
        // A magazine another cache left in the depot first: no bitmap traffic at all.
        self.core().depot.take(k, cap - len, |addr| {
            // SAFETY: `take` hands on at most `cap - len` blocks.
            unsafe { *s.bottom.add(n) = addr };
            n += 1;
        });
        if n > len {
            s.set_len(n);
            return self.pop(k);
        }
        let want = s.batch.min(cap - len).max(1);
        self.core().refill(k, want, |off| {
            // SAFETY: refill pushes at most `want <= cap - len` blocks.
            unsafe { *s.bottom.add(n) = self.block_at(off).as_ptr().addr() };
            n += 1;
        });
        s.set_len(n);
        self.pop(k)
    }

    /// Frees the block of order `k` at `p` that the caller is known to hold (trusted path):
    /// tag it and cache it, flushing a batch when the stack is full.
    #[inline(always)]
    pub(crate) fn dealloc(&self, p: NonNull<u8>, k: u32) {
        if !self.try_dealloc(p, k) {
            self.dealloc_slow(self.offset_of(p), k);
        }
    }

    /// Fast path of `dealloc`: caches the block at `p` if its stack has room. False on a miss.
    #[inline(always)]
    pub(crate) fn try_dealloc(&self, p: NonNull<u8>, k: u32) -> bool {
        let s = self.stack(k);
        let top = s.top.load(Ordering::Relaxed);
        if top == s.limit {
            return false;
        }
        #[cfg(feature = "debug-fill")]
        self.core().debug_fill_freed(self.offset_of(p), k);
        // SAFETY: the caller holds the block, so it is ours to tag.
        unsafe { self.tags.set_at(p, self.offset_of(p)) };
        // SAFETY: bottom <= top < limit: a slot of this stack, and top + 1 <= limit.
        unsafe {
            *top = p.as_ptr().addr();
            s.top.store(top.add(1), Ordering::Relaxed);
        }
        true
    }

    /// Out-of-line slow path for `dealloc`: a full stack, or an order that is not cached.
    #[cold]
    #[inline(never)]
    fn dealloc_slow(&self, off: usize, k: u32) {
        self.core().debug_fill_freed(off, k);
        if self.stack(k).cap() > 0 {
            // SAFETY: the caller holds the block, so it is ours to tag.
            unsafe { self.tags.set_at(self.block_at(off), off) };
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

    /// Out-of-line slow path for a free into a full stack: move the oldest batch to the depot
    /// as a magazine (or, when the depot is full, back to the bitmaps), then push.
    #[cold]
    #[inline(never)]
    fn push_slow(&self, k: u32, off: usize) {
        self.check_pressure();
        let s = self.stack(k);
        if s.cap() > 0 {
            let count = s.batch.min(s.len());
            let core = self.core();
            let slots = core.config.depot_slots[k as usize] as usize;
            if core.depot.deposit(k, slots, s.oldest(count)) {
                s.drop_oldest(count);
            } else {
                self.flush_oldest(s, k, s.batch);
            }
            let pushed = self.push(k, off);
            debug_assert!(pushed, "a flushed stack has room");
        } else {
            let r = self.core().free_shared(off, k);
            debug_assert!(r.is_ok(), "cached-order block not live");
        }
    }

    /// Returns the `count` oldest blocks of stack `k` to the shared bitmaps.
    fn flush_oldest(&self, s: &Stack, k: u32, count: usize) {
        let count = count.min(s.len());
        self.core().free_batch(k, s.oldest(count));
        s.drop_oldest(count);
    }

    /// Returns every cached block to the shared bitmaps.
    pub(crate) fn flush_all(&self) {
        for (i, s) in self.stacks.iter().enumerate() {
            // `cap` first: plain fields, so uncached orders cost no atomic load (nor a loom step).
            if s.cap() > 0 && s.len() > 0 {
                self.flush_oldest(s, i as u32, usize::MAX);
            }
        }
        // Magazines this cache (or any other) deposited: each cache's last flush comes after
        // its last deposit, so the depot is empty once no cache is alive.
        self.core().drain_depot();
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
            .filter(|(_, s)| s.cap() > 0)
            .map(|(k, s)| s.len() << k)
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
