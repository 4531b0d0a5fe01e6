//! `core_ops`: arbitrary sequences of operations on two `BuddyPool`s, checked against a model of
//! their live blocks after every step.
//!
//! Checked after every operation on a pool: its outcome, exactly (below). Checked after its
//! [`FIRST_CHECK`]th operation and then each time its operation count doubles (32, 64, 128,
//! ...), after its last operation, and before each pool is dropped or emptied (so on every
//! input):
//! - `validate()` passes;
//! - the live blocks of the model and the free blocks of `free_blocks()` tile the pool exactly
//!   (no overlap, no gap), every block aligned to its size;
//! - `usable_size` of every live block is its size; `stats()` agrees with the model and with
//!   `free_blocks()`;
//! - no block handed out (by an allocation or a `realloc`) overlaps a live block, checked on
//!   the addresses at once;
//! - every byte of every block holds the byte it was filled with, checked before it is freed
//!   or resized (and the kept prefix after a resize): a discarded page, a free-list node or tag
//!   written into a live block, a lost part of a `realloc` copy;
//! - each call returns exactly the result the buddy rules predict: an allocation fails with
//!   `OutOfMemory` if and only if no free block is large enough (the model's own answer, from
//!   its live blocks; the full check compares it with `stats().largest_free_block`); `realloc` stays in
//!   place exactly when it shrinks or its upper buddies are free; a free of a garbage pointer
//!   fails with exactly `OutOfPool`, `Misaligned`, `Interior` or `DoubleFree`, and changes nothing.

#![no_main]

use std::alloc::Layout;
use std::ptr::NonNull;

use arbitrary::{Arbitrary, Unstructured};
use balloc_core::{btok, AllocError, BuddyPool, FreeError, MIN_K, SMALLEST_K};
use balloc_fuzz::{next_tag, Block, Size};
use libfuzzer_sys::fuzz_target;

/// How many freed pointers each pool remembers, to free them again.
const FREED_KEPT: usize = 32;

/// The operation on a pool after which the first full check of its invariants runs
/// ([`Model::check`], which walks all of its metadata); the next ones run after twice as many
/// operations each time, and one more after its last operation. Every operation's own outcome is
/// checked at once. A full check at a fixed interval made a long input pay for its metadata
/// once per interval, which cost more than all of its operations; doubling costs a logarithm
/// of the input's length, and a corruption that stays still fails the last check.
const FIRST_CHECK: u32 = 32;

std::thread_local! {
    /// Pools left by earlier inputs, empty and coalesced (as new), at most [`POOLS_KEPT`]: an
    /// input starts with one of each of [`FIRST_SIZES`] from here where there is one. Making
    /// and dropping two pools per input (two mappings, and the page faults of their first use)
    /// is work no input needs; `Op::New` still makes and checks a new pool each time (see
    /// [`renew`]).
    static KEPT: std::cell::RefCell<Vec<Model>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How many pools [`KEPT`] holds at most: enough for both of [`FIRST_SIZES`] whatever sizes
/// the last input's `New` operations left.
const POOLS_KEPT: usize = 4;

/// Pool sizes every input starts with.
const FIRST_SIZES: [usize; 2] = [1 << MIN_K, 1 << (MIN_K + 1)];

#[derive(Arbitrary, Debug)]
enum PoolSize {
    /// 2^20, the smallest pool.
    Min,
    /// 2^21.
    Double,
    /// `1 + n % 2^21` bytes, which `new` rounds up to 2^20 or 2^21.
    Other(u32),
}

impl PoolSize {
    fn bytes(&self) -> usize {
        match self {
            Self::Min => 1 << MIN_K,
            Self::Double => 1 << (MIN_K + 1),
            Self::Other(n) => 1 + *n as usize % (1 << (MIN_K + 1)),
        }
    }
}

/// A pointer to free that is not (usually) a live block's start.
#[derive(Arbitrary, Debug)]
enum Garbage {
    /// The pool's start plus an offset.
    Offset(u32),
    /// `delta % size` bytes into live block `index`.
    IntoLive { index: u16, delta: u32 },
    /// A pointer freed earlier: a double free, unless that block was handed out again.
    Freed { index: u16 },
    /// `n` bytes before the pool's start.
    Before(u16),
    /// `n` bytes past the pool's last byte.
    After(u16),
    /// A live block of the other pool.
    Foreign { index: u16 },
    /// A variable on the stack.
    Stack,
}

/// One operation on one of the two pools. Drawn by [`Op`]'s `Arbitrary`, with weights.
#[derive(Debug)]
enum Op {
    /// Frees every block of the pool (it must coalesce), makes a new one, and drops or destroys
    /// one of the two (see [`renew`]).
    New {
        pool: bool,
        size: PoolSize,
        destroy: bool,
    },
    Alloc {
        pool: bool,
        size: Size,
    },
    AllocLayout {
        pool: bool,
        size: Size,
        align_shift: u8,
    },
    AllocOrder {
        pool: bool,
        k: u8,
    },
    Free {
        pool: bool,
        index: u16,
    },
    Realloc {
        pool: bool,
        index: u16,
        size: Size,
    },
    FreeGarbage {
        pool: bool,
        target: Garbage,
    },
    UsableSize {
        pool: bool,
        target: Garbage,
    },
    Trim {
        pool: bool,
    },
}

/// The kinds of [`Op`], as the first byte of each operation draws them through [`KIND`].
#[derive(Clone, Copy)]
enum Kind {
    New,
    Trim,
    Alloc,
    AllocLayout,
    AllocOrder,
    Free,
    Realloc,
    FreeGarbage,
    UsableSize,
}

/// The kind each value of an operation's first byte draws: `New` for one value of 256 and
/// `Trim` for two, the other kinds evenly for the rest. Both undo what the operations before
/// them built (`New` empties the pool; `Trim` hands its free pages back, and they fault in
/// again as blocks are filled on them), so drawn as often as the others (one operation in 9
/// each) they kept pools a handful of operations deep and cost much of each input's time. A table, not a comparison with the
/// byte, so that the fuzzer's comparison tracing does not learn the rare values and write them
/// into every input; and away from 0x00 and 0xFF, which mutations write often.
const KIND: [Kind; 256] = {
    const COMMON: [Kind; 7] = [
        Kind::Alloc,
        Kind::AllocLayout,
        Kind::AllocOrder,
        Kind::Free,
        Kind::Realloc,
        Kind::FreeGarbage,
        Kind::UsableSize,
    ];
    let mut table = [Kind::Alloc; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match i {
            0x55 => Kind::New,
            0x33 | 0xCC => Kind::Trim,
            _ => COMMON[i % COMMON.len()],
        };
        i += 1;
    }
    table
};

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let kind = KIND[usize::from(u8::arbitrary(u)?)];
        let pool = bool::arbitrary(u)?;
        Ok(match kind {
            Kind::New => Op::New {
                pool,
                size: u.arbitrary()?,
                destroy: u.arbitrary()?,
            },
            Kind::Trim => Op::Trim { pool },
            Kind::Alloc => Op::Alloc {
                pool,
                size: u.arbitrary()?,
            },
            Kind::AllocLayout => Op::AllocLayout {
                pool,
                size: u.arbitrary()?,
                align_shift: u.arbitrary()?,
            },
            Kind::AllocOrder => Op::AllocOrder {
                pool,
                k: u.arbitrary()?,
            },
            Kind::Free => Op::Free {
                pool,
                index: u.arbitrary()?,
            },
            Kind::Realloc => Op::Realloc {
                pool,
                index: u.arbitrary()?,
                size: u.arbitrary()?,
            },
            Kind::FreeGarbage => Op::FreeGarbage {
                pool,
                target: u.arbitrary()?,
            },
            Kind::UsableSize => Op::UsableSize {
                pool,
                target: u.arbitrary()?,
            },
        })
    }
}

/// The largest aligned power-of-two window (at least `2^SMALLEST_K` bytes) inside the offsets
/// `start..end`, by size; 0 when there is none. The window of the gap's own size rounded down
/// to a power of two fits unless it is misaligned, and then half of it does: two tries.
fn largest_window(start: usize, end: usize) -> usize {
    if end <= start {
        return 0;
    }
    let mut w = 1usize << (usize::BITS - 1 - (end - start).leading_zeros());
    while w >= 1 << SMALLEST_K {
        if start.next_multiple_of(w) + w <= end {
            return w;
        }
        w /= 2;
    }
    0
}

/// One pool and what the model knows about it.
struct Model {
    pool: BuddyPool,
    live: Vec<Block>,
    /// The live blocks' ranges as offsets `(start, end)`, sorted: an overlap is found by a
    /// binary search, and the gaps between them (where the free blocks are) by one pass over
    /// a slice.
    ranges: Vec<(usize, usize)>,
    /// The live blocks' bytes in all.
    live_bytes: usize,
    /// Pointers freed lately, oldest first.
    freed: Vec<NonNull<u8>>,
    tag: u8,
    /// Operations on this pool so far.
    steps: u32,
    /// The operation count at which the next full check runs.
    next_check: u32,
    /// The operation count at the last full check.
    checked_at: u32,
}

impl Model {
    fn new(size: usize) -> Self {
        let pool = BuddyPool::new(size).expect("a pool of at most 2 MiB");
        let expected = 1usize << btok(size).max(MIN_K);
        assert_eq!(pool.size(), expected, "new({size}) rounds to {expected}");
        // The free lists, in O(1); the bitmaps are read by the first full check.
        assert!(
            pool.free_blocks().eq([(pool.base(), pool.kval())]),
            "a new pool is one free block"
        );
        Self {
            pool,
            live: Vec::new(),
            ranges: Vec::new(),
            live_bytes: 0,
            freed: Vec::new(),
            tag: 0,
            steps: 0,
            next_check: FIRST_CHECK,
            checked_at: 0,
        }
    }

    /// Back to the state of a new pool of its size, keeping the pool: empty (checked by the
    /// caller's `drain`), with no history. Inputs must not depend on each other.
    fn reset(&mut self) {
        debug_assert!(self.live.is_empty() && self.ranges.is_empty());
        self.freed.clear();
        self.tag = 0;
        self.steps = 0;
        self.next_check = FIRST_CHECK;
        self.checked_at = 0;
    }

    /// Counts an operation; the full check when the count reaches the next of
    /// [`FIRST_CHECK`] · 2^i.
    fn step_done(&mut self) {
        self.steps += 1;
        if self.steps == self.next_check {
            self.next_check = self.next_check.saturating_mul(2);
            self.check();
        }
    }

    fn size(&self) -> usize {
        self.pool.size()
    }

    fn base(&self) -> usize {
        self.pool.base().as_ptr().addr()
    }

    fn remember_freed(&mut self, ptr: NonNull<u8>) {
        if self.freed.len() == FREED_KEPT {
            self.freed.remove(0);
        }
        self.freed.push(ptr);
    }

    /// Records that `[addr, addr + 2^k)` is live, after checking that it overlaps no live block.
    /// The live blocks are disjoint, so only the one that starts last before the new block's
    /// end can reach into it.
    fn add_range(&mut self, addr: usize, k: u32) {
        let start = addr - self.base();
        let end = start + (1 << k);
        let before_end = self.ranges.partition_point(|&(s, _)| s < end);
        if let Some(&(other, other_end)) = before_end.checked_sub(1).map(|i| &self.ranges[i]) {
            assert!(
                other_end <= start,
                "block at offset {start:#x}..{end:#x} overlaps live block {other:#x}..{other_end:#x}"
            );
        }
        // Nothing live starts in `start..end`, so the new range goes just before the others
        // that start at or after `end`.
        self.ranges.insert(before_end, (start, end));
        self.live_bytes += 1 << k;
    }

    fn remove_range(&mut self, addr: usize) {
        let start = addr - self.base();
        let i = self
            .ranges
            .binary_search_by_key(&start, |&(s, _)| s)
            .expect("a live block's range");
        let (_, end) = self.ranges.remove(i);
        self.live_bytes -= end - start;
    }

    /// Records a successful allocation of order `k`, or checks that the failure was the right one.
    fn alloc_result(
        &mut self,
        r: Result<NonNull<u8>, AllocError>,
        expected: Result<u32, AllocError>,
    ) {
        match (r, expected) {
            (Ok(p), Ok(k)) => {
                assert_eq!(
                    p.as_ptr().addr() % (1 << k),
                    0,
                    "block of order {k} aligned"
                );
                assert!(self.pool.contains(p.as_ptr()), "block inside the pool");
                self.add_range(p.as_ptr().addr(), k);
                self.tag = next_tag(self.tag);
                // SAFETY: `p` was just allocated to us with order k, so 2^k bytes are ours.
                let b = unsafe { Block::fill(p, k, self.tag) };
                self.live.push(b);
            }
            (r, expected) => assert_eq!(r.map(|_| ()), expected.map(|_| ()), "allocation outcome"),
        }
    }

    /// The gaps between live blocks, as offsets `start..end`, lowest first (some empty).
    fn gaps(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut gap_start = 0;
        let last = (self.size(), self.size());
        self.ranges
            .iter()
            .copied()
            .chain([last])
            .map(move |(start, end)| {
                let gap = (gap_start, start);
                gap_start = end;
                gap
            })
    }

    /// The largest free block's size (0 when none), from the model's live blocks alone: free
    /// buddies are always merged, so the free blocks are exactly the largest aligned
    /// power-of-two windows that hold no live byte, and the largest one lies in some gap
    /// between live blocks. Independent of the pool's own free lists; the full check compares
    /// it with them and with `stats()`.
    fn largest_free(&self) -> usize {
        self.gaps()
            .map(|(start, end)| largest_window(start, end))
            .max()
            .unwrap_or(0)
    }

    /// Whether a free block of `2^k` bytes or more exists (as [`Self::largest_free`], stopping
    /// at the first gap that holds one, and at once when fewer bytes than that are free).
    fn has_free(&self, k: u32) -> bool {
        let w = 1usize << k;
        if self.size() - self.live_bytes < w {
            return false;
        }
        // A window of `w` or more bytes in a gap holds an aligned one of exactly `w` bytes.
        self.gaps()
            .any(|(start, end)| start.next_multiple_of(w) + w <= end)
    }

    /// The result an allocation of order `k` must have now (from the model: see
    /// [`Self::largest_free`]).
    fn predict(&self, k: u32) -> Result<u32, AllocError> {
        if self.has_free(k) {
            Ok(k)
        } else {
            Err(AllocError::OutOfMemory { order: k })
        }
    }

    fn alloc(&mut self, size: Size) {
        let bytes = size.bytes(self.size());
        let expected = if bytes == 0 {
            Err(AllocError::ZeroSize)
        } else if btok(bytes) > self.pool.kval() {
            Err(AllocError::TooLarge { requested: bytes })
        } else {
            self.predict(btok(bytes))
        };
        let r = self.pool.alloc(bytes);
        self.alloc_result(r, expected);
    }

    fn alloc_layout(&mut self, size: Size, align_shift: u8) {
        let bytes = size.bytes(self.size());
        let align = 1usize << (align_shift % 24);
        let Ok(layout) = Layout::from_size_align(bytes, align) else {
            return;
        };
        let k = btok(bytes.max(align));
        let expected = if bytes == 0 {
            Err(AllocError::ZeroSize)
        } else if align > self.size() {
            Err(AllocError::AlignmentTooLarge { align })
        } else if k > self.pool.kval() {
            Err(AllocError::TooLarge { requested: bytes })
        } else {
            self.predict(k)
        };
        let r = self.pool.alloc_layout(layout);
        if let Ok(p) = r {
            assert_eq!(p.as_ptr().addr() % align, 0, "alloc_layout honours {align}");
        }
        self.alloc_result(r, expected);
    }

    /// Allocates a block of an order drawn from `k`: `SMALLEST_K` plus `span · (k / 256)^2`
    /// rounded down, `span` the orders above the smallest. Every order can be drawn, the small
    /// ones more often (order `SMALLEST_K` for a quarter of the values, the largest for under
    /// a tenth): a few large blocks fill a pool, after which the rest of an input's allocations
    /// fail, where small ones build the deep split trees; and every block is filled and
    /// checked byte by byte, so uniform orders (a block of 140 KiB on average in a 2 MiB pool)
    /// spent most of each input's time in `memset` and `memcmp`.
    fn alloc_order(&mut self, k: u8) {
        let span = self.pool.kval() - SMALLEST_K + 1;
        let k = SMALLEST_K + ((u32::from(k) * u32::from(k) * span) >> 16);
        let expected = self.predict(k);
        let r = self.pool.alloc_order(k);
        self.alloc_result(r, expected);
    }

    fn free_live(&mut self, i: usize) {
        let b = self.live.swap_remove(i);
        // SAFETY: `b` is still allocated to us.
        unsafe { b.check("before free") };
        self.remove_range(b.addr());
        assert_eq!(self.pool.free(b.ptr), Ok(()), "free of a live block");
        self.remember_freed(b.ptr);
    }

    fn realloc(&mut self, i: usize, size: Size) {
        let b = self.live[i];
        // SAFETY: `b` is allocated to us.
        unsafe { b.check("before realloc") };
        let bytes = size.bytes(self.size());
        let nk = btok(bytes);
        // Grows in place iff the block is the lower part of the order-nk block and nothing live
        // is in the rest of it (then the upper buddies are free, and whole, since free buddies
        // are always merged).
        let in_place = |m: &Self| {
            let end = b.addr() + (1 << nk);
            b.addr().is_multiple_of(1 << nk)
                && !m
                    .live
                    .iter()
                    .any(|o| o.addr() >= b.addr() + b.len() && o.addr() < end)
        };
        #[derive(Clone, Copy)]
        enum Want {
            Same,
            Moved,
            Fail(AllocError),
        }
        let want = if bytes == 0 {
            Want::Fail(AllocError::ZeroSize)
        } else if nk > self.pool.kval() {
            Want::Fail(AllocError::TooLarge { requested: bytes })
        } else if nk <= b.order || in_place(self) {
            Want::Same
        } else if self.has_free(nk) {
            Want::Moved
        } else {
            Want::Fail(AllocError::OutOfMemory { order: nk })
        };
        let r = self.pool.realloc(b.ptr, bytes);
        match (r, want) {
            (Ok(p), Want::Same | Want::Moved) => {
                let moved = p != b.ptr;
                assert_eq!(
                    moved,
                    matches!(want, Want::Moved),
                    "realloc from order {} to {nk}: moved {moved}",
                    b.order
                );
                assert_eq!(p.as_ptr().addr() % (1 << nk), 0, "resized block aligned");
                let kept = Block { ptr: p, ..b };
                // SAFETY: `p` is allocated to us with 2^nk bytes; the prefix is within it.
                unsafe { kept.check_prefix(1 << nk.min(b.order), "after realloc") };
                if moved {
                    self.remember_freed(b.ptr);
                }
                self.remove_range(b.addr());
                self.add_range(p.as_ptr().addr(), nk);
                self.tag = next_tag(self.tag);
                // SAFETY: as above.
                self.live[i] = unsafe { Block::fill(p, nk, self.tag) };
            }
            (Err(e), Want::Fail(w)) => {
                assert_eq!(e, w, "realloc error");
                // SAFETY: on error the block stays allocated to us, untouched.
                unsafe { b.check("after a failed realloc") };
            }
            (r, _) => panic!(
                "realloc of order {} at {:p} to {bytes} bytes gave {r:?}",
                b.order, b.ptr
            ),
        }
    }

    /// The pointer a `Garbage` names, or `None` when there is nothing to name.
    fn garbage(&self, g: &Garbage, other: &Self, stack: &u64) -> Option<NonNull<u8>> {
        let base = self.pool.base().as_ptr();
        let p = match *g {
            Garbage::Offset(off) => base.wrapping_add(off as usize % self.size()),
            Garbage::IntoLive { index, delta } => {
                let b = self.live.get(index as usize % self.live.len().max(1))?;
                b.ptr.as_ptr().wrapping_add(delta as usize % b.len())
            }
            Garbage::Freed { index } => {
                return self
                    .freed
                    .get(index as usize % self.freed.len().max(1))
                    .copied()
            }
            Garbage::Before(n) => base.wrapping_sub(1 + n as usize),
            Garbage::After(n) => base.wrapping_add(self.size() + n as usize),
            Garbage::Foreign { index } => {
                return other
                    .live
                    .get(index as usize % other.live.len().max(1))
                    .map(|b| b.ptr)
            }
            Garbage::Stack => return Some(NonNull::from(stack).cast()),
        };
        NonNull::new(p)
    }

    /// What `free(p)` must do: `Ok(i)` when `p` is live block `i`, else the exact error.
    fn expected_free(&self, p: NonNull<u8>) -> Result<usize, FreeError> {
        let addr = p.as_ptr().addr();
        let off = addr.wrapping_sub(self.base());
        if addr < self.base() || off >= self.size() {
            Err(FreeError::OutOfPool)
        } else if !off.is_multiple_of(1 << SMALLEST_K) {
            Err(FreeError::Misaligned)
        } else if let Some(i) = self.live.iter().position(|b| b.addr() == addr) {
            Ok(i)
        } else if self.live.iter().any(|b| b.contains(addr)) {
            Err(FreeError::Interior)
        } else {
            Err(FreeError::DoubleFree)
        }
    }

    fn free_garbage(&mut self, p: NonNull<u8>) {
        match self.expected_free(p) {
            Ok(i) => self.free_live(i),
            Err(e) => {
                // The free blocks, not `stats()`: the same state for this purpose (a change to
                // a live bit alone shows in the next full check), read in O(free blocks).
                let before: Vec<_> = self.pool.free_blocks().collect();
                assert_eq!(
                    self.pool.free(p),
                    Err(e),
                    "free({p:p}) at offset {:#x}",
                    p.as_ptr().addr().wrapping_sub(self.base())
                );
                assert!(
                    self.pool.free_blocks().eq(before.iter().copied()),
                    "a rejected free changes nothing"
                );
                assert_eq!(
                    self.pool.realloc(p, 1),
                    Err(AllocError::InvalidPointer(e)),
                    "realloc validates like free"
                );
            }
        }
    }

    fn usable_size(&self, p: NonNull<u8>) {
        let expected = self.expected_free(p).ok().map(|i| self.live[i].len());
        assert_eq!(self.pool.usable_size(p), expected, "usable_size({p:p})");
    }

    /// Frees every live block, checking its contents; the pool must coalesce.
    fn drain(&mut self) {
        if self.steps == 0 {
            // No operation since the last drain or since `new`: nothing to check or free.
            return;
        }
        if self.steps != self.checked_at {
            self.check();
        }
        while !self.live.is_empty() {
            self.free_live(self.live.len() - 1);
        }
        // Empty: one free block, the whole pool, and consistent metadata (the rest of the full
        // check, tiling and `stats()` against the model, ran just before the frees).
        let blocks: Vec<_> = self.pool.free_blocks().collect();
        assert_eq!(
            blocks,
            [(self.pool.base(), self.pool.kval())],
            "everything freed: one block"
        );
        if let Err(e) = self.pool.validate() {
            panic!("{e}");
        }
    }

    /// The model's invariants: the full check.
    fn check(&mut self) {
        self.checked_at = self.steps;
        if let Err(e) = self.pool.validate() {
            panic!("{e}");
        }
        let stats = self.pool.stats();
        let base = self.base();
        // Every block of the pool, live or free, as (offset, order): they must tile the pool.
        let mut blocks: Vec<(usize, u32, bool)> = self
            .live
            .iter()
            .map(|b| (b.addr() - base, b.order, true))
            .collect();
        let mut free_counts = [0usize; 64];
        let mut largest = 0;
        for (p, k) in self.pool.free_blocks() {
            free_counts[k as usize] += 1;
            largest = largest.max(1usize << k);
            blocks.push((p.as_ptr().addr() - base, k, false));
        }
        blocks.sort_unstable();
        let mut next = 0;
        for &(off, k, is_live) in &blocks {
            assert_eq!(
                off, next,
                "blocks tile the pool (live {is_live}, order {k})"
            );
            assert_eq!(off % (1 << k), 0, "block at {off:#x} aligned to 2^{k}");
            next = off + (1 << k);
        }
        assert_eq!(next, self.size(), "blocks tile the whole pool");
        assert_eq!(self.ranges.len(), self.live.len(), "a range per live block");
        for b in &self.live {
            assert_eq!(self.pool.usable_size(b.ptr), Some(b.len()));
        }
        let live_bytes: usize = self.live.iter().map(Block::len).sum();
        assert_eq!(stats.allocated_bytes, live_bytes, "allocated bytes");
        assert_eq!(self.live_bytes, live_bytes, "the model's live bytes");
        assert_eq!(stats.allocated_bytes + stats.free_bytes, self.size());
        assert_eq!(stats.cached_bytes, 0);
        assert_eq!(stats.largest_free_block, largest);
        assert_eq!(
            self.largest_free(),
            largest,
            "the model's largest free block"
        );
        assert_eq!(
            &stats.free_blocks[..],
            &free_counts[..stats.free_blocks.len()]
        );
    }
}

/// Takes an empty pool of `size` bytes kept from an earlier input, if there is one.
fn take_kept(size: usize) -> Option<Model> {
    KEPT.with(|k| {
        let mut kept = k.borrow_mut();
        let i = kept.iter().position(|m| m.size() == size)?;
        Some(kept.swap_remove(i))
    })
}

/// Keeps an emptied pool for later inputs (see [`KEPT`]).
fn keep(mut m: Model) {
    m.reset();
    KEPT.with(|k| k.borrow_mut().push(m));
}

/// `Op::New` on pool `m`: empties it, makes a new pool of the size asked for (`BuddyPool::new`
/// and its first state, checked in [`Model::new`]), and drops or destroys one pool of the two.
/// The operations after it continue on an empty pool of that size whose pages are already in
/// memory, where there is one (`m` itself, or one kept from an earlier input), and the new
/// pool is the one dropped or destroyed; else on the new pool, and `m` goes. Either way they
/// start from the same state, one free block of that size; what differs is only whether the
/// pages the next blocks are filled on must first be faulted in, which cost most of the
/// fuzzer's time (it keeps inputs with many `New`s, as each one runs code more often and hit
/// counts are features).
fn renew(m: &mut Model, size: usize, destroy: bool) {
    m.drain();
    let new = Model::new(size);
    let gone = if m.size() == new.size() {
        m.reset();
        new
    } else if let Some(warm) = take_kept(new.size()) {
        keep(std::mem::replace(m, warm));
        new
    } else {
        std::mem::replace(m, new)
    };
    if destroy {
        assert_eq!(gone.pool.destroy(), Ok(()));
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let stack = 0u64;
    let mut pools = FIRST_SIZES.map(|size| take_kept(size).unwrap_or_else(|| Model::new(size)));
    for op in &ops {
        let which = match *op {
            Op::New { pool, .. }
            | Op::Alloc { pool, .. }
            | Op::AllocLayout { pool, .. }
            | Op::AllocOrder { pool, .. }
            | Op::Free { pool, .. }
            | Op::Realloc { pool, .. }
            | Op::FreeGarbage { pool, .. }
            | Op::UsableSize { pool, .. }
            | Op::Trim { pool } => usize::from(pool),
        };
        let (a, b) = pools.split_at_mut(1);
        let (m, other) = if which == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        match op {
            Op::New { size, destroy, .. } => renew(m, size.bytes(), *destroy),
            Op::Alloc { size, .. } => m.alloc(*size),
            Op::AllocLayout {
                size, align_shift, ..
            } => m.alloc_layout(*size, *align_shift),
            Op::AllocOrder { k, .. } => m.alloc_order(*k),
            Op::Free { index, .. } if !m.live.is_empty() => {
                m.free_live(*index as usize % m.live.len())
            }
            Op::Realloc { index, size, .. } if !m.live.is_empty() => {
                m.realloc(*index as usize % m.live.len(), *size)
            }
            Op::FreeGarbage { target, .. } => {
                if let Some(p) = m.garbage(target, other, &stack) {
                    m.free_garbage(p);
                }
            }
            Op::UsableSize { target, .. } => {
                if let Some(p) = m.garbage(target, other, &stack) {
                    m.usable_size(p);
                }
            }
            Op::Trim { .. } => {
                // Free blocks rather than `stats()` (which reads all of the metadata): the full
                // check compares the two.
                let before: Vec<_> = m.pool.free_blocks().collect();
                let free_bytes: usize = before.iter().map(|&(_, k)| 1usize << k).sum();
                let released = m.pool.trim();
                assert!(released <= free_bytes, "trim releases only free memory");
                assert!(
                    m.pool.free_blocks().eq(before.iter().copied()),
                    "trim moves no block"
                );
            }
            Op::Free { .. } | Op::Realloc { .. } => {}
        }
        m.step_done();
    }
    for mut m in pools {
        m.drain();
        keep(m);
    }
    KEPT.with(|k| {
        let mut kept = k.borrow_mut();
        // The oldest pools stay: their pages are in memory already, where a pool that `New`
        // made in this input may have pages that were never touched.
        kept.truncate(POOLS_KEPT);
    });
});
