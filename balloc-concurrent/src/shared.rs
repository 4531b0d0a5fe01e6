//! [`PoolShared`]: what a pool's owner and its thread caches share, and how long it lives.
//!
//! Lifetime: `strong` counts the owner (`ConcurrentPool`) plus threads flushing a cache at exit;
//! while it is non-zero the [`Region`] is valid. `weak` counts the owner plus every thread's
//! implicit cache; while it is non-zero the `PoolShared` struct itself is valid (with its
//! registry of caches), so a thread that exits after the pool was dropped can still see that it
//! was (`strong == 0`) and skip the flush. Both are released with `AcqRel`, so the last holder
//! sees every other holder's writes before it frees.

use core::cell::UnsafeCell;
use core::mem::ManuallyDrop;
use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout, System};

use balloc_core::InitError;

use crate::cache::{Cache, Owner};
use crate::config::CacheConfig;
use crate::facade::{AtomicU64, AtomicUsize, CachePadded, Ordering};
use crate::purge::PurgeConfig;
use crate::region::Region;
use crate::registry::Registry;

/// Pool ids are never reused, so a thread cache can never mistake a new pool for a dropped one
/// that lived at the same address. (A plain std atomic: not part of the modelled protocol.)
static NEXT_POOL_ID: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(1);

pub(crate) struct PoolShared {
    /// Reference counts, on their own line: written when threads start and stop using the
    /// pool, read by nothing hot.
    pub(crate) refs: CachePadded<Refs>,
    pub(crate) id: u64,
    /// Bumped by an allocation that runs out; caches that see it change flush everything at
    /// their next slow path. Its own line: read by every slow path, written only on exhaustion.
    pub(crate) pressure: CachePadded<AtomicU64>,
    /// Written only when a cache is made: on its own line all the same.
    pub(crate) registry: CachePadded<Registry>,
    /// The cache that holds and serves nothing, for a `LocalCache` that could not get a real
    /// one: its fast paths always miss, so they need no null test.
    pub(crate) empty_cache: NonNull<Cache>,
    region: UnsafeCell<ManuallyDrop<Region>>,
}

pub(crate) struct Refs {
    strong: AtomicUsize,
    weak: AtomicUsize,
}

impl PoolShared {
    /// Builds the shared state in memory from the system allocator (never the global one, so
    /// a pool can be the global allocator), with one strong and one weak reference.
    pub(crate) fn create(
        kval: u32,
        config: CacheConfig,
        purge: Option<PurgeConfig>,
    ) -> Result<NonNull<PoolShared>, InitError> {
        let id = NEXT_POOL_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        // Odd, so `secret ^ off` (off a multiple of 64) is odd, never 0: tags need no `| 1`.
        let secret = random_secret(id) | 1;
        let region = Region::new(kval, config, purge, secret)?;
        // SAFETY: PoolShared is not zero-sized.
        let ptr = unsafe { System.alloc(Layout::new::<PoolShared>()) }.cast::<PoolShared>();
        let ptr = NonNull::new(ptr).ok_or(InitError::Os { code: 0 })?;
        let owner = Owner::new(&region, id, ptr);
        let Some(empty_cache) = Cache::create_empty(owner) else {
            // SAFETY: allocated above with this layout, never used.
            unsafe { System.dealloc(ptr.as_ptr().cast(), Layout::new::<PoolShared>()) };
            return Err(InitError::Os { code: 0 });
        };
        let shared = PoolShared {
            refs: CachePadded::new(Refs {
                strong: AtomicUsize::new(1),
                weak: AtomicUsize::new(1),
            }),
            id,
            pressure: CachePadded::new(AtomicU64::new(0)),
            registry: CachePadded::new(Registry::new()),
            empty_cache,
            region: UnsafeCell::new(ManuallyDrop::new(region)),
        };
        // SAFETY: freshly allocated with PoolShared's layout.
        unsafe { ptr.as_ptr().write(shared) };
        Ok(ptr)
    }

    /// The region and its shared block state.
    ///
    /// The caller must hold a strong reference (the pool's owner, a `LocalCache` borrowing it,
    /// or a successful [`Self::try_upgrade`]) for as long as it uses the result.
    #[inline]
    pub(crate) fn region(&self) -> &Region {
        // SAFETY: `region` is only written by `release_strong` when the last strong reference
        // goes, and callers hold one (documented contract of this crate-private method).
        unsafe { &*self.region.get() }
    }

    /// A cache for a new user (a thread's implicit cache or a `LocalCache`): a retired one
    /// reused, or a new one listed in the registry. `None` when the system allocator fails.
    /// The caller holds a strong reference.
    pub(crate) fn acquire_cache(&self) -> Option<NonNull<Cache>> {
        // Relaxed: a hint; the cache's flushes publish through the bitmaps.
        let pressure = self.pressure.load(Ordering::Relaxed);
        if let Some(c) = self.registry.reuse() {
            // SAFETY: claimed for us alone by `reuse`.
            let cache = unsafe { c.as_ref() };
            cache.seen_pressure.set(pressure);
            cache.open();
            return Some(c);
        }
        let region = self.region();
        let owner = Owner::new(region, self.id, NonNull::from(self));
        let c = Cache::create(owner, &region.config, pressure)?;
        // SAFETY: new, unlisted; the registry owns it from now on.
        unsafe { self.registry.push(c) };
        Some(c)
    }

    /// Takes a strong reference if the pool is still alive.
    pub(crate) fn try_upgrade(&self) -> bool {
        // Acquire on every read, including the one that sees 0: a caller that finds the pool
        // dead must see everything the last strong holder did first.
        let mut n = self.refs.strong.load(Ordering::Acquire);
        loop {
            if n == 0 {
                return false;
            }
            // Acquire: if we get in, everything done by the owner before is visible.
            match self.refs.strong.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// True when the pool's owner and every flushing thread are gone (its region released).
    pub(crate) fn is_dead(&self) -> bool {
        // Acquire: pairs with the last `release_strong`, so a dead pool's teardown is visible.
        self.refs.strong.load(Ordering::Acquire) == 0
    }

    /// Implicit thread caches alive for this pool: `weak` less the owner's. The caller is the
    /// owner (so `weak >= 1`). A snapshot.
    ///
    /// Acquire: pairs with the `AcqRel` decrement in [`Self::release_weak`], the last step of a
    /// cache's retirement, so a count that no longer includes a cache comes after everything
    /// its retirement did (flush, depot drain, return to the registry).
    pub(crate) fn thread_caches(&self) -> usize {
        self.refs.weak.load(Ordering::Acquire) - 1
    }

    /// Adds a weak reference (the caller holds a strong one).
    pub(crate) fn add_weak(&self) {
        // Relaxed: the caller's strong reference already keeps the struct alive (as Arc::clone).
        self.refs.weak.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops a strong reference; the last one releases the region.
    ///
    /// # Safety
    /// - the caller holds a strong reference and does not use `region()` after this call.
    pub(crate) unsafe fn release_strong(&self) {
        // AcqRel: the last releaser sees every other holder's use of the region before dropping.
        if self.refs.strong.fetch_sub(1, Ordering::AcqRel) == 1 {
            // SAFETY: no strong reference is left, so nobody else can reach the region.
            unsafe { ManuallyDrop::drop(&mut *self.region.get()) };
        }
    }

    /// Drops a weak reference; the last one frees the struct and every cache of its registry.
    ///
    /// # Safety
    /// - `this` holds a weak reference and is not used after this call.
    pub(crate) unsafe fn release_weak(this: NonNull<PoolShared>) {
        // SAFETY: the caller holds a weak reference, so the struct is alive.
        let last = unsafe { this.as_ref() }
            .refs
            .weak
            .fetch_sub(1, Ordering::AcqRel)
            == 1;
        if last {
            // SAFETY: no reference is left, so no cache is in use; the struct was made by
            // `create` with this layout.
            unsafe {
                let shared = this.as_ref();
                shared.registry.free_all();
                Cache::free_memory(shared.empty_cache);
                core::ptr::drop_in_place(this.as_ptr());
                System.dealloc(this.as_ptr().cast(), Layout::new::<PoolShared>());
            }
        }
    }
}

/// A per-pool secret for tags: std's randomly keyed hasher over the pool id.
fn random_secret(id: u64) -> usize {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u64(id);
    h.finish() as usize
}
