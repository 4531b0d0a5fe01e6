//! Transits: the record that lets an out-of-memory decision be exact without waiting for the
//! rest of the pool to be quiet.
//!
//! Free memory can be invisible to a search for a moment: a split has claimed a large block
//! and not yet published its halves, or a merge has taken a buddy out of the bitmap and not yet
//! marked the merged block. Every such step, and every step that adds memory a search could
//! find (a release into the bitmaps, a magazine into the depot), is counted here:
//! - `begin` before the first bitmap write, `end` after the last one (a *transit*);
//! - a transit that moved memory adds one to the generation when it ends; one that moved
//!   nothing (its claim lost a race) only leaves, so it invalidates nobody's search.
//!
//! A search that found nothing is *quiet* when a snapshot taken before it showed no transit in
//! flight and a snapshot taken after it is identical: then no split, merge or release
//! overlapped it, and "no free block of order ≥ k" held at one moment. A search that finds
//! nothing writes nothing here, so failing searches never invalidate each other.
//!
//! The counters are sharded (one cache line each, a shard per thread, chosen round-robin) so
//! that no word here is written by every thread; a snapshot reads every shard. Each shard's
//! word is `generation << 32 | in_flight`, changed only by RMWs (so every write continues a
//! release sequence). Orderings: a `begin` (AcqRel) comes before the transit's first bitmap
//! write, so a search that reads that write (Acquire) and then snapshots sees the transit; an
//! `end` (AcqRel) comes after its last bitmap write, so a snapshot that reads it (Acquire)
//! sees the memory it moved. Reading shard after shard is still exact: each shard's generation
//! only grows, so two snapshots with equal sums and no transit in flight saw no change in any
//! shard in between.

use crate::facade::{AtomicU64, CachePadded, Ordering};
use crate::shards::{this_thread_shard, SHARDS};

/// One finished transit that moved memory, in a shard's word.
const GENERATION: u64 = 1 << 32;

/// The sharded transit counters of one pool.
#[derive(Debug)]
pub(crate) struct Transits {
    shards: [CachePadded<AtomicU64>; SHARDS],
}

/// What [`Transits::snapshot`] saw: the sum of generations and of transits in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    generation: u64,
    in_flight: u64,
}

impl Snapshot {
    /// Whether a transit was in flight.
    #[inline]
    pub(crate) fn in_flight(self) -> bool {
        self.in_flight != 0
    }

    /// This snapshot with one finished move fewer (the loom mutant's own move, see
    /// `ladder::decide`).
    pub(crate) fn less_one_move(self) -> Snapshot {
        Snapshot {
            generation: self.generation.wrapping_sub(1),
            in_flight: self.in_flight,
        }
    }

    /// Whether a search between `self` (before) and `after` saw the pool still: nothing in
    /// flight when it began and nothing begun or finished since.
    #[inline]
    pub(crate) fn quiet_until(self, after: Snapshot) -> bool {
        self.in_flight == 0 && after == self
    }
}

/// An open transit; [`Transit::end`] closes it.
#[must_use = "a transit must be ended, or searches wait for it in vain"]
pub(crate) struct Transit<'a> {
    shard: &'a AtomicU64,
}

impl Transit<'_> {
    /// Closes the transit: `moved` when it changed where free memory is (a split, a merge, a
    /// release), false when it gave up without writing a bitmap.
    #[inline]
    pub(crate) fn end(self, moved: bool) {
        // AcqRel: see the module docs. Adds 2^32 - 1 (one fewer in flight, one more finished)
        // or takes 1 (one fewer in flight, generation unchanged).
        if moved {
            self.shard.fetch_add(GENERATION - 1, Ordering::AcqRel);
        } else {
            self.shard.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Transits {
    pub(crate) fn new() -> Self {
        Self {
            shards: core::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    /// Opens a transit on this thread's shard.
    #[inline]
    pub(crate) fn begin(&self) -> Transit<'_> {
        let shard = &*self.shards[this_thread_shard()];
        // AcqRel: see the module docs.
        shard.fetch_add(1, Ordering::AcqRel);
        Transit { shard }
    }

    /// Records a move that needs no window (a magazine put in the depot): the generation only.
    #[inline]
    pub(crate) fn note_moved(&self) {
        // AcqRel: see the module docs.
        self.shards[this_thread_shard()].fetch_add(GENERATION, Ordering::AcqRel);
    }

    /// Sums of generations and of transits in flight over all shards.
    #[inline]
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            generation: 0,
            in_flight: 0,
        };
        for shard in &self.shards {
            // Acquire: see the module docs.
            let w = shard.load(Ordering::Acquire);
            s.generation = s.generation.wrapping_add(w >> 32);
            s.in_flight += w & (GENERATION - 1);
        }
        s
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_moves_and_open_transits_break_quiet() {
        let t = Transits::new();
        let before = t.snapshot();
        assert!(before.quiet_until(t.snapshot()));
        t.begin().end(false);
        assert!(
            before.quiet_until(t.snapshot()),
            "a transit that moved nothing"
        );
        let open = t.begin();
        let during = t.snapshot();
        assert!(!before.quiet_until(during), "a transit in flight");
        assert!(
            !during.quiet_until(t.snapshot()),
            "began with one in flight"
        );
        open.end(true);
        assert!(!before.quiet_until(t.snapshot()), "a finished move");
        let before = t.snapshot();
        t.note_moved();
        assert!(!before.quiet_until(t.snapshot()), "a deposit");
    }
}
