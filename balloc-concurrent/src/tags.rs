//! Tags that mark a block as "free, sitting in a thread cache".
//!
//! A cached block stays live in the shared bitmaps (it is out of the free bitmap), so the
//! bitmaps alone cannot tell a second free of it from a first. Instead, the first word of every
//! cached block holds a tag: `tag(addr) = secret ^ addr`, with a per-pool random odd secret
//! (keyed by address rather than offset so the fast paths, which hold addresses, need no base).
//! - a block gets its tag before it enters any cache (refill) or when it is freed into one;
//! - a block loses its tag (word set to 0) whenever it is handed to a caller;
//! - a validated free of a cacheable order claims the tag with one CAS: if the word already
//!   holds the tag, the block is free already (`DoubleFree`); two racing frees of one block:
//!   exactly one CAS installs the tag, the other sees it.
//!
//! False alarms need a caller to store exactly the tag in its block's first word (a 2^-63
//! chance for data not derived from the secret); they refuse a valid free (a leak), never
//! corrupt the pool. The trusted paths (`dealloc` with a layout) write the tag with a plain
//! store and never read it.
//!
//! Under loom the tags live in a side table of loom atomics (one per smallest block), since
//! loom cannot see atomics placed in raw memory.

use core::ptr::NonNull;

use balloc_core::order::SMALLEST_K;
use balloc_core::FreeError;

use crate::primitive::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) struct Tags {
    secret: usize,
    #[cfg(balloc_loom)]
    side: Box<[AtomicUsize]>,
}

impl Tags {
    pub(crate) fn new(kval: u32, secret: usize) -> Self {
        #[cfg(balloc_loom)]
        {
            let n = 1usize << (kval - SMALLEST_K);
            Self {
                secret,
                side: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            }
        }
        #[cfg(not(balloc_loom))]
        {
            let _ = kval;
            Self { secret }
        }
    }

    #[inline]
    fn tag(&self, base: NonNull<u8>, off: usize) -> usize {
        debug_assert!(self.secret & 1 == 1, "the secret is odd, so no tag is 0");
        self.secret ^ base.as_ptr().addr().wrapping_add(off)
    }

    /// The tag word of the block at `off`.
    ///
    /// # Safety
    /// - `base + off` is the start of a block of the pool (at least 64 bytes, 64-aligned) whose
    ///   memory stays mapped while the returned reference is used.
    #[inline]
    unsafe fn word(&self, base: NonNull<u8>, off: usize) -> &AtomicUsize {
        #[cfg(balloc_loom)]
        {
            let _ = base;
            &self.side[off >> SMALLEST_K]
        }
        #[cfg(not(balloc_loom))]
        {
            let _ = SMALLEST_K;
            let p = base.as_ptr().wrapping_add(off).cast::<usize>();
            // SAFETY: `p` is 64-aligned pool memory, mapped for as long as the caller says; all
            // concurrent accesses to a block's first word by the pool are atomic, and a caller's
            // own accesses happen while it holds the block (ordered by its own synchronisation).
            unsafe { AtomicUsize::from_ptr(p) }
        }
    }

    /// Marks the block at `off` as cached-free.
    ///
    /// # Safety
    /// - `off` is a block start of this pool that the calling thread owns (no caller holds it).
    #[inline]
    pub(crate) unsafe fn set(&self, base: NonNull<u8>, off: usize) {
        // SAFETY: forwarded from the caller.
        // Relaxed: the block is ours; the tag is published by the Release of whatever hands the
        // block on (set_live, or the caller's own synchronisation).
        unsafe { self.word(base, off) }.store(self.tag(base, off), Ordering::Relaxed);
    }

    /// Clears the tag of the block at `off`, about to be handed to a caller.
    ///
    /// # Safety
    /// - as for [`Self::set`].
    #[inline]
    pub(crate) unsafe fn clear(&self, base: NonNull<u8>, off: usize) {
        // SAFETY: forwarded from the caller.
        // Relaxed: as in `set`.
        unsafe { self.word(base, off) }.store(0, Ordering::Relaxed);
    }

    /// Claims the block at `off` for a validated free: installs its tag unless it is there.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the tag is already there (the block is cached-free).
    ///
    /// # Safety
    /// - `off` is the start of a block that was live when the caller looked, so its memory is
    ///   mapped while the pool lives.
    #[inline]
    pub(crate) unsafe fn claim(&self, base: NonNull<u8>, off: usize) -> Result<(), FreeError> {
        let tag = self.tag(base, off);
        // SAFETY: forwarded from the caller.
        let word = unsafe { self.word(base, off) };
        let mut cur = word.load(Ordering::Relaxed);
        loop {
            if cur == tag {
                return Err(FreeError::DoubleFree);
            }
            // Relaxed suffices: racing frees of one block are ordered by this word's
            // modification order alone; nothing else is published through it.
            match word.compare_exchange_weak(cur, tag, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A copy of what the fast paths need to set and clear tags, kept inside each cache so a cache
/// hit never reaches into the shared state. (Under loom: a pointer to the side table.)
#[derive(Clone, Copy, Debug)]
pub(crate) struct TagKey {
    #[cfg(not(balloc_loom))]
    secret: usize,
    #[cfg(balloc_loom)]
    tags: *const Tags,
}

impl TagKey {
    /// A key for the empty cache, which never tags anything.
    #[cfg(not(balloc_loom))]
    pub(crate) const NONE: TagKey = TagKey { secret: 0 };
}

impl Tags {
    /// The fast-path handle. Under loom it points at `self`, which must outlive its use.
    pub(crate) fn key(&self) -> TagKey {
        #[cfg(not(balloc_loom))]
        {
            TagKey {
                secret: self.secret,
            }
        }
        #[cfg(balloc_loom)]
        {
            TagKey { tags: self }
        }
    }
}

impl TagKey {
    /// As [`Tags::set`], for the block at `block` (= base + `off`).
    ///
    /// # Safety
    /// - as for [`Tags::set`], and the pool that made the key is alive.
    #[inline(always)]
    pub(crate) unsafe fn set_at(self, block: NonNull<u8>, off: usize) {
        #[cfg(not(balloc_loom))]
        {
            let _ = off;
            // Odd secret, 64-aligned block: never 0 (see `Tags::tag`).
            let tag = self.secret ^ block.as_ptr().addr();
            // SAFETY: as in `Tags::word`: 64-aligned block memory the caller owns.
            unsafe { AtomicUsize::from_ptr(block.as_ptr().cast::<usize>()) }
                .store(tag, Ordering::Relaxed);
        }
        #[cfg(balloc_loom)]
        // SAFETY: forwarded; the pool (and so its Tags) is alive. `block - off` is the base.
        unsafe {
            (*self.tags).set(
                NonNull::new_unchecked(block.as_ptr().wrapping_sub(off)),
                off,
            )
        }
    }

    /// As [`Tags::clear`], for the block at `block` (= base + `off`).
    ///
    /// # Safety
    /// - as for [`Tags::clear`], and the pool that made the key is alive.
    #[inline(always)]
    pub(crate) unsafe fn clear_at(self, block: NonNull<u8>, off: usize) {
        #[cfg(not(balloc_loom))]
        {
            let _ = off;
            // SAFETY: as in `Tags::word`: 64-aligned block memory the caller owns.
            unsafe { AtomicUsize::from_ptr(block.as_ptr().cast::<usize>()) }
                .store(0, Ordering::Relaxed);
        }
        #[cfg(balloc_loom)]
        // SAFETY: forwarded; the pool (and so its Tags) is alive. `block - off` is the base.
        unsafe {
            (*self.tags).clear(
                NonNull::new_unchecked(block.as_ptr().wrapping_sub(off)),
                off,
            )
        }
    }
}
