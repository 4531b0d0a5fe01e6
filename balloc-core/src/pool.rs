//! [`BuddyPool`]: the buddy system over one power-of-two region, single-threaded.
//!
//! State, for a pool of order `kval` at `base`:
//! - `free` bitmap: bit `(k, i)` set ⇔ block `i` of order `k` is free and not inside a larger
//!   free block ⇔ it is in free list `k`;
//! - `live` bitmap: bit `(k, i)` set ⇔ block `i` of order `k` is handed out to a caller;
//! - both bitmaps number the blocks as a binary heap: block `i` of order `k` is bit
//!   `n = 2^(kval - k) + i` (the whole pool is bit 1), so its buddy is bit `n ^ 1`, its parent
//!   bit `n / 2` and its halves bits `2n` and `2n + 1`: walking up or down the orders needs no
//!   per-order table. Bit 0 is unused. Each bitmap takes `2^(kval - SMALLEST_K + 1)` bits, which
//!   fits in the `geometry.words()` words [`metadata_words`] gives it;
//! - every byte of the pool lies in exactly one free or live block (the blocks tile the pool);
//! - no two buddies are both free (they would have been merged).
//!
//! No byte counter is kept: `stats()` adds up the live bitmap, so alloc and free do not pay for
//! it.
//!
//! Costs: alloc is one `trailing_zeros` to find the order to split, then one list pop and one
//! push per split; free is at most one bit test per order to find the block's order, then one
//! bit test and one O(1) unlink per merge. Nothing scans a list.

use core::alloc::Layout;
use core::ptr::NonNull;

use crate::error::{AllocError, FreeError, InitError};
use crate::free_list::{FreeLists, NIL};
#[cfg(doc)]
use crate::geometry::find_live_block;
use crate::geometry::{block_offset, metadata_words, Geometry};
use crate::order::{btok, checked_layout_order, checked_size_order, MAX_K, MIN_K, SMALLEST_K};
use crate::stats::Stats;

#[cfg(feature = "std")]
use crate::error::DestroyError;
#[cfg(feature = "std")]
use crate::order::pool_order_for;
#[cfg(feature = "std")]
use crate::os::Mapping;

/// Who owns the memory under a pool.
#[derive(Debug)]
enum Backing {
    /// The caller's (`from_raw`): nothing to release.
    Borrowed,
    /// Reserved from the OS by `new`; released by `destroy` or `Drop`.
    #[cfg(feature = "std")]
    Os { region: Mapping, metadata: Mapping },
}

/// Which of the two side bitmaps.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Map {
    /// Free blocks (those in the free lists).
    Free,
    /// Allocated blocks.
    Live,
}

/// A buddy allocator over one region of `2^kval` bytes, aligned to `2^kval`.
///
/// Blocks are powers of two from `2^SMALLEST_K` bytes up to the whole pool, each aligned to its
/// own size; allocated blocks carry no header. Frees are validated against side bitmaps.
///
/// # Examples
/// ```
/// # #[cfg(feature = "std")] {
/// use balloc_core::BuddyPool;
///
/// let mut pool = BuddyPool::new(1 << 20)?;
/// let block = pool.alloc(100)?;           // a 128-byte block, aligned to 128
/// assert_eq!(block.as_ptr().addr() % 128, 0);
/// pool.free(block)?;
/// assert!(pool.stats().is_coalesced());
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BuddyPool {
    base: NonNull<u8>,
    geometry: Geometry,
    /// `2 * geometry.words()` words: the free bitmap, then the live bitmap.
    meta: NonNull<u64>,
    /// The live bitmap: `meta + geometry.words()`, kept so a live bit costs no extra lookup.
    live: NonNull<u64>,
    lists: FreeLists,
    /// `2^kval`, the pool's size: `(size | off) >> k` is the heap number of the block of order
    /// `k` at `off`.
    size: usize,
    /// Kept to release the memory on drop (nothing to release without `std`).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    backing: Backing,
}

// SAFETY: the pool exclusively owns its region and metadata (or has been promised exclusive use
// of them by `from_raw`'s caller); no state is tied to the creating thread.
unsafe impl Send for BuddyPool {}

impl BuddyPool {
    /// Reserves a pool of `size` bytes from the OS, lazily: untouched pages cost no memory.
    ///
    /// Size 0 means `2^DEFAULT_K`; other sizes round up to a power of two, and below `2^MIN_K`
    /// up to `2^MIN_K`.
    ///
    /// # Errors
    /// [`InitError::TooLarge`] above `2^MAX_K`; [`InitError::Os`] when the OS will not reserve
    /// the address space.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn new(size: usize) -> Result<Self, InitError> {
        let kval = pool_order_for(size).ok_or(InitError::TooLarge { requested: size })?;
        let pool_size = 1usize << kval;
        let words = metadata_words(pool_size);
        let region = Mapping::reserve(pool_size, pool_size)?;
        let metadata = Mapping::reserve(words * 8, 8)?;
        let base = region.as_ptr();
        let meta = metadata.as_ptr().cast::<u64>();
        // SAFETY: both mappings are zeroed, exclusively ours, of the right sizes, and kept alive
        // in `backing` for as long as the pool.
        Ok(unsafe { Self::assemble(base, kval, meta, Backing::Os { region, metadata }) })
    }

    /// Builds a pool over memory the caller provides: for kernels, firmware and `no_std`.
    ///
    /// `size` must be a power of two from `2^MIN_K` to `2^MAX_K`, `memory` aligned to `size`,
    /// and `metadata` at least [`metadata_words`]`(size)` long (it is zeroed here).
    ///
    /// # Errors
    /// [`InitError::NotPowerOfTwo`], [`InitError::TooSmall`], [`InitError::TooLarge`],
    /// [`InitError::Misaligned`] or [`InitError::MetadataTooSmall`] when those rules are broken.
    ///
    /// # Safety
    /// - `memory` is valid for reads and writes of `size` bytes for as long as the pool lives,
    ///   and nothing else accesses it meanwhile except through blocks the pool hands out;
    /// - `metadata` is valid for reads and writes of `metadata.len()` words for as long as the
    ///   pool lives, and nothing else accesses it meanwhile.
    pub unsafe fn from_raw(
        memory: NonNull<u8>,
        size: usize,
        metadata: NonNull<[u64]>,
    ) -> Result<Self, InitError> {
        if !size.is_power_of_two() {
            return Err(InitError::NotPowerOfTwo { size });
        }
        let kval = size.trailing_zeros();
        if kval < MIN_K {
            return Err(InitError::TooSmall { size });
        }
        if kval > MAX_K {
            return Err(InitError::TooLarge { requested: size });
        }
        if memory.as_ptr().addr() & (size - 1) != 0 {
            return Err(InitError::Misaligned);
        }
        let needed = metadata_words(size);
        if metadata.len() < needed {
            return Err(InitError::MetadataTooSmall {
                needed,
                given: metadata.len(),
            });
        }
        let meta = metadata.cast::<u64>();
        // SAFETY: the caller guarantees `metadata` is writable for its length, which is >= needed.
        unsafe { meta.as_ptr().write_bytes(0, needed) };
        // SAFETY: checked above, and the caller guarantees validity and exclusivity.
        Ok(unsafe { Self::assemble(memory, kval, meta, Backing::Borrowed) })
    }

    /// # Safety
    /// - `base` is `2^kval` writable bytes aligned to `2^kval`, `meta` is
    ///   `metadata_words(2^kval)` zeroed words, both exclusive to the pool while it lives.
    unsafe fn assemble(base: NonNull<u8>, kval: u32, meta: NonNull<u64>, backing: Backing) -> Self {
        let geometry = Geometry::new(kval);
        // SAFETY: the live bitmap starts `words()` words into the metadata, which holds
        // `2 * words()` words, so the pointer is in bounds and not null.
        let live = unsafe { meta.add(geometry.words()) };
        let mut pool = Self {
            base,
            geometry,
            meta,
            live,
            lists: FreeLists::new(),
            size: 1usize << kval,
            backing,
        };
        // SAFETY: the whole region is one free block at offset 0, in no list yet.
        unsafe { pool.insert_free(kval, 0) };
        pool
    }

    /// Order of the whole pool: `size() == 2^kval()`.
    #[inline]
    pub fn kval(&self) -> u32 {
        self.geometry.kval()
    }

    /// Bytes managed by the pool.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The first byte of the pool.
    #[inline]
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// True when `ptr` points into this pool's memory.
    #[inline]
    pub fn contains(&self, ptr: *const u8) -> bool {
        ptr.addr().wrapping_sub(self.base.as_ptr().addr()) < self.size()
    }

    /// Allocates a block of order `btok(size)`: at least `size` bytes, aligned to its own size.
    ///
    /// # Errors
    /// [`AllocError::ZeroSize`] for 0, [`AllocError::TooLarge`] above the pool size,
    /// [`AllocError::OutOfMemory`] when no block is free (the pool works again after frees).
    #[inline]
    pub fn alloc(&mut self, size: usize) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(checked_size_order(size, self.kval())?)
    }

    /// Allocates a block that fits `layout`: order `btok(max(size, align))`, so any alignment up
    /// to the pool size is honoured.
    ///
    /// # Errors
    /// As [`alloc`](Self::alloc), plus [`AllocError::AlignmentTooLarge`] for an alignment above
    /// the pool size.
    #[inline]
    pub fn alloc_layout(&mut self, layout: Layout) -> Result<NonNull<u8>, AllocError> {
        self.alloc_order(checked_layout_order(layout, self.kval())?)
    }

    /// Allocates a block of exactly order `k` (`SMALLEST_K <= k <= kval`).
    ///
    /// # Errors
    /// [`AllocError::OutOfMemory`] when no free block of order `k` or above exists.
    #[inline]
    pub fn alloc_order(&mut self, k: u32) -> Result<NonNull<u8>, AllocError> {
        debug_assert!(
            (SMALLEST_K..=self.kval()).contains(&k),
            "order {k} out of range"
        );
        let (off, n) = self
            .take_block(k)
            .ok_or(AllocError::OutOfMemory { order: k })?;
        self.set_heap_bit(Map::Live, n);
        #[cfg(feature = "debug-fill")]
        // SAFETY: the block at `off` is ours, 2^k bytes, just taken from the free lists.
        unsafe {
            crate::debug_fill::check(self.base, off, k);
        }
        Ok(self.ptr_at(off))
    }

    /// Frees the block at `ptr`, merging it with free buddies.
    ///
    /// # Errors
    /// [`FreeError::OutOfPool`], [`FreeError::Misaligned`], [`FreeError::Interior`] or
    /// [`FreeError::DoubleFree`] when `ptr` is not the start of an allocated block of this pool.
    /// The pool is then unchanged.
    #[inline]
    pub fn free(&mut self, ptr: NonNull<u8>) -> Result<(), FreeError> {
        let (off, k) = self.find_allocated(ptr)?;
        // SAFETY: `off` is the start of a live block of order k.
        unsafe { self.release(off, k) };
        Ok(())
    }

    /// Size of the allocated block at `ptr`, or `None` when `ptr` is not an allocated block's start.
    pub fn usable_size(&self, ptr: NonNull<u8>) -> Option<usize> {
        self.find_allocated(ptr).ok().map(|(_, k)| 1usize << k)
    }

    /// Resizes the block at `ptr` to hold `new_size` bytes.
    ///
    /// Shrinks in place (the upper halves go back to the pool); grows in place when the block is
    /// the lower part of the larger block and the buddies above it are free; otherwise allocates
    /// a new block, copies the old contents and frees the old one.
    ///
    /// # Errors
    /// [`AllocError::InvalidPointer`] when `ptr` is not an allocated block; [`AllocError::ZeroSize`]
    /// for 0 (use `free`); [`AllocError::TooLarge`] or [`AllocError::OutOfMemory`] when the new
    /// size cannot be served. On every error the old block is untouched and still allocated.
    pub fn realloc(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let (off, k) = self
            .find_allocated(ptr)
            .map_err(AllocError::InvalidPointer)?;
        if new_size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let nk = btok(new_size);
        if nk > self.kval() {
            return Err(AllocError::TooLarge {
                requested: new_size,
            });
        }
        if nk == k {
            return Ok(ptr);
        }
        if nk < k {
            self.shrink_in_place(off, k, nk);
            return Ok(ptr);
        }
        if self.grow_in_place(off, k, nk) {
            return Ok(ptr);
        }
        let new = self.alloc_order(nk)?;
        // SAFETY: both blocks are live and distinct (so they do not overlap); the old one has
        // 2^k bytes and the new one 2^nk > 2^k.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr_at(off).as_ptr(), new.as_ptr(), 1 << k) };
        // SAFETY: `off` is the start of a live block of order k.
        unsafe { self.release(off, k) };
        Ok(new)
    }

    /// A snapshot of where the pool's bytes are. O(metadata): it counts the bits of the free
    /// and the live bitmap in one pass, about `size() / 2^SMALLEST_K` of each (one word per
    /// 4 KiB of pool); for `resident_bytes`, one `mincore` call per 4 MiB of an OS-backed pool.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::empty(self.size(), self.metadata_bytes());
        for k in SMALLEST_K..=self.kval() {
            let bits = self.order_bits(k);
            stats.add_free_blocks(k, bits.free);
            stats.allocated_bytes += bits.live << k;
        }
        stats.resident_bytes = self.resident_bytes();
        stats
    }

    /// Bytes of the pool's memory that are resident (see [`Stats::resident_bytes`]).
    fn resident_bytes(&self) -> usize {
        #[cfg(feature = "std")]
        if let Backing::Os { region, .. } = &self.backing {
            return region.resident().unwrap_or(self.size());
        }
        self.size()
    }

    /// Bytes of side metadata.
    pub fn metadata_bytes(&self) -> usize {
        2 * self.geometry.words() * 8
    }

    /// The free blocks, as `(start, order)`, smallest order first.
    pub fn free_blocks(&self) -> FreeBlocks<'_> {
        FreeBlocks {
            pool: self,
            k: SMALLEST_K,
            next: self.lists.head(SMALLEST_K),
        }
    }

    /// Hands the pages inside large free blocks back to the OS (they read back as zeros and cost
    /// no resident memory until touched again). Returns the bytes handed back; 0 for pools over
    /// caller memory or where the OS cannot.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn trim(&mut self) -> usize {
        let Backing::Os { region, .. } = &self.backing else {
            return 0;
        };
        let page = crate::os::page_size();
        let mut released = 0;
        for (block, k) in self.free_blocks() {
            let len = 1usize << k;
            if len > page {
                // Keep the first page: it holds the block's free-list node.
                let off = block.as_ptr().addr() - self.base.as_ptr().addr();
                released += region.discard(off + page, len - page);
            }
        }
        released
    }

    /// Releases the pool's memory to the OS now, reporting failure (`Drop` ignores it).
    ///
    /// # Errors
    /// [`DestroyError::Os`] when the OS refuses to unmap the region.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn destroy(mut self) -> Result<(), DestroyError> {
        match core::mem::replace(&mut self.backing, Backing::Borrowed) {
            Backing::Borrowed => Ok(()),
            Backing::Os { region, metadata } => {
                let first = region.release();
                let second = metadata.release();
                first.and(second)
            }
        }
    }

    /// Ends a pool over caller memory (`from_raw`); the memory is the caller's again.
    ///
    /// # Errors
    /// Never, without the `std` feature; kept for the same signature as with it.
    #[cfg(not(feature = "std"))]
    pub fn destroy(self) -> Result<(), crate::error::DestroyError> {
        Ok(())
    }

    // ---- internals ----------------------------------------------------------------------------

    /// The offset and order of the allocated block starting at `ptr`.
    ///
    /// As [`find_live_block`]: one live-bit test per order from `SMALLEST_K` up, each the parent
    /// of the last (`n / 2`), until one is set.
    #[inline(always)]
    fn find_allocated(&self, ptr: NonNull<u8>) -> Result<(usize, u32), FreeError> {
        let kval = self.kval();
        let off = block_offset(self.base.as_ptr().addr(), ptr.as_ptr().addr(), kval)?;
        let mut n = self.heap_bit_at(SMALLEST_K, off);
        let mut k = SMALLEST_K;
        while n != 0 {
            debug_assert!(n / 64 < self.geometry.words(), "live bit {n} out of range");
            // SAFETY: `n` is the heap number of a block of this pool, so its word is inside the
            // live bitmap; `&self` excludes writers.
            if unsafe { *self.live.as_ptr().wrapping_add(n / 64) } & (1 << (n % 64)) != 0 {
                return if off.trailing_zeros() >= k {
                    Ok((off, k))
                } else {
                    Err(FreeError::Interior)
                };
            }
            n /= 2;
            k += 1;
        }
        Err(FreeError::DoubleFree)
    }

    /// The bits of order `k` in the free and the live bitmap, in one pass over both.
    ///
    /// Eight words at a time, skipping eight whose bits are all clear in both maps after one
    /// test: a pool of few blocks has mostly clear words, and under fuzzing every compare in
    /// this loop is a call into the fuzzer's comparison hook.
    pub(crate) fn order_bits(&self, k: u32) -> OrderBits {
        let (words, mask) = self.order_words(k);
        let (free, live) = self.meta().split_at(self.geometry.words());
        let (free, live) = (&free[words.clone()], &live[words]);
        let mut bits = OrderBits::default();
        let (free8, live8) = (free.chunks_exact(8), live.chunks_exact(8));
        let rest = free8.remainder().iter().zip(live8.remainder());
        for (f8, l8) in free8.zip(live8) {
            let f8: [u64; 8] = core::array::from_fn(|i| f8[i] & mask);
            let l8: [u64; 8] = core::array::from_fn(|i| l8[i] & mask);
            if f8.iter().chain(&l8).fold(0, |a, w| a | w) != 0 {
                for (f, l) in f8.into_iter().zip(l8) {
                    bits.add(f, l);
                }
            }
        }
        for (f, l) in rest {
            bits.add(f & mask, l & mask);
        }
        bits
    }

    /// The words of either bitmap that hold order `k`'s bits, and the mask of those bits within
    /// each word (all ones, except for orders of fewer than 64 blocks, which share word 0).
    pub(crate) fn order_words(&self, k: u32) -> (core::ops::Range<usize>, u64) {
        let first = 1usize << (self.kval() - k);
        if first >= 64 {
            (first / 64..2 * first / 64, u64::MAX)
        } else {
            (0..1, ((1u64 << first) - 1) << first)
        }
    }

    /// Heap number of the block of order `k` at offset `off` (a multiple of `2^k`, or inside
    /// that block): its bit in either bitmap. One `or` and one shift.
    #[inline(always)]
    fn heap_bit_at(&self, k: u32, off: usize) -> usize {
        debug_assert!(off < self.size, "offset {off:#x} out of the pool");
        (self.size | off) >> k
    }

    /// Heap number of block `index` of order `k`: its bit in either bitmap.
    #[inline(always)]
    fn heap_bit(&self, k: u32, index: usize) -> usize {
        debug_assert!(
            k <= self.kval() && index >> (self.kval() - k) == 0,
            "block ({k}, {index}) out of range"
        );
        (1usize << (self.kval() - k)) | index
    }

    /// Removes a free block of order `k` from the lists, splitting a larger one if needed.
    /// Returns its offset and heap number.
    ///
    /// Per split order: one node written, one head stored, one free bit set. The block split is
    /// from the smallest non-empty order `j >= k`, so lists `k..j` are empty and each upper half
    /// becomes the only node of its list.
    #[inline(always)]
    fn take_block(&mut self, k: u32) -> Option<(usize, usize)> {
        let j = self.lists.first_nonempty_from(k)?;
        // SAFETY: the lists are valid (pool invariant) and list j is non-empty.
        let off = unsafe { self.lists.pop_nonempty(self.base, j) };
        let n = self.heap_bit_at(j, off);
        self.clear_heap_bit(Map::Free, n);
        if j == k {
            return Some((off, n));
        }
        let (meta, geometry) = (self.meta, &self.geometry);
        let set_free_bit = |n: usize| {
            debug_assert!(n / 64 < geometry.words(), "free bit {n} out of range");
            // SAFETY: `n` is the heap number of a block of this pool, so its word is inside the
            // free bitmap; `&mut self` makes it exclusive.
            unsafe { *meta.as_ptr().wrapping_add(n / 64) |= 1 << (n % 64) };
        };
        // SAFETY: `j` is the smallest order >= k with a free block, so lists `k..j` are empty;
        // `off` starts the block of order j just unlinked, aligned to 2^j and in no list.
        let n = unsafe { self.lists.push_split(k, j, off, n, set_free_bit) };
        Some((off, n))
    }

    /// Returns the live block at `off` of order `k` to the pool, merging with free buddies.
    ///
    /// # Safety
    /// - `off` is the start of a live block of order `k`.
    #[inline]
    unsafe fn release(&mut self, mut off: usize, k: u32) {
        #[cfg(feature = "debug-fill")]
        // SAFETY: the block is live, ours until it is linked below.
        unsafe {
            crate::debug_fill::fill(self.base, off, k);
        }
        // `n` is the block's heap number: its buddy is `n ^ 1`, its parent `n / 2`, with no
        // shift by k; it is 1 for the whole pool.
        let mut n = self.heap_bit_at(k, off);
        self.clear_heap_bit(Map::Live, n);
        let (meta, geometry) = (self.meta, &self.geometry);
        // `2^k`: the block's size, its buddy's offset bit, and list k's non-empty bit.
        let first_size = 1usize << k;
        let mut size = first_size;
        let mut emptied = 0;
        while n > 1 {
            // The buddy's free bit: one load tests it, one store clears it.
            // Buddies `n` and `n ^ 1` are the two bits of `pair` in one word, and the block's
            // own free bit is clear (it is live, or merged and in no list): the pair's bits are
            // non-zero exactly when the buddy is free.
            debug_assert!(n / 64 < geometry.words(), "free bit {n} out of range");
            let word = meta.as_ptr().wrapping_add(n / 64);
            let pair = 3 << ((n % 64) & !1);
            // SAFETY: `n` is the heap number of a block of this pool, so its word is inside the
            // free bitmap; `&mut self` makes it exclusive.
            let bits = unsafe { *word };
            debug_assert!(
                bits & (1 << (n % 64)) == 0,
                "free bit {n} set while merging"
            );
            if bits & pair == 0 {
                break;
            }
            // SAFETY: as above.
            unsafe { *word = bits & !pair };
            let buddy = off ^ size;
            // The common case, a buddy alone in its list, is one test: no node to read, and
            // its list is marked empty after the loop, with the others.
            if !self.lists.is_lone(size as u64) {
                // SAFETY: the buddy's free bit was set, so it is in list k (pool invariant);
                // k is the order of `size`.
                if unsafe { self.lists.unlink(self.base, size.trailing_zeros(), buddy) } {
                    emptied |= size as u64;
                }
            }
            // Clears bit k of `off`: the merged block starts at the lower of the two.
            off &= buddy;
            n /= 2;
            size *= 2;
        }
        if size != first_size {
            // Lists k0..k with a lone block gave it to the merge: they are empty now.
            emptied |= self.lists.lone_in((size - first_size) as u64);
            self.lists.mark_empty(emptied);
        }
        let k = size.trailing_zeros();
        // SAFETY: `off` now starts a block of order k made only of the freed block and free
        // buddies just unlinked, so it is free and in no list.
        unsafe { self.lists.push(self.base, k, off) };
        self.set_heap_bit(Map::Free, n);
    }

    /// Makes the block at `off` of order `k` free: links it and sets its free bit.
    ///
    /// # Safety
    /// - the block is pool memory that is neither live nor in any free list.
    unsafe fn insert_free(&mut self, k: u32, off: usize) {
        // SAFETY: the caller guarantees the block is free memory in no list.
        unsafe { self.lists.push(self.base, k, off) };
        self.set_bit(Map::Free, k, off >> k);
    }

    /// Shrinks the live block at `off` from order `k` to `nk < k`, freeing the upper halves.
    fn shrink_in_place(&mut self, off: usize, k: u32, nk: u32) {
        self.clear_bit(Map::Live, k, off >> k);
        self.set_bit(Map::Live, nk, off >> nk);
        for j in nk..k {
            #[cfg(feature = "debug-fill")]
            // SAFETY: the upper half was part of our live block.
            unsafe {
                crate::debug_fill::fill(self.base, off + (1 << j), j);
            }
            // SAFETY: the upper half at order j was part of our live block, is now in no block,
            // and its buddy (the lower half, holding the kept block) is not free: no merge.
            unsafe { self.insert_free(j, off + (1 << j)) };
        }
    }

    /// Grows the live block at `off` from order `k` to `nk > k` if the buddies above are free.
    fn grow_in_place(&mut self, off: usize, k: u32, nk: u32) -> bool {
        if off & ((1 << nk) - 1) != 0 {
            return false;
        }
        if !(k..nk).all(|j| self.bit(Map::Free, j, (off + (1 << j)) >> j)) {
            return false;
        }
        for j in k..nk {
            let buddy = off + (1 << j);
            // SAFETY: its free bit is set, so it is in list j.
            unsafe { self.lists.remove(self.base, j, buddy) };
            self.clear_bit(Map::Free, j, buddy >> j);
        }
        self.clear_bit(Map::Live, k, off >> k);
        self.set_bit(Map::Live, nk, off >> nk);
        true
    }

    /// The pointer to offset `off`, derived from the base so it carries the pool's provenance.
    #[inline]
    fn ptr_at(&self, off: usize) -> NonNull<u8> {
        // SAFETY: off < size, and base + off does not wrap (the region is mapped there).
        unsafe { NonNull::new_unchecked(self.base.as_ptr().wrapping_add(off)) }
    }

    #[inline]
    pub(crate) fn meta(&self) -> &[u64] {
        // SAFETY: `meta` is 2 * words initialised words owned by the pool, borrowed with `self`.
        unsafe { core::slice::from_raw_parts(self.meta.as_ptr(), 2 * self.geometry.words()) }
    }

    /// The word of `map` holding bit `(k, index)`, and the bit's mask within it.
    ///
    /// `k` must be an order `SMALLEST_K..=kval` and `index` a block index of that order, so the
    /// word is inside that bitmap (checked in debug builds).
    #[inline(always)]
    fn word_of(&self, map: Map, k: u32, index: usize) -> (*mut u64, u64) {
        self.heap_word(map, self.heap_bit(k, index))
    }

    /// The word of `map` holding heap bit `n` (from [`heap_bit`](Self::heap_bit)), and the
    /// bit's mask within it.
    #[inline(always)]
    fn heap_word(&self, map: Map, n: usize) -> (*mut u64, u64) {
        let (w, mask) = (n / 64, 1 << (n % 64));
        debug_assert!(w < self.geometry.words(), "bitmap word {w} out of range");
        let bitmap = match map {
            Map::Free => self.meta,
            Map::Live => self.live,
        };
        (bitmap.as_ptr().wrapping_add(w), mask)
    }

    #[inline(always)]
    pub(crate) fn bit(&self, map: Map, k: u32, index: usize) -> bool {
        let (word, mask) = self.word_of(map, k, index);
        // SAFETY: `word` is inside the metadata (see `word_of`), which the pool owns; `&self`
        // excludes writers.
        unsafe { *word & mask != 0 }
    }

    #[inline(always)]
    fn set_bit(&mut self, map: Map, k: u32, index: usize) {
        let (word, mask) = self.word_of(map, k, index);
        debug_assert!(
            !self.bit(map, k, index),
            "{map:?} bit ({k}, {index}) set twice"
        );
        // SAFETY: `word` is inside the metadata (see `word_of`); `&mut self` makes it exclusive.
        unsafe { *word |= mask };
    }

    /// Sets heap bit `n` of `map`, which is clear.
    #[inline(always)]
    fn set_heap_bit(&mut self, map: Map, n: usize) {
        let (word, mask) = self.heap_word(map, n);
        // SAFETY: `word` is inside the metadata (see `heap_word`); `&mut self` makes it
        // exclusive.
        unsafe {
            debug_assert!(*word & mask == 0, "{map:?} heap bit {n} set twice");
            *word |= mask;
        }
    }

    /// Clears heap bit `n` of `map`, which is set.
    #[inline(always)]
    fn clear_heap_bit(&mut self, map: Map, n: usize) {
        let (word, mask) = self.heap_word(map, n);
        // SAFETY: `word` is inside the metadata (see `heap_word`); `&mut self` makes it
        // exclusive.
        unsafe {
            debug_assert!(*word & mask != 0, "{map:?} heap bit {n} cleared twice");
            *word &= !mask;
        }
    }

    #[inline(always)]
    fn clear_bit(&mut self, map: Map, k: u32, index: usize) {
        let (word, mask) = self.word_of(map, k, index);
        debug_assert!(
            self.bit(map, k, index),
            "{map:?} bit ({k}, {index}) cleared twice"
        );
        // SAFETY: `word` is inside the metadata (see `word_of`); `&mut self` makes it exclusive.
        unsafe { *word &= !mask };
    }

    #[inline]
    pub(crate) fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    #[inline]
    pub(crate) fn lists(&self) -> &FreeLists {
        &self.lists
    }
}

/// What the bits of one order say, from [`BuddyPool::order_bits`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct OrderBits {
    /// Free blocks of the order: its bits in the free bitmap.
    pub free: usize,
    /// Allocated blocks of the order: its bits in the live bitmap.
    pub live: usize,
    /// The or of `f & (f >> 1)` over its free words `f`: bit `2m` set ⇔ the buddies at bits
    /// `2m` and `2m + 1` are both free (an order's bits start at an even bit).
    pub buddies: u64,
    /// The or of `f & l` over its words: nonzero ⇔ a block is both free and allocated.
    pub both: u64,
}

impl OrderBits {
    #[inline(always)]
    fn add(&mut self, f: u64, l: u64) {
        self.free += f.count_ones() as usize;
        self.live += l.count_ones() as usize;
        self.buddies |= f & (f >> 1);
        self.both |= f & l;
    }
}

/// Iterator over a pool's free blocks, from [`BuddyPool::free_blocks`].
#[derive(Debug)]
pub struct FreeBlocks<'a> {
    pool: &'a BuddyPool,
    k: u32,
    next: usize,
}

impl Iterator for FreeBlocks<'_> {
    type Item = (NonNull<u8>, u32);

    fn next(&mut self) -> Option<Self::Item> {
        while self.next == NIL {
            if self.k >= self.pool.kval() {
                return None;
            }
            self.k += 1;
            self.next = self.pool.lists.head(self.k);
        }
        let off = self.next;
        // SAFETY: `off` is a node of list k, valid while the pool is borrowed.
        self.next = unsafe { self.pool.lists.next_in(self.pool.base, self.k, off) };
        Some((self.pool.ptr_at(off), self.k))
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::{BuddyPool, Map};
    use crate::order::{MIN_K, SMALLEST_K};

    /// Blocks of a 2^MIN_K pool at which `validate`'s scan of the bitmaps is tried: both ends of
    /// an order of many words, one in a later group of eight words, and orders of four words
    /// and of less than one word.
    fn places() -> std::vec::Vec<(u32, usize)> {
        let blocks = |k: u32| 1usize << (MIN_K - k);
        let mut v = std::vec::Vec::new();
        for k in [SMALLEST_K, SMALLEST_K + 1, MIN_K - 8, MIN_K - 3, MIN_K - 1] {
            for i in [0, 64 * 9 + 6, blocks(k) - 2] {
                if i < blocks(k) {
                    v.push((k, i));
                }
            }
        }
        v
    }

    #[test]
    fn validate_finds_a_block_both_free_and_allocated_anywhere() {
        for (k, i) in places() {
            let mut pool = BuddyPool::new(1 << MIN_K).unwrap();
            pool.set_bit(Map::Free, k, i);
            pool.set_bit(Map::Live, k, i);
            let e = pool.validate().unwrap_err();
            assert_eq!(
                (e.what, e.order),
                ("block both free and allocated", k),
                "({k}, {i})"
            );
        }
    }

    /// A live block's bit moved into a free block: the bytes still add up, but the block's
    /// bytes are in no block, and the first lost granule is reported.
    #[test]
    fn validate_finds_lost_memory_anywhere() {
        for (k, m) in [
            (SMALLEST_K, 1),
            (SMALLEST_K, 700),
            (SMALLEST_K + 3, 40),
            (14, 16),
        ] {
            let mut pool = BuddyPool::new(1 << MIN_K).unwrap();
            let mut last = None;
            for _ in 0..m {
                last = Some(pool.alloc_order(k).unwrap());
            }
            let off = last.unwrap().as_ptr().addr() - pool.base().as_ptr().addr();
            assert!(
                pool.bit(Map::Free, MIN_K - 1, 1),
                "the upper half is still free"
            );
            pool.clear_bit(Map::Live, k, off >> k);
            pool.set_bit(Map::Live, k, (1 << (MIN_K - 1 - k)) + 3);
            let e = pool.validate().unwrap_err();
            assert_eq!(
                (e.what, e.order, e.offset),
                ("bytes in no block (lost memory)", SMALLEST_K, off),
                "order {k}, block {m}"
            );
        }
    }

    #[test]
    fn validate_finds_two_free_buddies_anywhere() {
        for (k, i) in places() {
            let mut pool = BuddyPool::new(1 << MIN_K).unwrap();
            pool.set_bit(Map::Free, k, i & !1);
            pool.set_bit(Map::Free, k, i | 1);
            let e = pool.validate().unwrap_err();
            assert_eq!(
                (e.what, e.order),
                ("two free buddies not merged", k),
                "({k}, {i})"
            );
        }
    }
}
