//! A thread cache: per order, a bounded stack of free blocks, used by one thread at a time.
//!
//! Cost of a hit: `pop` is one load of the stack's top, one load of the slot, one store of the
//! top, and a store that clears the block's tag; `push` the same with stores to the slot and
//! the tag. No atomic read-modify-write, and nothing another thread writes (the top is atomic
//! only so `stats` can read it from elsewhere). Misses and full stacks are the allocation
//! path's business (`ladder`); this module only holds the stacks.
//!
//! Orderings: `top` is only written by the owner, so its loads and stores are `Relaxed` (they
//! order nothing: the entries are plain memory only the owner touches); `stats` reads it as a
//! snapshot.
//!
//! Invariant: `bottom <= top <= limit <= end` per stack, and the entries `bottom..top` hold the
//! addresses of distinct blocks of the stack's order, tagged (see `tags`), live in the bitmaps,
//! that no caller holds. Slots hold addresses, not offsets, so a hit needs no base arithmetic;
//! a pointer is rebuilt from the pool's base with `with_addr`, which keeps the region's
//! provenance.
//!
//! Caches are owned by the pool's registry (`registry`), which hands a retired one to the next
//! thread instead of freeing it, so nothing that reads a cache from another thread (`stats`)
//! can see it freed.

use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout, System};

use crate::config::CacheConfig;
use crate::facade::{AtomicPtr, AtomicUsize, Ordering};
use crate::fault::{self, Fault};
use crate::region::Region;
use crate::shared::PoolShared;
use crate::tags::TagKey;
use crate::units::{Offset, Order};

/// One stack per possible order value `1..=usize::BITS`, stack `k` at index `k - 1`. The
/// order functions (`btok`, `fast_layout_order`) compute `usize::BITS - leading_zeros(..)`,
/// which the compiler knows is in `1..=64`, so indexing needs no bounds check on the fast
/// path, and `k - 1` is the `bsr` they start from (the index of the stack's words, see
/// [`Stacks`]).
/// Orders that are not cached (and 64, the order of impossible sizes) have capacity 0.
const STACKS: usize = usize::BITS as usize;

/// A cache's depot home before its first deposit.
const NO_HOME: usize = usize::MAX;

/// The index of order `k`'s stack and batch (see [`STACKS`]).
#[inline(always)]
fn index(k: Order) -> usize {
    k.slot() - 1
}

/// The stacks of one cache, one per possible order, as parallel arrays: stack `k` is entry
/// `index(k)` of each. A bounded stack of block addresses holds the entries `bottom..end`,
/// filled up to `top`, taking pushes up to `limit` (`end`, or less while the cache is closed).
///
/// Pointers rather than a length: a pop compares `top` with `bottom` and a push with `limit`,
/// then reads or writes `*top` directly, with no index arithmetic and no separate load of the
/// entries' address. Parallel arrays of words rather than an array of four-word stacks: the fast
/// paths address `top[i]`, `bottom[i]` and `limit[i]` as `cache + 8 i + displacement`, which
/// x86-64 folds into each load and store, where a four-word stack needs a shift first.
#[repr(C)]
struct Stacks {
    /// The next free slot, `bottom + len`; written only by the owner (plain load + store),
    /// read by `stats`.
    top: [AtomicPtr<usize>; STACKS],
    /// The first slot.
    bottom: [*mut usize; STACKS],
    /// Where pushes stop: `end`, or `top` while the cache is closed (owner only).
    limit: [Cell<*mut usize>; STACKS],
    /// One past the last slot: `bottom + cap`.
    end: [*mut usize; STACKS],
}

/// Stack `k` of a cache: its entries in [`Stacks`].
#[derive(Clone, Copy)]
struct Stack<'a> {
    stacks: &'a Stacks,
    i: usize,
}

impl<'a> Stack<'a> {
    #[inline(always)]
    fn top(self) -> &'a AtomicPtr<usize> {
        &self.stacks.top[self.i]
    }

    #[inline(always)]
    fn bottom(self) -> *mut usize {
        self.stacks.bottom[self.i]
    }

    #[inline(always)]
    fn limit(self) -> &'a Cell<*mut usize> {
        &self.stacks.limit[self.i]
    }

    #[inline(always)]
    fn end(self) -> *mut usize {
        self.stacks.end[self.i]
    }

    /// Slots in all.
    #[inline]
    fn cap(self) -> usize {
        (self.end().addr() - self.bottom().addr()) / size_of::<usize>()
    }

    /// Blocks held (a snapshot when read from another thread than the owner).
    #[inline]
    fn len(self) -> usize {
        (self.top().load(Ordering::Relaxed).addr() - self.bottom().addr()) / size_of::<usize>()
    }

    /// Sets the number of blocks held (owner only; `n <= cap`).
    #[inline]
    fn set_len(self, n: usize) {
        debug_assert!(n <= self.cap());
        self.top()
            .store(self.bottom().wrapping_add(n), Ordering::Relaxed);
    }
}

/// What a cache copies from its pool.
#[derive(Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) base: NonNull<u8>,
    /// The region's size in bytes.
    pub(crate) region_bytes: usize,
    pub(crate) tags: TagKey,
    pub(crate) pool_id: u64,
    pub(crate) shared: NonNull<PoolShared>,
}

impl Owner {
    pub(crate) fn new(region: &Region, pool_id: u64, shared: NonNull<PoolShared>) -> Self {
        Self {
            base: region.base,
            region_bytes: region.top.bytes(),
            tags: region.tag_key(),
            pool_id,
            shared,
        }
    }
}

/// One thread's cache for one pool.
///
/// `repr(C)` with the stacks first: stack `k`'s top is at `cache + 8 (k - 1)`, where `k - 1`
/// is the `bsr` the order functions start from, so the fast paths address its words with
/// constant displacements (the compiler's own layout left the stacks behind the other fields).
/// Aligned to 128 bytes (as `CachePadded`): the system allocator may place two threads' caches
/// next to each other, and no line may hold parts of both.
#[repr(C, align(128))]
pub(crate) struct Cache {
    stacks: Stacks,
    /// The pool's base and region size, copied so a hit never reaches the shared state.
    base: NonNull<u8>,
    region_bytes: usize,
    tags: TagKey,
    /// The id of the pool this cache serves (the thread-cache lookup key).
    pub(crate) pool_id: u64,
    /// The pool's shared state (for a thread's cache at exit, which holds a weak reference).
    pub(crate) shared: NonNull<PoolShared>,
    /// `batches[index(k)]`: blocks moved per refill or flush of order `k`.
    batches: [u16; STACKS],
    /// The entries of all stacks, one allocation of `total_capacity` words (null when 0).
    entries: *mut usize,
    total_capacity: usize,
    /// The cached orders, for walks over all stacks.
    first: Order,
    last: Order,
    /// This cache's home in the depot, the shard its deposits go to (see `depot`): a number
    /// taken at its first deposit, [`NO_HOME`] until then (owner only).
    depot_home: Cell<usize>,
    /// `depot_affinity[index(k)]`: the depot shard this cache takes magazines of order `k`
    /// from first: the last one it found one in, at first shard 0 (owner only).
    depot_affinity: [Cell<u8>; STACKS],
    /// The pool's `pressure` epoch this cache last acted on (owner only).
    pub(crate) seen_pressure: Cell<u64>,
    /// Whether the cache is closed (see [`Cache::close`]; owner only).
    closed: Cell<bool>,
    /// Registry: the next cache of the pool's list; set before the cache is published, never
    /// changed after.
    pub(crate) next: *mut Cache,
    /// Registry: 1 while a thread or a `LocalCache` uses this cache, 0 while it waits for one.
    pub(crate) in_use: AtomicUsize,
}

impl Cache {
    /// A cache with the pool's per-order limits and no blocks, not yet registered. With no
    /// capacity at all (`CacheConfig` turned caching off) it is the *empty* cache, whose fast
    /// paths always miss. `None` when the system allocator fails.
    pub(crate) fn create(
        owner: Owner,
        config: &CacheConfig,
        pressure: u64,
    ) -> Option<NonNull<Cache>> {
        Self::build(owner, config, config.total_capacity, pressure)
    }

    /// The empty cache of a pool: capacity 0 everywhere, never registered, never written.
    pub(crate) fn create_empty(owner: Owner) -> Option<NonNull<Cache>> {
        let none = CacheConfig::new(balloc_core::MIN_K, 0..=0, 0, 1);
        Self::build(owner, &none, 0, 0)
    }

    fn build(
        owner: Owner,
        config: &CacheConfig,
        total: usize,
        pressure: u64,
    ) -> Option<NonNull<Cache>> {
        let entries = if total == 0 {
            core::ptr::null_mut()
        } else {
            // SAFETY: non-zero size. Zeroed, so every entry is initialised and `append` can
            // lend the free ones out as a slice.
            let p = unsafe { System.alloc_zeroed(Self::entries_layout(total)) };
            if p.is_null() {
                return None;
            }
            p.cast::<usize>()
        };
        let mut bottom = [core::ptr::null_mut::<usize>(); STACKS];
        let mut end = [core::ptr::null_mut::<usize>(); STACKS];
        let mut at = 0usize;
        for i in 0..STACKS {
            let k = i + 1;
            let cap = if total == 0 {
                0
            } else {
                config.capacity.get(k).copied().unwrap_or(0) as usize
            };
            bottom[i] = entries.wrapping_add(at);
            end[i] = bottom[i].wrapping_add(cap);
            at += cap;
        }
        let stacks = Stacks {
            top: core::array::from_fn(|i| AtomicPtr::new(bottom[i])),
            bottom,
            limit: core::array::from_fn(|i| Cell::new(end[i])),
            end,
        };
        let batches = core::array::from_fn(|i| config.batch.get(i + 1).copied().unwrap_or(0));
        let cache = Cache {
            base: owner.base,
            region_bytes: owner.region_bytes,
            tags: owner.tags,
            pool_id: owner.pool_id,
            shared: owner.shared,
            stacks,
            batches,
            entries,
            total_capacity: total,
            first: config.first,
            last: config.last,
            depot_home: Cell::new(NO_HOME),
            depot_affinity: core::array::from_fn(|_| Cell::new(0)),
            seen_pressure: Cell::new(pressure),
            closed: Cell::new(false),
            next: core::ptr::null_mut(),
            in_use: AtomicUsize::new(1),
        };
        // SAFETY: non-zero size.
        let ptr = unsafe { System.alloc(Layout::new::<Cache>()) }.cast::<Cache>();
        let Some(ptr) = NonNull::new(ptr) else {
            if total > 0 {
                // SAFETY: allocated above with this layout, and never handed out.
                unsafe { System.dealloc(entries.cast(), Self::entries_layout(total)) };
            }
            return None;
        };
        // SAFETY: freshly allocated for a Cache.
        unsafe { ptr.as_ptr().write(cache) };
        Some(ptr)
    }

    fn entries_layout(total: usize) -> Layout {
        Layout::array::<usize>(total).expect("balloc: cache capacity overflows a layout")
    }

    /// Frees a cache's memory (its blocks, if any, are forgotten: the caller flushed them or
    /// the pool's region is gone).
    ///
    /// # Safety
    /// - `this` came from `create` or `create_empty`, and nothing uses it after.
    pub(crate) unsafe fn free_memory(this: NonNull<Cache>) {
        // SAFETY: allocated in `build` with these layouts; the caller gives it up.
        unsafe {
            let total = this.as_ref().total_capacity;
            if total > 0 {
                System.dealloc(this.as_ref().entries.cast(), Self::entries_layout(total));
            }
            core::ptr::drop_in_place(this.as_ptr());
            System.dealloc(this.as_ptr().cast(), Layout::new::<Cache>());
        }
    }

    #[inline(always)]
    fn stack(&self, k: Order) -> Stack<'_> {
        Stack {
            stacks: &self.stacks,
            i: index(k),
        }
    }

    /// Offset of the block at `p` from the pool base.
    #[inline(always)]
    fn offset_of(&self, p: NonNull<u8>) -> Offset {
        Offset(p.as_ptr().addr().wrapping_sub(self.base.as_ptr().addr()))
    }

    /// Fast path: a cached block of order `k`, untagged, ready for a caller.
    #[inline(always)]
    pub(crate) fn pop(&self, k: Order) -> Option<NonNull<u8>> {
        let s = self.stack(k);
        let top = s.top().load(Ordering::Relaxed);
        if top == s.bottom() {
            return None;
        }
        // SAFETY: bottom < top <= limit, so top - 1 is an initialised entry of this stack.
        let top = unsafe { top.sub(1) };
        // SAFETY: as above.
        let addr = unsafe { *top };
        s.top().store(top, Ordering::Relaxed);
        // SAFETY: `addr` is a block start inside the region (stack invariant), so non-null;
        // `with_addr` gives the pointer the region's provenance.
        let p = unsafe { NonNull::new_unchecked(self.base.as_ptr().with_addr(addr)) };
        crate::region::debug_check(self.base, self.offset_of(p), k);
        // SAFETY: the block was cached, so it is ours and inside the region.
        unsafe { self.tags.clear(p, self.offset_of(p)) };
        Some(p)
    }

    /// Fast path of a trusted free: tags and caches the block at `p` of order `k`, which the
    /// caller says it holds. False, with nothing written, when the stack is full (or the order
    /// is not cached).
    ///
    /// Checked, in every build: a pointer outside the region, or a block whose tag word
    /// already holds its tag (it is cached-free: a double free), stops the process
    /// (`fault::stop`) before anything is written.
    #[inline(always)]
    pub(crate) fn push(&self, k: Order, p: NonNull<u8>) -> bool {
        let Some((s, top)) = self.free_slot(k) else {
            return false;
        };
        let off = self.offset_of(p);
        if off.0 >= self.region_bytes {
            fault::stop(Fault::Foreign, p.as_ptr());
        }
        crate::region::debug_fill_freed(self.base, off, k);
        // SAFETY: `p` is inside the region, and the caller holds the block (the swap reports a
        // block that is already cached instead of writing it).
        if unsafe { self.tags.set_unless_tagged(p, off) } {
            fault::stop(Fault::DoubleFree, p.as_ptr());
        }
        Self::fill(s, top, p);
        true
    }

    /// Caches the block at `p` of order `k` whose tag the caller has already installed (a
    /// validated free). False when the stack is full.
    #[inline]
    pub(crate) fn push_tagged(&self, k: Order, p: NonNull<u8>) -> bool {
        let Some((s, top)) = self.free_slot(k) else {
            return false;
        };
        Self::fill(s, top, p);
        true
    }

    /// Stack `k` and its top entry, if pushes may fill it.
    #[inline(always)]
    fn free_slot(&self, k: Order) -> Option<(Stack<'_>, *mut usize)> {
        let s = self.stack(k);
        let top = s.top().load(Ordering::Relaxed);
        (top != s.limit().get()).then_some((s, top))
    }

    /// Stores `p` in the free entry `top` of `s` (from [`Self::free_slot`]) and moves the top.
    #[inline(always)]
    fn fill(s: Stack<'_>, top: *mut usize, p: NonNull<u8>) {
        // SAFETY: bottom <= top < limit <= end (`free_slot`): an entry of this stack, and
        // top + 1 <= end.
        unsafe {
            *top = p.as_ptr().addr();
            s.top().store(top.add(1), Ordering::Relaxed);
        }
    }

    /// Whether order `k` goes through this cache.
    #[inline]
    pub(crate) fn caches(&self, k: Order) -> bool {
        self.stack(k).cap() > 0
    }

    /// This cache's home in the depot (see `depot`): taken from `number` at the first call
    /// (the caches that never deposit, a producer's, take no home from those that do).
    #[inline]
    pub(crate) fn depot_home(&self, number: impl FnOnce() -> usize) -> usize {
        if self.depot_home.get() == NO_HOME {
            self.depot_home.set(number());
        }
        self.depot_home.get()
    }

    /// The depot shard this cache takes magazines of order `k` from first (owner only).
    #[inline]
    pub(crate) fn depot_affinity(&self, k: Order) -> &Cell<u8> {
        &self.depot_affinity[index(k)]
    }

    /// Blocks moved per refill or flush of order `k`.
    #[inline]
    pub(crate) fn batch(&self, k: Order) -> usize {
        self.batches[index(k)] as usize
    }

    /// Free entries of order `k` (none while the cache is closed).
    #[inline]
    pub(crate) fn room(&self, k: Order) -> usize {
        let s = self.stack(k);
        (s.limit().get().addr() - s.top().load(Ordering::Relaxed).addr()) / size_of::<usize>()
    }

    /// Closes the cache: pushes miss (frees go to the allocation path) until [`Self::open`].
    /// The owner calls it when an allocation ran out of memory, so that blocks its thread
    /// frees meanwhile reach the pool at once instead of waiting in the cache. A cache closed
    /// empty stays empty until it is opened: nothing can be pushed, and only refills (which
    /// open it first) add blocks.
    #[inline]
    pub(crate) fn close(&self) {
        if !self.closed.replace(true) {
            for s in self.cached_stacks() {
                s.limit().set(s.top().load(Ordering::Relaxed));
            }
        }
    }

    /// Reopens a closed cache (owner only; a no-op on an open one).
    #[inline]
    pub(crate) fn open(&self) {
        if self.closed.replace(false) {
            for s in self.cached_stacks() {
                s.limit().set(s.end());
            }
        }
    }

    /// Whether the cache is closed (see [`Self::close`]).
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn cached_stacks(&self) -> impl Iterator<Item = Stack<'_>> {
        // `max(1)`: the empty cache's range is order 0, which has no stack (none is cached).
        (index(self.first.max(Order(1)))..=index(self.last.max(Order(1)))).map(|i| Stack {
            stacks: &self.stacks,
            i,
        })
    }

    /// Blocks held of order `k`.
    #[inline]
    pub(crate) fn len(&self, k: Order) -> usize {
        self.stack(k).len()
    }

    /// Appends tagged blocks (by address) to stack `k`: `fill` gets the stack's free entries
    /// ([`Self::room`] of them), writes blocks into the first ones and returns how many. Owner
    /// only.
    #[inline]
    pub(crate) fn append(&self, k: Order, fill: impl FnOnce(&mut [usize]) -> usize) -> usize {
        let s = self.stack(k);
        let (len, room) = (s.len(), self.room(k));
        // SAFETY: the entries `len..len + room` lie inside the stack (room <= cap - len), are
        // initialised (zeroed at allocation, written since), and only the owner, the caller,
        // touches them.
        let free = unsafe { core::slice::from_raw_parts_mut(s.bottom().add(len), room) };
        let n = fill(free);
        assert!(n <= room, "balloc: a cache refill overran its stack");
        s.set_len(len + n);
        n
    }

    /// The `count` oldest blocks of stack `k` (owner only; `count <= len`).
    #[inline]
    pub(crate) fn oldest(&self, k: Order, count: usize) -> &[usize] {
        let s = self.stack(k);
        assert!(count <= s.len());
        // SAFETY: the first `len >= count` entries are initialised, and only the owner (the
        // caller) writes them.
        unsafe { core::slice::from_raw_parts(s.bottom(), count) }
    }

    /// Drops the `count` oldest blocks of stack `k`, moving the rest down (owner only).
    #[inline]
    pub(crate) fn drop_oldest(&self, k: Order, count: usize) {
        let s = self.stack(k);
        let len = s.len();
        assert!(count <= len);
        // SAFETY: both ranges lie within the stack's `len` initialised entries.
        unsafe { core::ptr::copy(s.bottom().add(count), s.bottom(), len - count) };
        s.set_len(len - count);
    }

    /// The cached orders that hold blocks, lowest first.
    pub(crate) fn nonempty_orders(&self) -> impl Iterator<Item = Order> + '_ {
        (self.first.get()..=self.last.get())
            .map(Order)
            .filter(|&k| self.len(k) > 0)
    }

    /// Whether the cache holds no block (owner only for an exact answer).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.cached_stacks()
            .all(|s| s.top().load(Ordering::Relaxed) == s.bottom())
    }

    /// Bytes this cache holds (readable from any thread: a snapshot).
    pub(crate) fn cached_bytes(&self) -> usize {
        (self.first.get()..=self.last.get())
            .map(|k| self.len(Order(k)) << k)
            .sum()
    }
}
