//! Implicit per-thread caches, for `ConcurrentPool::{alloc, free}` and `GlobalAlloc`.
//!
//! Each thread keeps up to [`POOLS_PER_THREAD`] caches, one per pool it uses (found by pool id;
//! a thread using more pools goes to the shared bitmaps for the extra ones). A cache comes from
//! its pool's registry and holds a weak reference to the pool's shared state. At thread exit
//! the caches are flushed back to pools that are still alive (a strong reference is taken for
//! the flush) and returned to their registry; a cache whose pool was dropped is left to the
//! registry, which frees it with the pool's shared state.
//!
//! The thread-local is const-initialised and its caches come from the system allocator, so it
//! never calls the global allocator: a pool can be the global allocator.

use core::cell::Cell;
use core::ptr::NonNull;

use crate::cache::Cache;
use crate::facade::thread_local;
use crate::ladder;
use crate::shared::PoolShared;

/// Pools one thread keeps an implicit cache for at once.
pub const POOLS_PER_THREAD: usize = 4;

struct ThreadCaches {
    slots: [Cell<*mut Cache>; POOLS_PER_THREAD],
}

impl ThreadCaches {
    const fn new() -> Self {
        Self {
            slots: [const { Cell::new(core::ptr::null_mut()) }; POOLS_PER_THREAD],
        }
    }
}

thread_local! {
    /// The slots. No destructor, so std needs no per-access check of whether it ran (three
    /// instructions on every fast-path lookup, through `GlobalAlloc`): [`RETIRE_AT_EXIT`]'s
    /// destructor empties the slots instead.
    static CACHES: ThreadCaches = const { ThreadCaches::new() };
}

/// The caches this thread owns, the same set as its slots hold (in any order): what its exit
/// retires. A list of its own, so that the exit does not depend on the order in which a thread's
/// locals are torn down (loom tears down locals without destructors too).
struct RetireAtExit {
    owned: [Cell<*mut Cache>; POOLS_PER_THREAD],
}

impl RetireAtExit {
    /// Whether a cache can be added (always, while a slot is free: the two hold the same set).
    fn has_room(&self) -> bool {
        self.owned.iter().any(|o| o.get().is_null())
    }

    /// Adds `cache`, which is about to fill a slot ([`Self::has_room`] said there is room).
    fn add(&self, cache: *mut Cache) {
        if let Some(o) = self.owned.iter().find(|o| o.get().is_null()) {
            o.set(cache);
        }
    }

    /// Removes `cache`, which left its slot.
    fn remove(&self, cache: *mut Cache) {
        if let Some(o) = self.owned.iter().find(|o| o.get() == cache) {
            o.set(core::ptr::null_mut());
        }
    }
}

impl Drop for RetireAtExit {
    fn drop(&mut self) {
        // Empty the slots first, so nothing later on this thread finds a retired cache there.
        let _ = CACHES.try_with(|tc| {
            for slot in &tc.slots {
                slot.set(core::ptr::null_mut());
            }
        });
        for o in &self.owned {
            let cache = o.replace(core::ptr::null_mut());
            if !cache.is_null() {
                // SAFETY: this thread owned the cache, and no slot refers to it any more.
                unsafe { retire(cache, (*cache).shared) };
            }
        }
    }
}

thread_local! {
    /// Entered before a cache is put in a slot, which registers its destructor: at thread exit
    /// it retires the caches. Once it has run, no new cache is made on this thread (the slots
    /// stay empty and calls go to the shared bitmaps).
    static RETIRE_AT_EXIT: RetireAtExit = const {
        RetireAtExit {
            owned: [const { Cell::new(core::ptr::null_mut()) }; POOLS_PER_THREAD],
        }
    };
}

/// Runs `f` with this thread's cache for the pool, creating it on first use. `None` when the
/// thread has no cache for it (the pool caches nothing, thread-locals being torn down, all
/// slots taken, or no memory for a cache): the caller uses the shared bitmaps.
///
/// # Safety
/// - the caller holds a strong reference to `shared` for the whole call.
#[inline]
pub(crate) unsafe fn with<R>(
    shared: NonNull<PoolShared>,
    id: u64,
    f: impl FnOnce(&Cache) -> R,
) -> Option<R> {
    CACHES
        .try_with(|tc| {
            if let Some(c) = slot0(tc, id) {
                // SAFETY: slot caches are live and owned by this thread.
                return Some(f(unsafe { c.as_ref() }));
            }
            // SAFETY: forwarded from the caller.
            unsafe { find_or_create(tc, shared, id) }.map(f)
        })
        .ok()
        .flatten()
}

/// This thread's cache for pool `id` if it sits in slot 0 (the common case): the fast paths'
/// lookup, one thread-local access and one compare.
///
/// The cache stays valid until this thread changes its slots (only `with`'s slow path and
/// thread exit do), so the caller must not call into the pool again while it uses the result.
#[inline(always)]
pub(crate) fn current(id: u64) -> Option<NonNull<Cache>> {
    CACHES.try_with(|tc| slot0(tc, id)).ok().flatten()
}

/// The cache in slot 0 if it belongs to pool `id`: one load and one compare.
#[inline(always)]
fn slot0(tc: &ThreadCaches, id: u64) -> Option<NonNull<Cache>> {
    let c = tc.slots[0].get();
    // SAFETY: non-null slots hold live caches owned by this thread.
    if !c.is_null() && unsafe { (*c).pool_id } == id {
        NonNull::new(c)
    } else {
        None
    }
}

/// Out-of-line slow path for `with`: the pool's cache is not in slot 0. Moves it there (or
/// creates it there, moving slot 0's cache to a free slot) so the next call is a hit.
///
/// # Safety
/// - the caller holds a strong reference to `shared`.
#[cold]
#[inline(never)]
unsafe fn find_or_create(
    tc: &ThreadCaches,
    shared: NonNull<PoolShared>,
    id: u64,
) -> Option<&Cache> {
    // SAFETY: the caller holds a strong reference.
    let pool = unsafe { shared.as_ref() };
    if pool.region().config.total_capacity == 0 {
        // A pool that caches nothing needs no cache (nor a slot, nor a registry entry).
        return None;
    }
    let mut empty = None;
    for (i, slot) in tc.slots.iter().enumerate() {
        let c = slot.get();
        if c.is_null() {
            empty.get_or_insert(i);
        // SAFETY: non-null slots hold live caches owned by this thread.
        } else if unsafe { (*c).pool_id } == id {
            tc.slots[0].swap(slot);
            // SAFETY: as above.
            return Some(unsafe { &*c });
        }
    }
    // No free slot: reclaim one whose pool was dropped (its cache holds nothing usable).
    let i = match empty {
        Some(i) => i,
        None => tc.slots.iter().position(|slot| {
            let c = slot.get();
            // SAFETY: non-null slots hold live caches owned by this thread, whose weak
            // reference keeps their pool's shared state readable.
            let dead = unsafe { (*c).shared.as_ref() }.is_dead();
            if dead {
                slot.set(core::ptr::null_mut());
                let _ = RETIRE_AT_EXIT.try_with(|r| r.remove(c));
                // SAFETY: the slot owned the cache; nothing else refers to it.
                unsafe { retire(c, (*c).shared) };
            }
            dead
        })?,
    };
    // Registers the exit destructor before the slot holds a cache; refuses once it has run.
    if !RETIRE_AT_EXIT
        .try_with(RetireAtExit::has_room)
        .unwrap_or(false)
    {
        return None;
    }
    let c = pool.acquire_cache()?.as_ptr();
    RETIRE_AT_EXIT.with(|r| r.add(c));
    // The new cache takes a weak reference.
    pool.add_weak();
    tc.slots[i].set(c);
    tc.slots[0].swap(&tc.slots[i]);
    // SAFETY: just created, owned by this thread's slot 0.
    Some(unsafe { &*c })
}

/// This thread's cache for pool `id` in any slot, if it has one (for flushes; the fast paths
/// use [`current`]). Same validity rule as [`current`].
pub(crate) fn find(id: u64) -> Option<NonNull<Cache>> {
    CACHES
        .try_with(|tc| {
            tc.slots.iter().find_map(|slot| {
                let c = slot.get();
                // SAFETY: non-null slots hold live caches owned by this thread.
                (!c.is_null() && unsafe { (*c).pool_id } == id).then(|| NonNull::new(c))?
            })
        })
        .ok()
        .flatten()
}

/// Retires this thread's cache for pool `id`, if it has one (the pool is being dropped by
/// this thread: its slot is freed at once instead of at thread exit).
///
/// # Safety
/// - the caller holds a strong reference to the pool.
pub(crate) unsafe fn retire_current(id: u64) {
    let _ = CACHES.try_with(|tc| {
        for slot in &tc.slots {
            let c = slot.get();
            // SAFETY: non-null slots hold live caches owned by this thread.
            if !c.is_null() && unsafe { (*c).pool_id } == id {
                slot.set(core::ptr::null_mut());
                let _ = RETIRE_AT_EXIT.try_with(|r| r.remove(c));
                // SAFETY: the slot owned the cache; the caller's strong reference keeps the
                // pool alive for the flush.
                unsafe { retire(c, (*c).shared) };
            }
        }
    });
}

/// Ends a thread's cache: if the pool lives, flush it and return it to the pool's registry;
/// then drop its weak reference (the registry frees it with the pool's shared state).
///
/// # Safety
/// - `cache` came from `with`, owns a weak reference to `shared`, and is not used after.
unsafe fn retire(cache: *mut Cache, shared: NonNull<PoolShared>) {
    // SAFETY: the cache's weak reference keeps the shared struct alive.
    let pool = unsafe { shared.as_ref() };
    if pool.try_upgrade() {
        // SAFETY: the cache is valid (owned by its registry) and ours until released.
        let c = unsafe { &*cache };
        ladder::flush(pool.region(), c);
        pool.registry.release(c);
        // SAFETY: the strong reference taken above, not used after.
        unsafe { pool.release_strong() };
    }
    // SAFETY: the cache's weak reference, not used after this.
    unsafe { PoolShared::release_weak(shared) };
}
