//! Trimming: handing the pages of free blocks back to the OS while other threads allocate.
//!
//! A free block's pages may only be handed back while the trimmer owns them, so each *piece*
//! (a free block of a page or more, or a 2 MiB part of a larger one) goes through the steps a
//! split does, inside one transit:
//! 1. claim the free block that holds the piece (one `fetch_and` on its bit);
//! 2. if that block is larger than the piece, split it down to the piece, publishing the
//!    halves that do not hold it (so the rest of a large block stays visible to searches);
//! 3. `madvise(MADV_DONTNEED)` every run of dirty pages of the piece, and mark them clean
//!    (`zero_pages`: they read back as zeros);
//! 4. release the piece (it merges with its free buddies again), end the transit (a move),
//!    and tell the exhaustion latch that memory came back.
//!
//! Free blocks in the bitmaps carry nothing the pool needs (the free lists are bitmaps, and a
//! tag lives in a block's second word only while the block is cached), so the whole piece is
//! handed back. Blocks in thread caches count as used: trim does not touch them.
//!
//! While a piece is claimed (at most 2 MiB, for the time of one `madvise`) a concurrent
//! allocation may see that much less free memory. Trim's transit is in flight meanwhile, so an
//! out-of-memory decision waits for it or searches again; a search that finds nothing while it
//! is in flight is never taken as quiet (see `transit`), so trim causes no out-of-memory
//! answer from a quiet search. Each claim is one piece, so every call is bounded by the
//! pieces it visits: at most one per free block of a page or more, or per 2 MiB of free memory.
//!
//! Under Miri (and on platforms without `madvise`) the OS hands nothing back: pages stay dirty
//! and trim returns 0.

use crate::region::Region;
use crate::units::{BlockIndex, Offset, Order};

/// Order of the largest piece one claim hands back: 2 MiB, about 512 pages, so one `madvise`
/// (tens of microseconds when every page is resident) is all a piece hides memory for.
const PIECE_K: u32 = 21;

impl Region {
    /// Hands back the dirty pages of up to `pieces` pieces of free memory (pieces that are
    /// already clean cost a few loads and do not count), stopping early once `bytes` went
    /// back. Returns the bytes handed back, and whether the whole region was visited.
    pub(crate) fn trim(&self, mut pieces: usize, bytes: usize) -> (usize, bool) {
        let page = self.zero.page_bytes();
        let page_k = Order(page.trailing_zeros());
        if page_k > self.top || page < balloc_core::internal::page_size() {
            return (0, true); // the region is smaller than a page
        }
        let piece_k = Order(PIECE_K.max(page_k.get()));
        let mut given = 0;
        for k in page_k.through(self.top).rev() {
            for rel in 0..self.maps.word_count(k) {
                let mut bits = self.maps.free_bits(k, rel);
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let off = BlockIndex(rel * 64 + b).offset(k);
                    let piece = k.min(piece_k);
                    for j in 0..1usize << (k.get() - piece.get()) {
                        let at = Offset(off.0 + (j << piece.get()));
                        if !self.zero.any_dirty(at, piece.bytes()) {
                            continue;
                        }
                        if pieces == 0 || given >= bytes {
                            return (given, false);
                        }
                        pieces -= 1;
                        given += self.trim_piece(at, piece);
                    }
                }
            }
        }
        (given, true)
    }

    /// Steps 1 to 4 of the module docs for the piece of order `p` at `at`. Returns the bytes
    /// handed back (0 when the piece is no longer free, or the OS refused).
    fn trim_piece(&self, at: Offset, p: Order) -> usize {
        let t = self.maps.transits.begin();
        crate::facade::chaos_point();
        // The free block holding the piece: the piece itself, or a block above it.
        let Some(k) = p
            .through(self.top)
            .find(|&k| self.maps.claim_exact(k, at.index(k)))
        else {
            t.end(false);
            return 0;
        };
        for i in (p.get()..k.get()).rev().map(Order) {
            // The half of the block of order i + 1 that does not hold the piece.
            let BlockIndex(mine) = at.index(i);
            self.maps.publish_split_half(i, BlockIndex(mine ^ 1));
        }
        crate::facade::chaos_point();
        let mut bytes = 0;
        self.zero.clean_dirty_runs(at, p.bytes(), |start, len| {
            let given = self.mapping.discard(start, len);
            bytes += given;
            given == len
        });
        self.maps.release(p, at.index(p));
        t.end(true);
        self.exhaustion.memory_returned();
        bytes
    }
}

#[cfg(all(test, not(balloc_loom), not(miri)))]
mod tests {
    use crate::ConcurrentPool;

    /// A piece claimed out of a larger free block is split off and merged back: the pool is
    /// whole again, and a second trim finds nothing dirty.
    #[test]
    fn trimming_a_touched_pool_hands_back_its_pages_and_keeps_it_whole() {
        let pool = ConcurrentPool::builder()
            .size(1 << 23)
            .cache_capacity(0)
            .build()
            .unwrap();
        let p = pool.alloc(1 << 22).unwrap();
        // SAFETY: a live 4 MiB block of the pool.
        unsafe { p.as_ptr().write_bytes(0xA5, 1 << 22) };
        pool.free(p).unwrap();
        let given = pool.trim();
        assert_eq!(given, 1 << 22, "every touched page goes back");
        pool.validate().unwrap();
        assert!(pool.stats().is_coalesced());
        assert_eq!(pool.trim(), 0, "nothing dirty is left");
    }
}
