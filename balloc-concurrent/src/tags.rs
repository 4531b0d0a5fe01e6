//! Tags that mark a block as "free, sitting in a thread cache".
//!
//! A cached block stays live in the shared bitmaps (it is out of the free bitmap), so the
//! bitmaps alone cannot tell a second free of it from a first. Instead, the second word of every
//! cached block holds a tag: `tag(off) = secret ^ off`, with a per-pool random odd secret and
//! the block's offset in the pool (the trusted free's fast path has the offset in a register
//! already, from its check that the pointer is inside the region).
//! - a block gets its tag before it enters any cache (refill) or when it is freed into one;
//! - a block loses its tag (word set to 0) whenever it is handed to a caller;
//! - a validated free of a cacheable order claims the tag with one CAS: if the word already
//!   holds the tag, the block is free already (`DoubleFree`); two racing frees of one block:
//!   exactly one CAS installs the tag, the other sees it.
//!
//! False alarms need a caller to store exactly the tag in its block's second word (a 2^-63
//! chance for data not derived from the secret); they refuse a valid free (a leak), never
//! corrupt the pool. The trusted paths (`dealloc` with a layout) read the word before they write
//! the tag with a plain store: a block whose tag is there is already free, and the process
//! stops (`fault`); a false alarm there stops a correct program, with the same 2^-63 odds.
//!
//! Where the tag word lives is the facade's business (`TagTable`): in the block natively, in a
//! side table of loom atomics under loom, which cannot see atomics placed in raw memory.

use core::ptr::NonNull;

use balloc_core::FreeError;

use crate::facade::{Ordering, TagTable, TagWords};
use crate::units::Offset;

/// A pool's tags: the secret, and where the tag words are.
#[derive(Debug)]
pub(crate) struct Tags {
    secret: usize,
    table: TagTable,
}

/// A copy of what the fast paths need to set and clear tags, kept inside each cache so a cache
/// hit never reaches into the shared state. Valid while its pool lives.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TagKey {
    secret: usize,
    words: TagWords,
}

impl Tags {
    /// Tags for a pool of order `kval` with the given odd `secret`.
    pub(crate) fn new(kval: u32, secret: usize) -> Self {
        debug_assert!(secret & 1 == 1, "the secret is odd, so no tag is 0");
        Self {
            secret,
            table: TagTable::new(kval),
        }
    }

    /// The fast-path handle.
    pub(crate) fn key(&self) -> TagKey {
        TagKey {
            secret: self.secret,
            words: self.table.words(),
        }
    }
}

impl TagKey {
    /// The tag of the block at offset `off`: odd secret, 64-aligned offset, so never 0.
    #[inline(always)]
    fn tag(self, off: Offset) -> usize {
        self.secret ^ off.0
    }

    /// Marks the block at `block` (offset `off`) as cached-free.
    ///
    /// # Safety
    /// - `block` is a block start of the key's pool, alive, that the calling thread owns (no
    ///   caller holds it).
    #[inline(always)]
    pub(crate) unsafe fn set(self, block: NonNull<u8>, off: Offset) {
        // SAFETY: forwarded from the caller.
        let word = unsafe { self.words.word(block, off.0) };
        // Relaxed: the block is ours; the tag is published by the Release of whatever hands the
        // block on (set_live, a depot hand-over, or the caller's own synchronisation).
        word.store(self.tag(off), Ordering::Relaxed);
    }

    /// Marks the block at `block` (offset `off`) as cached-free, as [`Self::set`], unless its
    /// tag is there already: then writes nothing and returns true (the block is cached-free,
    /// so this free is a double free). A plain load and a store, not a read-modify-write: the
    /// trusted paths catch a repeated free, not two frees of one block racing each other.
    ///
    /// # Safety
    /// - `block` is a block start inside the key's pool, alive; unless the tag is there, the
    ///   calling thread owns the block (no caller holds it).
    #[inline(always)]
    pub(crate) unsafe fn set_unless_tagged(self, block: NonNull<u8>, off: Offset) -> bool {
        let tag = self.tag(off);
        // SAFETY: forwarded from the caller: a block the caller holds, which no other thread
        // writes (a tag there was written by this thread, or published to it by whatever
        // handed it the block); a cached block's word is written only by its cache's owner.
        if unsafe { self.words.read_held(block, off.0) } == tag {
            return true;
        }
        // SAFETY: forwarded from the caller.
        let word = unsafe { self.words.word(block, off.0) };
        // Relaxed: as in `set`.
        word.store(tag, Ordering::Relaxed);
        false
    }

    /// Clears the tag of the block at `block` (offset `off`), about to be handed to a caller.
    ///
    /// # Safety
    /// - as for [`Self::set`].
    #[inline(always)]
    pub(crate) unsafe fn clear(self, block: NonNull<u8>, off: Offset) {
        // SAFETY: forwarded from the caller.
        let word = unsafe { self.words.word(block, off.0) };
        // Relaxed: as in `set`.
        word.store(0, Ordering::Relaxed);
    }

    /// Claims the block at `block` for a validated free: installs its tag unless it is there.
    ///
    /// # Errors
    /// [`FreeError::DoubleFree`] when the tag is already there (the block is cached-free).
    ///
    /// # Safety
    /// - `block` is the start of a block that was live when the caller looked, so its memory
    ///   is mapped while the pool lives.
    #[inline]
    pub(crate) unsafe fn claim(self, block: NonNull<u8>, off: Offset) -> Result<(), FreeError> {
        let tag = self.tag(off);
        // SAFETY: forwarded from the caller.
        let word = unsafe { self.words.word(block, off.0) };
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
