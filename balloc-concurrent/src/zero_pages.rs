//! [`ZeroPages`]: which pages of the region are known to hold only zeros, so that a zeroed
//! allocation can skip writing them, and a hand-out can leave them untouched (not resident).
//!
//! One *dirty* bit per page (granule: the OS page, or the whole region when it is smaller):
//! - bit clear ⇒ every byte of the page is zero, and no part of it was handed out (to a
//!   caller or a thread cache) since it became so: it was never touched since the region was
//!   mapped, or `trim` handed it back to the OS (which reads it back as zeros);
//! - a hand-out marks every page its block overlaps dirty *before* anything writes into the
//!   block (a tag, the caller's data), with one RMW per word whose bits were not all set
//!   already (after warm-up, a load);
//! - only `trim` clears bits, for whole pages of a block it holds (claimed out of the free
//!   bitmap) and has just handed back.
//!
//! So each bit is written only by the one thread that owns the page's bytes at that moment,
//! except that hand-outs of small blocks sharing a page set the same bit (an idempotent RMW):
//! at most one of them sees it clear, and only that one may skip zeroing its block.
//! Ordering: a trimmer clears bits before its release of the block (AcqRel), and a hand-out
//! reads them after its claim (AcqRel), so a hand-out sees the clear of the trim before it.
//! Bits are a conservative record: a set bit may cover zeros (a page handed out but never
//! written); nothing relies on the converse.
//!
//! Not tracked under loom (every page reads dirty): the models check the block protocol,
//! and these words would only multiply their interleavings.

use balloc_core::InitError;

use crate::facade::{Ordering, Words, LOOM};
use crate::units::Offset;

/// The dirty bits of one region.
#[derive(Debug)]
pub(crate) struct ZeroPages {
    /// log2 of the granule: the OS page size, or the region's order when that is smaller.
    granule_k: u32,
    pub(crate) bits: Words,
}

impl ZeroPages {
    /// All pages clean: the region was just mapped (zero-filled, untouched).
    pub(crate) fn new(kval: u32, page_size: usize) -> Result<Self, InitError> {
        let granule_k = page_size.trailing_zeros().min(kval);
        let pages = 1usize << (kval - granule_k);
        let words = if LOOM { 0 } else { pages.div_ceil(64) };
        Ok(Self {
            granule_k,
            bits: Words::zeroed(words)?,
        })
    }

    /// Bytes per page (granule).
    #[inline]
    pub(crate) fn page_bytes(&self) -> usize {
        1 << self.granule_k
    }

    /// Pages overlapped by `len` bytes at `off`: first page and count.
    #[inline]
    fn pages(&self, off: Offset, len: usize) -> (usize, usize) {
        let first = off.0 >> self.granule_k;
        let last = (off.0 + len - 1) >> self.granule_k;
        (first, last - first + 1)
    }

    /// Marks dirty every page that `len` bytes at `off` overlap (a block being handed out),
    /// calling `was_clean(start, len)` for each part of the range that lay on a page that was
    /// clean until now (this call cleared the knowledge, so that part holds zeros).
    pub(crate) fn mark_dirty(
        &self,
        off: Offset,
        len: usize,
        mut was_clean: impl FnMut(usize, usize),
    ) {
        if LOOM {
            return;
        }
        let (first, count) = self.pages(off, len);
        let words = self.bits.get();
        let end = off.0 + len;
        let mut page = first;
        while page < first + count {
            let (w, mask, n) = word_part(page, first + count);
            // Relaxed load: after warm-up every bit is set, and this is all a hand-out costs.
            // The RMW is AcqRel: it comes after the caller's claim of the block (see module).
            let cur = words[w].load(Ordering::Relaxed);
            if cur & mask != mask {
                let old = words[w].fetch_or(mask, Ordering::AcqRel);
                let mut clean = !old & mask;
                while clean != 0 {
                    let p = w * 64 + clean.trailing_zeros() as usize;
                    clean &= clean - 1;
                    let start = (p << self.granule_k).max(off.0);
                    let stop = ((p + 1) << self.granule_k).min(end);
                    was_clean(start, stop - start);
                }
            }
            page += n;
        }
    }

    /// Whether any page of the whole pages `off .. off + len` (page aligned) is dirty.
    pub(crate) fn any_dirty(&self, off: Offset, len: usize) -> bool {
        if LOOM {
            return true;
        }
        let (first, count) = self.pages(off, len);
        let words = self.bits.get();
        let mut page = first;
        while page < first + count {
            let (w, mask, n) = word_part(page, first + count);
            // Relaxed: a hint for the trimmer, which holds the pages when it acts on it.
            if words[w].load(Ordering::Relaxed) & mask != 0 {
                return true;
            }
            page += n;
        }
        false
    }

    /// Calls `dirty_run(start, len)` for each maximal run of dirty pages in the whole pages
    /// `off .. off + len`, and marks the run clean when it returns true (its pages were handed
    /// back to the OS). The caller holds every page of the range (a claimed free block).
    pub(crate) fn clean_dirty_runs(
        &self,
        off: Offset,
        len: usize,
        mut dirty_run: impl FnMut(usize, usize) -> bool,
    ) {
        if LOOM {
            return;
        }
        let (first, count) = self.pages(off, len);
        let words = self.bits.get();
        let dirty = |p: usize| words[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0;
        let mut p = first;
        while p < first + count {
            if !dirty(p) {
                p += 1;
                continue;
            }
            let start = p;
            while p < first + count && dirty(p) {
                p += 1;
            }
            if dirty_run(start << self.granule_k, (p - start) << self.granule_k) {
                for q in start..p {
                    // Relaxed: published by the caller's release of the block (see module).
                    words[q / 64].fetch_and(!(1u64 << (q % 64)), Ordering::Relaxed);
                }
            }
        }
    }

    /// Bytes on clean pages (a snapshot): a lower bound of the region's bytes that are not
    /// resident.
    pub(crate) fn clean_bytes(&self, kval: u32) -> usize {
        if LOOM {
            return 0;
        }
        let pages = 1usize << (kval - self.granule_k);
        let dirty: usize = self
            .bits
            .get()
            .iter()
            // Relaxed: a statistics snapshot.
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum();
        (pages - dirty) << self.granule_k
    }
}

/// The part of pages `page .. end` that lies in `page`'s word: the word, its mask, and how
/// many pages that is.
#[inline]
fn word_part(page: usize, end: usize) -> (usize, u64, usize) {
    let (w, b) = (page / 64, page % 64);
    let n = (64 - b).min(end - page);
    let mask = if n == 64 {
        u64::MAX
    } else {
        ((1u64 << n) - 1) << b
    };
    (w, mask, n)
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn hand_outs_report_clean_parts_once_and_trims_clean_whole_runs() {
        let z = ZeroPages::new(20, 4096).unwrap();
        let mut seen = Vec::new();
        z.mark_dirty(Offset(64), 64, |s, l| seen.push((s, l)));
        assert_eq!(seen, [(64, 64)], "a small block on a clean page");
        seen.clear();
        z.mark_dirty(Offset(128), 64, |s, l| seen.push((s, l)));
        assert!(seen.is_empty(), "the page is dirty now");
        z.mark_dirty(Offset(0), 3 * 4096, |s, l| seen.push((s, l)));
        assert_eq!(seen, [(4096, 4096), (8192, 4096)], "only the clean pages");
        assert!(z.any_dirty(Offset(0), 4096));
        assert!(!z.any_dirty(Offset(4 * 4096), 4096));
        let mut runs = Vec::new();
        z.clean_dirty_runs(Offset(0), 8 * 4096, |s, l| {
            runs.push((s, l));
            true
        });
        assert_eq!(runs, [(0, 3 * 4096)]);
        assert!(!z.any_dirty(Offset(0), 1 << 20));
        assert_eq!(z.clean_bytes(20), 1 << 20);
        z.mark_dirty(Offset(0), 1 << 20, |_, _| {});
        assert_eq!(z.clean_bytes(20), 0);
        z.clean_dirty_runs(Offset(0), 4096, |_, _| false);
        assert!(
            z.any_dirty(Offset(0), 4096),
            "a refused hand-back stays dirty"
        );
    }
}
