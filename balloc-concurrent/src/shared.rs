//! The state all threads share: the region, the bitmaps, the cache registry, and the reference
//! counts that keep it alive for thread caches that outlive the pool's owner.
//!
//! Lifetime: `strong` counts the owner (`ConcurrentPool`) plus threads flushing a cache at exit;
//! while it is non-zero the region and bitmaps (`Core`) are valid. `weak` counts the owner plus
//! every thread-local cache; while it is non-zero the `PoolShared` struct itself is valid, so a
//! thread that exits after the pool was dropped can still see that it was (`strong == 0`) and
//! skip the flush. Both are released with `AcqRel`, so the last holder sees every other
//! holder's writes before it frees.

use core::cell::UnsafeCell;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout, System};

use balloc_core::geometry::{block_offset, find_live_block};
use balloc_core::os::Mapping;
use balloc_core::{FreeError, InitError, Stats};

use crate::bitmaps::BlockMaps;
use crate::cache::Cache;
use crate::config::CacheConfig;
use crate::depot::{Depot, MAGAZINE};
use crate::primitive::{AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::tags::Tags;

/// How many times an allocation that found nothing retries after asking caches to flush.
const OOM_RETRIES: usize = if cfg!(balloc_loom) { 1 } else { 8 };

/// Pool ids are never reused, so a thread cache can never mistake a new pool for a dropped one
/// that lived at the same address. (A plain std atomic: not part of the modelled protocol.)
static NEXT_POOL_ID: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

/// What is valid while `strong > 0`.
pub(crate) struct Core {
    pub(crate) base: NonNull<u8>,
    pub(crate) kval: u32,
    pub(crate) maps: BlockMaps,
    pub(crate) tags: Tags,
    pub(crate) config: CacheConfig,
    /// Full magazines of cached blocks on their way between caches.
    pub(crate) depot: Depot,
    _region: Mapping,
}

/// The registry of caches, for `stats` (cached bytes) and for the pool to list them.
/// Links live in the caches and are only touched under the registry's lock.
pub(crate) struct Registry {
    pub(crate) head: *mut Cache,
}

// SAFETY: the registry only holds pointers to caches, which are only dereferenced under the
// registry's lock, and caches deregister before they are freed.
unsafe impl Send for Registry {}

pub(crate) struct PoolShared {
    strong: AtomicUsize,
    weak: AtomicUsize,
    pub(crate) id: u64,
    /// Bumped when an allocation runs out; caches that see it change flush everything.
    pub(crate) pressure: AtomicU64,
    pub(crate) registry: Mutex<Registry>,
    core: UnsafeCell<ManuallyDrop<Core>>,
}

impl PoolShared {
    /// Builds the shared state in memory from the system allocator (never the global one, so
    /// a pool can be the global allocator), with one strong and one weak reference.
    pub(crate) fn create(kval: u32, config: CacheConfig) -> Result<NonNull<PoolShared>, InitError> {
        let size = 1usize << kval;
        let region = Mapping::reserve(size, size)?;
        let maps = BlockMaps::new(kval)?;
        let id = NEXT_POOL_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        let base = region.as_ptr();
        // Odd, so `secret ^ addr` (addr a multiple of 64) is odd, never 0: tags need no `| 1`.
        let secret = random_secret(id, base.as_ptr().addr()) | 1;
        let core = Core {
            base,
            kval,
            maps,
            tags: Tags::new(kval, secret),
            config,
            depot: Depot::new(),
            _region: region,
        };
        // The whole region starts as one free block of the top order.
        core.maps.release(kval, 0);
        let shared = PoolShared {
            strong: AtomicUsize::new(1),
            weak: AtomicUsize::new(1),
            id,
            pressure: AtomicU64::new(0),
            registry: Mutex::new(Registry {
                head: core::ptr::null_mut(),
            }),
            core: UnsafeCell::new(ManuallyDrop::new(core)),
        };
        let layout = Layout::new::<PoolShared>();
        // SAFETY: PoolShared is not zero-sized.
        let ptr = unsafe { System.alloc(layout) }.cast::<PoolShared>();
        let Some(ptr) = NonNull::new(ptr) else {
            return Err(InitError::Os { code: 0 });
        };
        // SAFETY: freshly allocated with PoolShared's layout.
        unsafe { ptr.as_ptr().write(shared) };
        Ok(ptr)
    }

    /// The region and bitmaps.
    ///
    /// The caller must hold a strong reference (the pool's owner, a `LocalCache` borrowing it,
    /// or a successful [`Self::try_upgrade`]) for as long as it uses the result.
    #[inline]
    pub(crate) fn core(&self) -> &Core {
        // SAFETY: `core` is only written by `release_strong` when the last strong reference
        // goes, and callers hold one (documented contract of this crate-private method).
        unsafe { &*self.core.get() }
    }

    /// Takes a strong reference if the pool is still alive.
    pub(crate) fn try_upgrade(&self) -> bool {
        // Acquire on every read, including the one that sees 0: a caller that finds the pool
        // dead then frees its cache without the registry lock, and must see everything the last
        // strong holder did first (its `stats` may have been reading that cache). ThreadSanitizer
        // caught the Relaxed version: a pool dropped right after `stats`, racing a thread-exit.
        let mut n = self.strong.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return false;
            }
            // Acquire: if we get in, everything done by the owner before is visible.
            match self
                .strong
                .compare_exchange_weak(n, n + 1, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// True when the pool's owner and every flushing thread are gone (its region released).
    pub(crate) fn is_dead(&self) -> bool {
        // Acquire: pairs with the last `release_strong`, so a dead pool's teardown is visible.
        self.strong.load(Ordering::Acquire) == 0
    }

    /// Out-of-memory handling of every allocation path: retry the shared bitmaps a few times,
    /// after raising the pressure epoch once so that every cache flushes at its next slow path.
    /// The caller holds a strong reference (and has flushed its own cache, if it has one).
    pub(crate) fn alloc_retrying(&self, k: u32) -> Option<usize> {
        for attempt in 0..=OOM_RETRIES {
            if let Some(off) = self.core().alloc_shared(k) {
                return Some(off);
            }
            if attempt == 0 {
                // Relaxed: a hint; caches that see it flush, and their flush's CASes publish.
                self.pressure.fetch_add(1, Ordering::Relaxed);
            }
            // Magazines deposited since (or before) are anyone's to return.
            self.core().drain_depot();
            crate::primitive::yield_now();
        }
        None
    }

    /// Thread caches (`thread_cache.rs`) alive for this pool: `weak` less the owner's. The
    /// caller is the owner (so `weak >= 1`). A snapshot.
    ///
    /// Acquire: pairs with the `AcqRel` decrement in [`Self::release_weak`], the last step of a
    /// cache's retirement (`thread_cache::retire`), so a count that no longer includes a cache
    /// comes after everything its retirement did (flush, depot drain, deregistration).
    pub(crate) fn thread_caches(&self) -> usize {
        self.weak.load(Ordering::Acquire) - 1
    }

    /// Adds a weak reference (the caller holds a strong one).
    pub(crate) fn add_weak(&self) {
        // Relaxed: the caller's strong reference already keeps the struct alive (as Arc::clone).
        self.weak.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a strong reference; the last one releases the region and bitmaps.
    ///
    /// # Safety
    /// - the caller holds a strong reference and does not use `core()` after this call.
    pub(crate) unsafe fn release_strong(&self) {
        // AcqRel: the last releaser sees every other holder's use of the core before dropping it.
        if self.strong.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: no strong reference is left, so nobody else can reach `core`.
            unsafe { ManuallyDrop::drop(&mut *self.core.get()) };
        }
    }

    /// Drops a weak reference; the last one frees the struct.
    ///
    /// # Safety
    /// - `this` holds a weak reference and is not used after this call.
    pub(crate) unsafe fn release_weak(this: NonNull<PoolShared>) {
        // SAFETY: the caller holds a weak reference, so the struct is alive.
        let last = unsafe { this.as_ref() }.weak.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            // SAFETY: no reference is left; the struct was made by `create` with this layout.
            unsafe {
                core::ptr::drop_in_place(this.as_ptr());
                System.dealloc(this.as_ptr().cast(), Layout::new::<PoolShared>());
            }
        }
    }

    /// Links `cache` into the registry.
    ///
    /// # Safety
    /// - `cache` is valid and not registered, and stays valid until `deregister`.
    pub(crate) unsafe fn register(&self, cache: *mut Cache) {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the caller guarantees `cache` is valid; links are guarded by the lock we hold.
        unsafe { Cache::link_front(cache, &mut reg.head) };
    }

    /// Unlinks `cache` from the registry.
    ///
    /// # Safety
    /// - `cache` was registered with this pool and is still valid.
    pub(crate) unsafe fn deregister(&self, cache: *mut Cache) {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as above.
        unsafe { Cache::unlink(cache, &mut reg.head) };
    }

    /// Bytes held by all registered caches (a snapshot).
    pub(crate) fn cached_bytes(&self) -> usize {
        let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0;
        let mut c = reg.head;
        while !c.is_null() {
            // SAFETY: registered caches are valid while linked, and we hold the lock.
            let cache = unsafe { &*c };
            total += cache.cached_bytes();
            c = cache.next_registered();
        }
        total + self.core().depot.cached_bytes()
    }
}

impl Core {
    /// Under `debug-fill`: fills a block just freed by a caller (all but its first word, which
    /// holds or will hold its tag).
    #[inline(always)]
    pub(crate) fn debug_fill_freed(&self, off: usize, k: u32) {
        #[cfg(feature = "debug-fill")]
        // SAFETY: the caller just gave the block back; it is inside the region.
        unsafe {
            balloc_core::debug_fill::fill_from(self.base, off, k, 8)
        };
        let _ = (off, k);
    }

    /// Under `debug-fill`: checks a block about to be handed to a caller (panics on a write
    /// after free).
    #[inline(always)]
    pub(crate) fn debug_check(base: NonNull<u8>, off: usize, k: u32) {
        #[cfg(feature = "debug-fill")]
        // SAFETY: the block was free and is now ours, inside the region.
        unsafe {
            balloc_core::debug_fill::check(base, off, k)
        };
        let _ = (base, off, k);
    }

    /// The offset and order of the live block starting at `ptr`.
    #[inline]
    pub(crate) fn find_live(&self, ptr: NonNull<u8>) -> Result<(usize, u32), FreeError> {
        let off = block_offset(self.base.as_ptr().addr(), ptr.as_ptr().addr(), self.kval)?;
        let k = find_live_block(off, self.kval, |k, i| self.maps.is_live(k, i))?;
        Ok((off, k))
    }

    /// The pointer at offset `off`, with the region's provenance.
    #[inline]
    pub(crate) fn ptr_at(&self, off: usize) -> NonNull<u8> {
        // SAFETY: off < 2^kval, so base + off is inside the mapped region (non-null).
        unsafe { NonNull::new_unchecked(self.base.as_ptr().wrapping_add(off)) }
    }

    /// Claims one free block of an order above `k` (the smallest that has one), for the caller
    /// to split. Call inside a transit. Returns its order and offset.
    fn claim_above(&self, k: u32) -> Option<(u32, usize)> {
        for j in k + 1..=self.kval {
            if let Some((first, bits)) = self.maps.claim(j, 1) {
                let index = first + bits.trailing_zeros() as usize;
                return Some((j, index << j));
            }
        }
        None
    }

    /// One free block of order `k`, splitting a larger one if needed; `None` only when no free
    /// block of order `k` or above existed at one moment (no split, merge or free overlapped a
    /// search that found nothing: see `BlockMaps::transit`).
    fn take_one(&self, k: u32) -> Option<usize> {
        loop {
            let before = self.maps.transit_snapshot();
            if let Some((first, bits)) = self.maps.claim(k, 1) {
                return Some((first + bits.trailing_zeros() as usize) << k);
            }
            crate::primitive::chaos_point();
            self.maps.begin_transit();
            crate::primitive::chaos_point();
            let found = self.claim_above(k);
            if let Some((j, off)) = found {
                self.split_down(off, j, k);
            }
            self.maps.end_transit();
            crate::primitive::chaos_point();
            if let Some((_, off)) = found {
                return Some(off);
            }
            if self.maps.quiet_since(before) {
                return None;
            }
            crate::primitive::yield_now();
        }
    }

    /// Splits the block at `off` of order `j` down to order `t`, publishing the upper halves
    /// (orders `j-1` down to `t`) as free. The caller keeps the block of order `t` at `off`.
    fn split_down(&self, off: usize, j: u32, t: u32) {
        for i in (t..j).rev() {
            self.maps.publish_split_half(i, (off >> i) | 1);
        }
    }

    /// Takes one block of order `k` from the shared bitmaps for a caller: claim (or split),
    /// clear its tag, mark it live. Returns its offset.
    pub(crate) fn alloc_shared(&self, k: u32) -> Option<usize> {
        let off = self.take_one(k)?;
        Self::debug_check(self.base, off, k);
        if self.config.caches(k) {
            // SAFETY: the block is ours (claimed, not yet live) and inside the region.
            unsafe { self.tags.clear(self.base, off) };
        }
        self.maps.set_live(k, off >> k, 1 << ((off >> k) % 64));
        Some(off)
    }

    /// Moves up to `want` (1..=64) blocks of order `k` from the shared bitmaps into a cache
    /// through `push`, tagged and live. Returns how many.
    pub(crate) fn refill(&self, k: u32, want: usize, mut push: impl FnMut(usize)) -> usize {
        debug_assert!((1..=64).contains(&want));
        let (first, bits) = if let Some(claimed) = self.maps.claim(k, want as u32) {
            claimed
        } else {
            // Split one larger block into up to `want` blocks of order k (a power of two).
            // A miss here is not out-of-memory: the caller falls back to `alloc_shared`, which
            // decides that exactly.
            let span = usize::BITS - 1 - want.leading_zeros(); // log2(want), rounded down
            self.maps.begin_transit();
            let found = self.claim_above(k);
            if let Some((j, off)) = found {
                self.split_down(off, j, (k + span).min(j));
            }
            self.maps.end_transit();
            let Some((j, off)) = found else {
                return 0;
            };
            let t = (k + span).min(j);
            let n = 1usize << (t - k);
            let first = off >> k;
            let shift = first % 64;
            let mask = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << shift
            };
            (first - shift, mask)
        };
        // Tag before marking live (Release in set_live): a validated free that finds the block
        // live also finds its tag.
        let mut rest = bits;
        let mut count = 0;
        // Highest first, so the cache (a stack) hands out the lowest address first.
        while rest != 0 {
            let b = 63 - rest.leading_zeros() as usize;
            rest &= !(1u64 << b);
            let off = (first + b) << k;
            // SAFETY: the block is ours (claimed, not yet live) and inside the region.
            unsafe { self.tags.set(self.base, off) };
            push(off);
            count += 1;
        }
        self.maps.set_live(k, first, bits);
        count
    }

    /// Returns a live block to the shared bitmaps, merging it with free buddies.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the block was no longer live (a racing free won).
    pub(crate) fn free_shared(&self, off: usize, k: u32) -> Result<(), FreeError> {
        if !self.maps.clear_live(k, off >> k) {
            return Err(FreeError::DoubleFree);
        }
        self.maps.release(k, off >> k);
        Ok(())
    }

    /// Returns a batch of cached blocks of order `k` (live, owned by the caller), given by
    /// address as caches and the depot hold them, to the shared bitmaps. Neighbouring entries in the same bitmap word are handled together: their live
    /// bits cleared with one `fetch_and`, then merged locally (see [`Self::release_merged`]),
    /// so a flush of neighbours (the common case: blocks freed in allocation order) costs a
    /// few CASes, not one per block. No sort: it cost more than it saved (callgrind, `batch`
    /// workload).
    pub(crate) fn free_batch(&self, k: u32, addrs: &[usize]) {
        let base = self.base.as_ptr().addr();
        let index = |i: usize| (addrs[i] - base) >> k;
        self.maps.begin_transit();
        let mut i = 0;
        while i < addrs.len() {
            // Clear the live bits of every block in this word at once.
            let word_first = index(i) & !63;
            let mut mask = 0u64;
            let mut j = i;
            while j < addrs.len() && index(j) & !63 == word_first {
                mask |= 1 << (index(j) % 64);
                j += 1;
            }
            let had = self.maps.clear_live_mask(k, word_first, mask);
            debug_assert_eq!(had, mask, "cached blocks were not all live");
            self.release_merged(k, word_first, mask);
            i = j;
        }
        self.maps.end_transit();
    }

    /// Releases the blocks of order `k` with indices `word_first + b`, for each bit `b` of
    /// `mask` (all ours, live bits cleared, inside a transit), after merging among themselves
    /// every group that tiles a larger aligned block: buddies that are both ours need no CAS
    /// to merge. 64 blocks that tile one block of order `k + 6` (a producer's refill, freed
    /// in order by a consumer) cost one release instead of 32 pair releases and their merges.
    fn release_merged(&self, k: u32, word_first: usize, mut mask: u64) {
        // Bits at multiples of 2^(l+1), for l = 0..6: where a pair of level-l blocks starts.
        const PAIR_STARTS: [u64; 6] = [
            0x5555_5555_5555_5555,
            0x1111_1111_1111_1111,
            0x0101_0101_0101_0101,
            0x0001_0001_0001_0001,
            0x0000_0001_0000_0001,
            0x0000_0000_0000_0001,
        ];
        debug_assert_eq!(word_first % 64, 0);
        // Level l: bit b (a multiple of 2^l) set <=> the block of order k + l made of bits
        // b .. b + 2^l is entirely ours. Orders stay <= kval: a pool's order-k bitmap has
        // fewer than 64 bits exactly when kval - k < 6, and then no pair exists above that.
        let top = (self.kval - k).min(6);
        let mut l = 0;
        loop {
            let width = 1u32 << l;
            // Pairs exist only below `top` (<= 6), where `width` <= 32.
            let (pairs, covered) = if l < top {
                let pairs = mask & (mask >> width) & PAIR_STARTS[l as usize];
                (pairs, pairs | (pairs << width))
            } else {
                (0, 0)
            };
            let mut single = mask & !covered;
            while single != 0 {
                let b = single.trailing_zeros() as usize;
                single &= single - 1;
                self.maps.release_in_transit(k + l, (word_first + b) >> l);
            }
            if pairs == 0 {
                break;
            }
            mask = pairs;
            l += 1;
        }
    }

    /// Returns every magazine in the depot to the bitmaps.
    pub(crate) fn drain_depot(&self) {
        for k in Depot::orders() {
            loop {
                let mut addrs = [0usize; MAGAZINE];
                let mut n = 0;
                self.depot.take(k, MAGAZINE, |addr| {
                    addrs[n] = addr;
                    n += 1;
                });
                if n == 0 {
                    break;
                }
                self.free_batch(k, &addrs[..n]);
            }
        }
    }

    /// A validated free without a cache: claim the tag (cacheable orders, so a racing free of
    /// the block in some cache is caught) and the live bit, then merge into the bitmaps.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the block is already free (cached or not).
    pub(crate) fn free_validated_shared(&self, off: usize, k: u32) -> Result<(), FreeError> {
        if self.config.caches(k) {
            // SAFETY: the block was live when validated, so it is inside the mapped region.
            unsafe { self.tags.claim(self.base, off)? };
        }
        self.debug_fill_freed(off, k);
        self.free_shared(off, k)
    }

    /// A snapshot of the shared bitmaps (cached bytes counted as allocated). O(metadata).
    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats::empty(1 << self.kval, self.maps.bytes());
        let mut live = 0;
        for k in balloc_core::SMALLEST_K..=self.kval {
            stats.add_free_blocks(k, self.maps.count_free(k));
            live += self.maps.count_live(k) << k;
        }
        stats.allocated_bytes = live;
        stats
    }
}

/// A per-pool secret for tags: std's randomly keyed hasher over the pool id and address.
fn random_secret(id: u64, addr: usize) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(id);
    h.write_usize(addr);
    h.finish() as usize
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use crate::ConcurrentPool;

    /// Batches of blocks from one refill (all in one bitmap word), freed as two random subsets
    /// in random order: the local merge must leave valid bitmaps and, in the end, one block.
    #[test]
    fn free_batch_merges_any_subset_of_a_word() {
        let pool = ConcurrentPool::builder()
            .size(1 << 20)
            .cache_capacity(0)
            .build()
            .expect("pool");
        let core = pool.core();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Under Miri: one round of two orders (a full word, and a bitmap under one word).
        let (rounds, orders): (usize, &[u32]) = if cfg!(miri) {
            (1, &[6, 15])
        } else {
            (100, &[6, 9, 14, 15, 19])
        };
        for &k in orders {
            for _ in 0..rounds {
                let mut addrs = Vec::new();
                let got = core.refill(k, 64, |off| addrs.push(core.ptr_at(off).as_ptr().addr()));
                assert_eq!(got, addrs.len());
                assert!(got > 0, "a whole pool refills");
                for i in (1..addrs.len()).rev() {
                    addrs.swap(i, next() as usize % (i + 1));
                }
                let cut = next() as usize % (addrs.len() + 1);
                core.free_batch(k, &addrs[..cut]);
                pool.validate().expect("valid after the first subset");
                let s = pool.stats();
                assert_eq!(s.allocated_bytes, (addrs.len() - cut) << k);
                core.free_batch(k, &addrs[cut..]);
                pool.validate().expect("valid after the rest");
                assert!(pool.stats().is_coalesced(), "order {k}: one block again");
            }
        }
    }
}
