//! Statistics counters that threads add to without a read-modify-write: each live thread owns
//! one slot (claimed on first use, given back at thread exit), so no two threads write one
//! slot, and an addition is a load and a store. Threads beyond [`OWNED_SLOTS`], and threads
//! whose thread-locals are being torn down, share one more slot and add with `fetch_add`.
//! Readers sum every slot: a snapshot.
//!
//! A slot's values are cumulative and survive its owners: the next thread to claim a slot adds
//! to what the previous one left. Not part of the modelled protocol, so plain std atomics.

use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// Slots owned by one thread each; one more is shared.
pub(crate) const OWNED_SLOTS: usize = 64;

/// Which owned slots are claimed: bit `i` for slot `i`.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// Marks "no slot": the shared one.
const SHARED: usize = OWNED_SLOTS;
/// Marks "not looked for yet".
const UNCLAIMED: usize = usize::MAX;

struct ThreadSlot(Cell<usize>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        let i = self.0.get();
        if i < OWNED_SLOTS {
            // Release: this thread's last additions before the next owner's claim (Acquire).
            CLAIMED.fetch_and(!(1 << i), Ordering::Release);
        }
    }
}

std::thread_local! {
    static SLOT: ThreadSlot = const { ThreadSlot(Cell::new(UNCLAIMED)) };
}

/// This thread's slot: owned (`< OWNED_SLOTS`) or the shared one.
#[inline]
fn this_thread_slot() -> usize {
    SLOT.try_with(|s| {
        let i = s.0.get();
        if i != UNCLAIMED {
            return i;
        }
        let i = claim();
        s.0.set(i);
        i
    })
    .unwrap_or(SHARED)
}

/// Claims a free owned slot, or returns the shared one.
#[cold]
fn claim() -> usize {
    // Relaxed: only picks the bit to try; the CAS decides.
    let mut claimed = CLAIMED.load(Ordering::Relaxed);
    while claimed != u64::MAX {
        let i = (!claimed).trailing_zeros() as usize;
        // Acquire: the previous owner's additions (released at its exit) come before ours.
        match CLAIMED.compare_exchange_weak(
            claimed,
            claimed | 1 << i,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return i,
            Err(now) => claimed = now,
        }
    }
    SHARED
}

/// `N` counters, summed over all threads.
pub(crate) struct OwnedCounters<const N: usize> {
    slots: [CachePadded<[AtomicU64; N]>; OWNED_SLOTS + 1],
}

impl<const N: usize> OwnedCounters<N> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { CachePadded::new([const { AtomicU64::new(0) }; N]) }; OWNED_SLOTS + 1],
        }
    }

    /// Adds `values` to this thread's slot.
    #[inline]
    pub(crate) fn add(&self, values: [u64; N]) {
        let i = this_thread_slot();
        let slot = &self.slots[i];
        for (c, v) in slot.iter().zip(values) {
            if i == SHARED {
                // Relaxed: statistics; the RMW only keeps concurrent additions.
                c.fetch_add(v, Ordering::Relaxed);
            } else {
                // Relaxed: only this thread writes the slot; readers take a snapshot.
                c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
            }
        }
    }

    /// The sums over all slots (a snapshot).
    pub(crate) fn sum(&self) -> [u64; N] {
        let mut total = [0u64; N];
        for slot in &self.slots {
            for (t, c) in total.iter_mut().zip(slot.iter()) {
                // Relaxed: a snapshot.
                *t = t.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        total
    }
}

#[cfg(all(test, not(balloc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn additions_from_many_threads_all_count() {
        static C: OwnedCounters<2> = OwnedCounters::new();
        const ADDS: u64 = if cfg!(miri) { 3 } else { 1000 };
        let threads = OWNED_SLOTS as u64 + 8;
        // More threads than owned slots, some at once, so slots are shared and handed on.
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..ADDS {
                        C.add([1, 64]);
                    }
                });
            }
        });
        assert_eq!(C.sum(), [ADDS * threads, 64 * ADDS * threads]);
    }
}
