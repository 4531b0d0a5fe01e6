//! Native implementations: std's atomics (or their counting wrappers, see `native_atomics` in
//! the facade) and thread-locals, OS-mapped words, tags in blocks.

use core::ptr::NonNull;

use balloc_core::internal::Mapping;
use balloc_core::InitError;

pub(crate) use super::native_atomics::{AtomicPtr, AtomicU64, AtomicUsize};
pub(crate) use std::sync::atomic::{fence, Ordering};
pub(crate) use std::thread::yield_now;
pub(crate) use std::thread_local;

/// Yields every fourth call on this thread (the chaos switch's race windows).
pub(crate) fn chaos_yield() {
    std::thread_local! {
        static CALLS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }
    let n = CALLS.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n
    });
    if n % 4 == 0 {
        std::thread::yield_now();
    }
}

/// `len` zero-initialised atomic words in a lazily backed OS mapping: a 1 GiB pool's 8 MiB of
/// bitmaps cost no memory until touched.
#[derive(Debug)]
pub(crate) struct Words {
    map: Option<Mapping>,
    len: usize,
}

impl Words {
    /// Reserves `len` zeroed words.
    pub(crate) fn zeroed(len: usize) -> Result<Self, InitError> {
        let map = if len == 0 {
            None
        } else {
            Some(Mapping::reserve(len * 8, 8)?)
        };
        Ok(Self { map, len })
    }

    /// The words.
    #[inline]
    pub(crate) fn get(&self) -> &[AtomicU64] {
        match &self.map {
            // SAFETY: the mapping holds `len` zero-initialised, 8-aligned u64s, and AtomicU64
            // (std's, or the counting wrapper, `repr(transparent)` over std's) has the size and
            // alignment of u64 with all bit patterns valid; the mapping lives as long as
            // `self`, and is only ever accessed through these atomics.
            Some(map) => unsafe {
                core::slice::from_raw_parts(map.as_ptr().as_ptr().cast::<AtomicU64>(), self.len)
            },
            None => &[],
        }
    }

    /// Bytes of memory the words take.
    pub(crate) fn bytes(&self) -> usize {
        self.len * 8
    }
}

/// Where tags live: natively in the second word of each block, so the table holds nothing.
///
/// The second word, not the first: the first is the word a caller most often writes last,
/// often with a narrower store (a byte, a 32-bit field), and the trusted free's 8-byte load of
/// the tag right after such a store cannot be forwarded from it and waits for it to reach the
/// cache: on the bench's `pair-64`, which writes one byte at the start of every block, that
/// stall cost 30% of the throughput (148 against 212 Mops/s on one thread of a 2-vCPU Xeon).
#[derive(Debug)]
pub(crate) struct TagTable;

impl TagTable {
    /// Tag words for a pool of order `kval`.
    pub(crate) fn new(_kval: u32) -> Self {
        TagTable
    }

    /// A copyable handle to the table.
    pub(crate) fn words(&self) -> TagWords {
        TagWords
    }
}

/// A copyable handle to a [`TagTable`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TagWords;

impl TagWords {
    /// The tag word of the block at `block`, which starts at offset `off` of the pool.
    ///
    /// Always std's atomic, never the counting wrapper: the word is block memory, which the
    /// block's user writes too, not pool metadata, so its writes are no measure of the pool's
    /// sharing.
    ///
    /// # Safety
    /// - `block` is the start of a block of the pool (at least 64 bytes, 64-aligned) whose
    ///   memory stays mapped while the returned reference is used.
    #[inline(always)]
    pub(crate) unsafe fn word<'a>(
        self,
        block: NonNull<u8>,
        _off: usize,
    ) -> &'a std::sync::atomic::AtomicUsize {
        // SAFETY: `block` is 64-aligned pool memory of at least 64 bytes (so its second word is
        // in it), mapped for as long as the caller says; all concurrent accesses to a block's
        // tag word by the pool are atomic, and a caller's own accesses happen while it holds the
        // block (ordered by its own synchronisation).
        unsafe { std::sync::atomic::AtomicUsize::from_ptr(block.as_ptr().cast::<usize>().add(1)) }
    }

    /// The tag word's value, read by a thread that holds the block (so no other thread writes
    /// the word meanwhile): a plain load, which the compiler may fold into the comparison that
    /// uses it (an atomic load it keeps separate).
    ///
    /// # Safety
    /// - as for [`Self::word`], and no other thread writes the word during the read.
    #[inline(always)]
    pub(crate) unsafe fn read_held(self, block: NonNull<u8>, _off: usize) -> usize {
        // SAFETY: mapped, aligned pool memory (the caller's obligation), and no concurrent
        // write (the caller holds the block).
        unsafe { block.as_ptr().cast::<usize>().add(1).read() }
    }
}

/// Whether the depot peeks (a Relaxed load) before its magazine CAS: always natively.
#[inline(always)]
pub(crate) fn depot_peek() -> bool {
    true
}

/// Whether a depot-shard mutant replaces the real step: never natively.
#[inline(always)]
pub(crate) fn shard_mutant(_which: super::ShardMutant) -> bool {
    false
}
