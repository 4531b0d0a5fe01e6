//! [`Purge`]: free memory goes back to the OS on its own, after a delay, with no background
//! thread (the idea of mimalloc's purge delay).
//!
//! - Every release into the bitmaps that leaves a free block of a page or more
//!   (`Region::release`, a batch flush, a shrink in place) adds the bytes it made trimmable
//!   to `freed`, a sharded counter (one cache line per shard, as the transit counters), and
//!   *arms* the purge if it is not armed: `deadline = now + delay`. The clock is read only
//!   to arm, so once per purge cycle.
//! - Slow paths (those releases, and every allocation that misses its cache) *tick*: one
//!   load of `deadline` while disarmed; while armed, every [`TICKS_PER_CLOCK`]-th tick of a
//!   thread reads the clock. The thread whose tick finds the deadline passed and takes it
//!   (one CAS to 0) sums `freed`: at least `threshold` bytes freed since the last purge, and
//!   it trims at most [`PURGE_PIECES`] pieces and about [`PURGE_BYTES`] (see `trim`); with
//!   work left, it leaves the purge due, so the next tick (any thread's) goes on at once.
//!
//! `freed` is a trigger, not an account: memory freed and allocated again is counted too,
//! and then the purge finds little to hand back, at the cost of a scan of the free bitmaps
//! of orders of a page and more (one load per 64 blocks) and of the dirty bits of what is
//! free (one load per 64 pages).
//!
//! Cost, paid by the thread that runs the purge: one `madvise` per run of dirty pages (at
//! most [`PURGE_PIECES`] pieces, up to 2 MiB each, and about [`PURGE_BYTES`] per purge), and
//! later, when the memory is used again, one page fault per page (the OS zeroes it). A purge
//! never hides more than one piece from other threads at a time (see `trim`). Only slow
//! paths run it: a thread whose calls all hit its cache never purges, and memory goes back
//! as fast as slow paths come, at most about [`PURGE_BYTES`] each.
//!
//! Off under loom: the models check the block protocol, and a clock has no place in them.

use core::time::Duration;
use std::time::Instant;

use balloc_core::InitError;

use crate::facade::{thread_local, AtomicU64, Ordering, Words, LOOM};
use crate::region::Region;
use crate::shards::{this_thread_shard, SHARDS};

/// A thread reads the clock at one of this many of its ticks while a purge is armed.
pub(crate) const TICKS_PER_CLOCK: u32 = 8;

/// Pieces one purge may hand back before it re-arms for the next tick (each a claim and
/// one `madvise` per run of dirty pages), and the bytes after which it stops early: about a
/// millisecond and a half of work on 2 vCPUs (a trim handed back 800 MB of written 8 KiB
/// blocks in 33 ms there), so no allocation that happens to tick pays for more.
/// Freed memory is often in many small pieces (a 4 KiB buffer freed between live neighbours),
/// hence a count well above what the byte bound allows in whole 2 MiB pieces.
pub(crate) const PURGE_PIECES: usize = 512;
pub(crate) const PURGE_BYTES: usize = 32 << 20;

/// The deadline of a purge that stopped at its bound with work left: due at the next tick,
/// which need not read the clock. (A real deadline is at least `delay + 1` ns after the
/// epoch, and 1 only for a zero delay armed at the epoch, due at once anyway.)
const GO_ON: u64 = 1;

/// Default delay before freed memory goes back: 10 ms, mimalloc's default `purge_delay`.
pub(crate) const DEFAULT_PURGE_DELAY: Duration = Duration::from_millis(10);

/// Default threshold: 4 MiB freed since the last purge. Below it, memory stays resident (a
/// service whose use wobbles by a few MiB does not pay page faults for it).
pub(crate) const DEFAULT_PURGE_THRESHOLD: usize = 4 << 20;

/// When purges run; `None` in the builder turns them off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PurgeConfig {
    pub(crate) delay: Duration,
    pub(crate) threshold: usize,
}

/// Words per cache line (128 bytes, as `CachePadded` on x86-64 and aarch64).
const LINE: usize = 16;

/// A pool's purge state.
pub(crate) struct Purge {
    config: Option<PurgeConfig>,
    /// The pool's clock origin: deadlines are nanoseconds since it.
    epoch: Instant,
    /// One cache line each, in a lazily mapped block outside the pool's struct (which model
    /// checkers build on small stacks): line 0, word 0: the deadline, nanoseconds since
    /// `epoch` + 1 at which the purge is due, 0 while disarmed (read by every tick, written
    /// once per cycle); line `1 + s`, word 0: bytes made trimmable since the last purge by
    /// releases on shard `s` (see `Region::trimmable`).
    pub(crate) lines: Words,
}

impl Purge {
    pub(crate) fn new(config: Option<PurgeConfig>) -> Result<Self, InitError> {
        let config = if LOOM { None } else { config };
        let lines = if config.is_some() { 1 + SHARDS } else { 0 };
        Ok(Self {
            config,
            epoch: Instant::now(),
            lines: Words::zeroed(lines * LINE)?,
        })
    }

    /// The deadline word (only while purging is on).
    #[inline]
    fn deadline(&self) -> &AtomicU64 {
        &self.lines.get()[0]
    }

    /// Shard `s`'s count of trimmable bytes (only while purging is on).
    #[inline]
    fn freed(&self, s: usize) -> &AtomicU64 {
        &self.lines.get()[(1 + s) * LINE]
    }

    /// Every shard's count.
    fn all_freed(&self) -> impl Iterator<Item = &AtomicU64> {
        (0..SHARDS).map(|s| self.freed(s))
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records `bytes` released into the bitmaps in blocks of a page or more; arms the purge.
    #[inline]
    pub(crate) fn note_freed(&self, bytes: usize) {
        let Some(config) = self.config else {
            return;
        };
        // Relaxed: a statistic the purge sums; it reads the bitmaps themselves to act.
        self.freed(this_thread_shard())
            .fetch_add(bytes as u64, Ordering::Relaxed);
        // Relaxed: a hint; the CAS decides who arms.
        if self.deadline().load(Ordering::Relaxed) == 0 {
            self.arm(config.delay);
        }
    }

    fn arm(&self, delay: Duration) {
        let due = self
            .now()
            .saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX))
            .saturating_add(1)
            .min(u64::MAX - 1);
        // Relaxed: nothing is published through the deadline.
        let _ = self
            .deadline()
            .compare_exchange(0, due, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A slow path's tick: runs a bounded purge of `region` when one is due.
    #[inline]
    pub(crate) fn tick(&self, region: &Region) {
        if self.config.is_none() {
            return;
        }
        // Relaxed: a hint; the CAS in `tick_armed` decides.
        let due = self.deadline().load(Ordering::Relaxed);
        if due != 0 {
            self.tick_armed(region, due);
        }
    }

    #[cold]
    #[inline(never)]
    fn tick_armed(&self, region: &Region, due: u64) {
        thread_local! {
            static TICKS: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
        }
        if due != GO_ON {
            let clock = TICKS
                .try_with(|t| {
                    let n = t.get().wrapping_add(1);
                    t.set(n);
                    n % TICKS_PER_CLOCK == 0
                })
                .unwrap_or(false);
            if !clock || self.now() < due {
                return;
            }
        }
        // Relaxed: only decides which thread purges.
        if self
            .deadline()
            .compare_exchange(due, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Some(config) = self.config else {
            return;
        };
        // Relaxed: a statistic (see `note_freed`).
        let freed: u64 = self.all_freed().map(|f| f.load(Ordering::Relaxed)).sum();
        if freed < config.threshold as u64 {
            // Stays disarmed until the next release arms it again, with `freed` kept.
            return;
        }
        for f in self.all_freed() {
            // Relaxed: as above; bytes freed from now on count towards the next purge.
            f.store(0, Ordering::Relaxed);
        }
        let (_, done) = region.trim(PURGE_PIECES, PURGE_BYTES);
        if !done {
            // Work left: the next tick goes on, without reading the clock.
            self.freed(this_thread_shard())
                .fetch_add(config.threshold as u64, Ordering::Relaxed);
            // Relaxed: as in `arm`; a release that armed meanwhile keeps its deadline.
            let _ =
                self.deadline()
                    .compare_exchange(0, GO_ON, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}
