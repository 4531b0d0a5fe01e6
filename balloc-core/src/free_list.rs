//! Knuth's `Avail` lists: one doubly linked list of free blocks per order, threaded through the
//! free blocks themselves.
//!
//! A free block of order `k` at offset `off` holds a [`FreeNode`] in its first 16 bytes (the
//! smallest block is 64 bytes). Links are offsets from the pool base, [`NIL`] for none, so a
//! node never holds a pointer and provenance always comes from the pool base.
//!
//! Invariants, for every order `k`, with `bit = 1 << k`:
//! - `nonempty & bit != 0` ⇔ list `k` is non-empty; then `heads[k]` is the offset of its first
//!   node. When the bit is clear, `heads[k]` is stale and never read;
//! - `lone & bit != 0` ⇒ list `k` is exactly the one block `heads[k]`, whose node has not been
//!   written: its bytes are stale and never read (`lone` ⊆ `nonempty`);
//! - otherwise, for consecutive nodes `a → b`: `a.next == b` and `b.prev == a`; the head's
//!   `prev` and the last node's `next` are `NIL`.
//!
//! A split leaves each upper half alone in a list that was empty, and a free of the block merges
//! them back in the reverse order, so the lone case is the common one: pushing such a block
//! stores only its head, and unlinking it touches no memory but two mask bits. The node is
//! written when a second block joins the list.
//!
//! No lengths are kept: a list's length is the number of its order's bits in the free bitmap,
//! counted when someone asks (`BuddyPool::stats`), not on every push and unlink.

use core::ptr::NonNull;

use crate::order::ORDER_COUNT;

/// Slots in `heads`: a power of two above `ORDER_COUNT`, so an order indexes it as `k & 63`
/// (one `and`, no bounds check and no clamp).
const SLOTS: usize = 64;
const _: () = assert!(ORDER_COUNT <= SLOTS && SLOTS == u64::BITS as usize);

/// "No block": the end of a list.
pub const NIL: usize = usize::MAX;

/// The links stored at the start of every free block (unless it is alone in its list).
#[repr(C)]
#[derive(Clone, Copy)]
struct FreeNode {
    next: usize,
    prev: usize,
}

/// The heads and the non-empty and lone-block masks of the per-order free lists.
#[derive(Debug, Clone)]
pub struct FreeLists {
    /// `heads[k]`: the first block of list `k`, when bit `k` of `nonempty` is set.
    heads: [usize; SLOTS],
    /// Bit `k` set ⇔ list `k` is non-empty, so the smallest usable order is one `trailing_zeros`.
    nonempty: u64,
    /// Bit `k` set ⇒ list `k` holds one block, `heads[k]`, and its node is unwritten.
    lone: u64,
}

impl FreeLists {
    /// All lists empty.
    pub const fn new() -> Self {
        Self {
            heads: [NIL; SLOTS],
            nonempty: 0,
            lone: 0,
        }
    }

    /// The smallest order `>= k` with a free block, if any. O(1).
    #[inline]
    pub fn first_nonempty_from(&self, k: u32) -> Option<u32> {
        let above = self.nonempty & (u64::MAX << k);
        if above == 0 {
            None
        } else {
            Some(above.trailing_zeros())
        }
    }

    /// Offset of the first block of list `k`, or [`NIL`].
    #[inline]
    pub fn head(&self, k: u32) -> usize {
        if self.nonempty & (1 << k) == 0 {
            NIL
        } else {
            self.heads[ord(k)]
        }
    }

    /// True when the list whose non-empty bit is `bit` (`1 << k`) is lone: one block, whose node
    /// is unwritten, so [`unlink`](Self::unlink) would only report it emptied.
    #[inline(always)]
    pub fn is_lone(&self, bit: u64) -> bool {
        self.lone & bit != 0
    }

    /// The lone lists among `lists` (a mask of orders).
    #[inline(always)]
    pub fn lone_in(&self, lists: u64) -> u64 {
        self.lone & lists
    }

    /// True when the masks agree: every lone list is non-empty.
    pub fn masks_agree(&self) -> bool {
        self.lone & !self.nonempty == 0
    }

    /// Pushes the block at `off` onto list `k`.
    ///
    /// # Safety
    /// - `base + off .. base + off + 16` is writable memory of the pool, aligned to 16, and the
    ///   block is free and in no list;
    /// - list `k` is valid (the module's invariants hold for it).
    #[inline(always)]
    pub unsafe fn push(&mut self, base: NonNull<u8>, k: u32, off: usize) {
        let bit = 1 << k;
        if self.nonempty & bit == 0 {
            self.heads[ord(k)] = off;
            self.nonempty |= bit;
            self.lone |= bit;
            return;
        }
        let head = self.heads[ord(k)];
        if self.lone & bit != 0 {
            // SAFETY: `head` is the lone block of list k: free pool memory whose node is ours to
            // write, now that it gets a neighbour.
            unsafe {
                node(base, head).write(FreeNode {
                    next: NIL,
                    prev: off,
                })
            };
            self.lone &= !bit;
        } else {
            // SAFETY: `head` is a node of list k, valid by the caller's guarantee.
            unsafe { (*node(base, head)).prev = off };
        }
        // SAFETY: the caller guarantees the block at `off` is free pool memory we may write.
        unsafe {
            node(base, off).write(FreeNode {
                next: head,
                prev: NIL,
            })
        };
        self.heads[ord(k)] = off;
    }

    /// Links the upper halves left by splitting the block at `off` from order `j` down to `k`:
    /// for each `i` in `k..j`, from `j - 1` down, the block at `off + 2^i` becomes the lone block
    /// of list `i`, and `linked(2^(j - i) * n + 1)` is called: with `n` the split block's number
    /// in a binary-heap numbering (halves of `m` are `2m` and `2m + 1`), that is the half's.
    /// Returns `2^(j - k) * n`, the number of the block of order `k` at `off` that is left.
    ///
    /// Cost per order: one store, of the head. The lists were empty, so no node is written and
    /// no old head patched, and both masks are updated once for all of them.
    ///
    /// # Safety
    /// - `k <= j < ORDER_COUNT`, and lists `k..j` are empty;
    /// - `off` is aligned to `2^j`, and `base + off .. base + off + 2^j` is pool memory in no
    ///   list and not handed out (the block of order `j` just taken), so the halves may become
    ///   free blocks.
    #[inline(always)]
    pub unsafe fn push_split(
        &mut self,
        k: u32,
        j: u32,
        off: usize,
        mut n: usize,
        mut linked: impl FnMut(usize),
    ) -> usize {
        debug_assert!(k <= j && (j as usize) < ORDER_COUNT, "orders {k}..{j}");
        let range = (1 << j) - (1 << k);
        debug_assert_eq!(
            self.nonempty & range,
            0,
            "lists {k}..{j} are empty before a split"
        );
        // Walking the heads from j - 1 down to k: one bounds check here, none per order.
        let mut half = 1usize << j;
        for head in self.heads[k as usize..j as usize].iter_mut().rev() {
            half /= 2;
            // The lower half's number: doubled at each step down, no shift by i.
            n *= 2;
            *head = off + half;
            linked(n + 1);
        }
        self.nonempty |= range;
        self.lone |= range;
        n
    }

    /// Unlinks the block at `off` from list `k`. O(1).
    ///
    /// # Safety
    /// - the block at `off` is in list `k`, and list `k` is valid.
    #[inline(always)]
    pub unsafe fn remove(&mut self, base: NonNull<u8>, k: u32, off: usize) {
        // SAFETY: the caller's guarantees are `unlink`'s.
        if unsafe { self.unlink(base, k, off) } {
            self.mark_empty(1 << k);
        }
    }

    /// Unlinks the block at `off` from list `k`, leaving the masks to the caller: returns true
    /// when list `k` is now empty (then pass `1 << k`, or several such bits OR-ed, to
    /// [`mark_empty`](Self::mark_empty) before the lists are next used). O(1); no memory is
    /// touched when the block is alone in its list.
    ///
    /// # Safety
    /// - the block at `off` is in list `k`, and list `k` is valid.
    #[inline(always)]
    pub unsafe fn unlink(&mut self, base: NonNull<u8>, k: u32, off: usize) -> bool {
        if self.lone & (1 << k) != 0 {
            debug_assert_eq!(self.heads[ord(k)], off, "a lone block heads its list");
            return true;
        }
        // SAFETY: `off` is a node of list k (caller's guarantee), not lone, so written.
        let FreeNode { next, prev } = unsafe { node(base, off).read() };
        if prev == NIL {
            debug_assert_eq!(
                self.heads[ord(k)],
                off,
                "a node without prev heads its list"
            );
            self.heads[ord(k)] = next;
        } else {
            // SAFETY: `prev` is a node of list k, since the list is well formed.
            unsafe { (*node(base, prev)).next = next };
        }
        if next != NIL {
            // SAFETY: `next` is a node of list k, since the list is well formed.
            unsafe { (*node(base, next)).prev = prev };
        }
        prev == NIL && next == NIL
    }

    /// Marks the lists that [`unlink`](Self::unlink) emptied as empty.
    #[inline(always)]
    pub fn mark_empty(&mut self, emptied: u64) {
        self.nonempty &= !emptied;
        self.lone &= !emptied;
    }

    /// Unlinks and returns the first block of list `k`, which is non-empty.
    ///
    /// # Safety
    /// - list `k` is valid and non-empty.
    #[inline(always)]
    pub unsafe fn pop_nonempty(&mut self, base: NonNull<u8>, k: u32) -> usize {
        debug_assert!(self.nonempty & (1 << k) != 0, "list {k} is empty");
        let head = self.heads[ord(k)];
        // SAFETY: head is in list k; the caller guarantees the list is valid.
        unsafe { self.remove(base, k, head) };
        head
    }

    /// The offset after `off` in list `k`, or [`NIL`].
    ///
    /// # Safety
    /// - `off` is a block of list `k`, and list `k` is valid.
    #[inline]
    pub unsafe fn next_in(&self, base: NonNull<u8>, k: u32, off: usize) -> usize {
        if self.lone & (1 << k) != 0 {
            return NIL;
        }
        // SAFETY: the caller guarantees `off` is a node of list k, not lone, so written.
        unsafe { node(base, off).read().next }
    }

    /// The offset before `off` in list `k`, or [`NIL`].
    ///
    /// # Safety
    /// - `off` is a block of list `k`, and list `k` is valid.
    #[inline]
    pub unsafe fn prev_in(&self, base: NonNull<u8>, k: u32, off: usize) -> usize {
        if self.lone & (1 << k) != 0 {
            return NIL;
        }
        // SAFETY: the caller guarantees `off` is a node of list k, not lone, so written.
        unsafe { node(base, off).read().prev }
    }
}

impl Default for FreeLists {
    fn default() -> Self {
        Self::new()
    }
}

/// `k` as an index into `heads`, masked to its 64 slots (one `and` instead of a bounds check;
/// orders come from the pool's own arithmetic and are always below `ORDER_COUNT`).
#[inline(always)]
fn ord(k: u32) -> usize {
    debug_assert!((k as usize) < ORDER_COUNT, "order {k} out of range");
    k as usize & (SLOTS - 1)
}

/// The node of the block at `off`, derived from `base` so it keeps the pool's provenance.
#[inline(always)]
fn node(base: NonNull<u8>, off: usize) -> *mut FreeNode {
    base.as_ptr().wrapping_add(off).cast::<FreeNode>()
}
