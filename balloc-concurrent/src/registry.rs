//! The registry of a pool's caches: a list that `stats` walks to count cached bytes, and a
//! store of retired caches for the next thread to reuse.
//!
//! Lock-free, and nothing is ever unlinked while the pool's shared state lives:
//! - `acquire` claims a retired cache (`in_use` 0 → 1, one CAS) or pushes a new one at the
//!   head (one CAS, after its `next` is written);
//! - `release` marks a flushed cache retired (`in_use` 1 → 0);
//! - `cached_bytes` walks the list and reads each cache's stack tops, which are atomics: a
//!   snapshot, and never a read of freed memory, since caches are only freed with the list.
//!
//! No lock means nothing can be held across `fork()`: a child process finds the list as some
//! thread left it between two atomic steps, which is a valid list. The list grows to the most
//! caches in use at once (one per thread per pool, and one per live `LocalCache`); a retired
//! cache holds no blocks, only its slot array (`CacheConfig::total_capacity` words).

use core::ptr::NonNull;

use crate::cache::Cache;
use crate::facade::{AtomicPtr, AtomicUsize, Ordering};

pub(crate) struct Registry {
    pub(crate) head: AtomicPtr<Cache>,
    /// Depot homes handed out so far (see `depot`).
    homes: AtomicUsize,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            head: AtomicPtr::new(core::ptr::null_mut()),
            homes: AtomicUsize::new(0),
        }
    }

    /// A depot home for a cache's first deposit: 0, 1, 2, ... in the order caches first
    /// deposit (written once per cache, never again on its allocation path).
    pub(crate) fn next_home(&self) -> usize {
        // Relaxed: a label; any value is safe, distinct ones spread caches over the depot.
        self.homes.fetch_add(1, Ordering::Relaxed)
    }

    /// A retired cache, claimed for the caller, if there is one.
    pub(crate) fn reuse(&self) -> Option<NonNull<Cache>> {
        // Acquire: pairs with the Release of `push`, so each cache's fields are visible.
        let mut c = self.head.load(Ordering::Acquire);
        while let Some(cache) = NonNull::new(c) {
            // SAFETY: listed caches live as long as the registry.
            let r = unsafe { cache.as_ref() };
            // Relaxed peek, then Acquire: the claim sees everything its last user did before
            // the Release of `release` (its flushed, empty stacks).
            if r.in_use.load(Ordering::Relaxed) == 0
                && r.in_use
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return Some(cache);
            }
            c = r.next;
        }
        None
    }

    /// Lists a new cache (in use).
    ///
    /// # Safety
    /// - `cache` came from `Cache::create`, is not listed, and from now on belongs to the
    ///   registry (freed only by [`Self::free_all`]).
    pub(crate) unsafe fn push(&self, cache: NonNull<Cache>) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: not yet published, so the caller has it alone.
            unsafe { (*cache.as_ptr()).next = head };
            // Release: `next` and the cache's fields before it can be reached from the head.
            match self.head.compare_exchange_weak(
                head,
                cache.as_ptr(),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Retires a cache for reuse. The caller flushed it and does not use it after.
    pub(crate) fn release(&self, cache: &Cache) {
        debug_assert!(cache.is_empty(), "a retired cache holds no blocks");
        // Release: our use of the cache before the next user's claim (Acquire).
        cache.in_use.store(0, Ordering::Release);
    }

    /// Bytes held by all listed caches (a snapshot; retired caches hold none).
    pub(crate) fn cached_bytes(&self) -> usize {
        let mut total = 0;
        // Acquire: as in `reuse`.
        let mut c = self.head.load(Ordering::Acquire);
        while let Some(cache) = NonNull::new(c) {
            // SAFETY: listed caches live as long as the registry.
            let r = unsafe { cache.as_ref() };
            total += r.cached_bytes();
            c = r.next;
        }
        total
    }

    /// Frees every listed cache.
    ///
    /// # Safety
    /// - nobody uses any listed cache, now or later (the pool's last reference is going).
    pub(crate) unsafe fn free_all(&self) {
        // Acquire: every push is visible.
        let mut c = self.head.swap(core::ptr::null_mut(), Ordering::Acquire);
        while let Some(cache) = NonNull::new(c) {
            // SAFETY: listed, and unused from now on (the caller's obligation).
            unsafe {
                c = cache.as_ref().next;
                Cache::free_memory(cache);
            }
        }
    }
}
