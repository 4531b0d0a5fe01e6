//! The exhaustion latch: a remembered out-of-memory decision, so that once a pool is full a
//! failing allocation costs one load instead of a search, and the moment memory comes back the
//! next allocation searches again.
//!
//! The word is `token << 8 | state`: state 0 is *open*; a non-zero state is a decision for
//! order `k` by one allocation, *proposed* (`k`), then *decided* (`k |` [`DECIDED`]) once that
//! allocation's search found nothing while the pool was quiet (see `transit`). A decided latch
//! for order `k` answers every request of order `≥ k` with out-of-memory. Every proposal takes
//! the next token, and clearing keeps the token, so a word value names one proposal and a
//! confirmation can only confirm its own.
//!
//! It can never stay decided while memory is free, by a Dekker-style argument on two `SeqCst`
//! fences: the decider stores its proposal, then a fence, then searches; every step that adds
//! memory (a release into the bitmaps, a magazine into the depot) writes it, then a fence, then
//! reads the latch, clearing any proposal or decision it sees. The fences are totally ordered:
//! if the adder's comes first, the decider's search sees the added memory (or what became of
//! it); if the decider's comes first, the adder sees the proposal (or a later value) and
//! clears it, so the confirmation fails or is undone. Clearing is always safe: it only costs
//! the next failing allocation a search. (Fences, not `SeqCst` accesses: the argument needs
//! the decider's plain searches ordered too, and loom models fences exactly.)
//!
//! A proposal is only placed on an open latch (or over a decision for a larger order), so
//! deciders never undo each other's proposals:
//! an allocation's own out-of-memory answer comes from its own quiet search, and the latch only
//! remembers it for the next ones.

use crate::facade::{fence, AtomicU64, CachePadded, Ordering};
use crate::units::Order;

/// Set in a decision that its search confirmed.
const DECIDED: u64 = 1 << 7;
/// The order bits of the word (0: open).
const ORDER_MASK: u64 = DECIDED - 1;
/// The state bits: order and [`DECIDED`].
const STATE: u64 = (1 << 8) - 1;

pub(crate) struct Exhaustion {
    /// Read on every failing allocation and by every step that adds memory: its own line, and
    /// written only when a decision is made or undone.
    word: CachePadded<AtomicU64>,
}

/// A proposal this thread placed on the latch before its search.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proposal(u64);

impl Exhaustion {
    pub(crate) fn new() -> Self {
        Self {
            word: CachePadded::new(AtomicU64::new(0)),
        }
    }

    /// Whether a decided out-of-memory covers a request of order `k`.
    #[inline]
    pub(crate) fn covers(&self, k: Order) -> bool {
        // Acquire: a decision is read with what its decider saw (nothing depends on it; a
        // stale answer is as good as one read a moment earlier).
        let w = self.word.load(Ordering::Acquire);
        w & DECIDED != 0 && u64::from(k.get()) >= w & ORDER_MASK
    }

    /// Places a proposal for order `k` (call before the search) if the latch is open, or
    /// holds a decision for a larger order only (replacing a decision by a proposal is always
    /// safe: it only makes the latch answer less).
    pub(crate) fn propose(&self, k: Order) -> Option<Proposal> {
        // Relaxed: only picks the value to replace; the CAS decides.
        let old = self.word.load(Ordering::Relaxed);
        let order = old & ORDER_MASK;
        let replaceable = order == 0 || (old & DECIDED != 0 && order > u64::from(k.get()));
        if !replaceable {
            return None;
        }
        let w = ((old | STATE).wrapping_add(1)) | u64::from(k.get());
        let placed = self
            .word
            .compare_exchange(old, w, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        // SeqCst fence: the proposal before this thread's search (see the module docs).
        fence(Ordering::SeqCst);
        placed.then_some(Proposal(w))
    }

    /// Turns the proposal into a decision after a quiet search found nothing. Fails (and does
    /// nothing) when memory came back since the proposal, which cleared it.
    pub(crate) fn confirm(&self, p: Proposal) {
        // Release: a reader of the decision sees what led to it (nothing depends on it).
        let _ =
            self.word
                .compare_exchange(p.0, p.0 | DECIDED, Ordering::Release, Ordering::Relaxed);
    }

    /// Takes the proposal back (the search found memory, or gave up undecided).
    pub(crate) fn withdraw(&self, p: Proposal) {
        let _ = self
            .word
            .compare_exchange(p.0, p.0 & !STATE, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Called by every step that added memory, after its last write: opens the latch if a
    /// proposal or decision is on it.
    #[inline]
    pub(crate) fn memory_returned(&self) {
        // SeqCst fence: see the module docs; without it the read below could miss a proposal
        // whose search missed our memory.
        fence(Ordering::SeqCst);
        let mut w = self.word.load(Ordering::Relaxed);
        // At most two rounds: a proposal changes at most once (to decided) before it goes.
        while w & STATE != 0 {
            match self
                .word
                .compare_exchange(w, w & !STATE, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break,
                // The same proposal, confirmed meanwhile: it goes too.
                Err(now) if now & !DECIDED == w & !DECIDED => w = now,
                // Cleared by someone else, or a newer proposal, placed after our fence (else
                // our read would have seen it): its search sees our memory.
                Err(_) => break,
            }
        }
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_decision_covers_larger_orders_until_memory_returns() {
        let e = Exhaustion::new();
        assert!(!e.covers(Order(6)));
        let p = e.propose(Order(8)).expect("open latch");
        assert!(e.propose(Order(6)).is_none(), "one proposal at a time");
        assert!(!e.covers(Order(8)), "a proposal is not a decision");
        e.confirm(p);
        assert!(e.covers(Order(8)) && e.covers(Order(20)));
        assert!(!e.covers(Order(7)), "smaller orders may still fit");
        e.memory_returned();
        assert!(!e.covers(Order(8)));
        let p = e.propose(Order(8)).expect("open again");
        e.memory_returned();
        e.confirm(p);
        assert!(!e.covers(Order(8)), "memory returned during the search");
        let p = e.propose(Order(9)).expect("open");
        e.confirm(p);
        let p = e
            .propose(Order(6))
            .expect("a decision for a larger order gives way");
        assert!(!e.covers(Order(9)));
        e.withdraw(p);
        assert!(e.propose(Order(6)).is_some(), "withdrawn");
    }
}
