//! A zero-initialised array of atomic words: the storage under the shared bitmaps.
//!
//! Normally it is an OS mapping (lazily backed, so a 1 GiB pool's 8 MiB of bitmaps cost nothing
//! until touched). Under loom each word must be a loom object, so it is a boxed slice there.

#[cfg(not(balloc_loom))]
use balloc_core::os::Mapping;
use balloc_core::InitError;

use crate::primitive::AtomicU64;

/// `len` atomic words, all zero at first.
#[derive(Debug)]
pub(crate) struct AtomicWords {
    #[cfg(not(balloc_loom))]
    map: Option<Mapping>,
    #[cfg(balloc_loom)]
    words: Box<[AtomicU64]>,
    len: usize,
}

impl AtomicWords {
    /// Reserves `len` zeroed words.
    pub(crate) fn zeroed(len: usize) -> Result<Self, InitError> {
        #[cfg(not(balloc_loom))]
        {
            let map = if len == 0 {
                None
            } else {
                Some(Mapping::reserve(len * 8, 8)?)
            };
            Ok(Self { map, len })
        }
        #[cfg(balloc_loom)]
        {
            let words = (0..len).map(|_| AtomicU64::new(0)).collect();
            Ok(Self { words, len })
        }
    }

    /// The words.
    #[inline]
    pub(crate) fn get(&self) -> &[AtomicU64] {
        #[cfg(not(balloc_loom))]
        match &self.map {
            // SAFETY: the mapping holds `len` zero-initialised, 8-aligned u64s, and AtomicU64
            // has the size and alignment of u64 with all bit patterns valid; the mapping lives
            // as long as `self`, and is only ever accessed through these atomics.
            Some(map) => unsafe {
                core::slice::from_raw_parts(map.as_ptr().as_ptr().cast::<AtomicU64>(), self.len)
            },
            None => &[],
        }
        #[cfg(balloc_loom)]
        &self.words
    }

    /// Bytes of memory the words take.
    pub(crate) fn bytes(&self) -> usize {
        self.len * 8
    }
}
