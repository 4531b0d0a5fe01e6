//! Knuth's `Avail` lists: one doubly linked list of free blocks per order, threaded through the
//! free blocks themselves.
//!
//! A free block of order `k` at offset `off` holds a [`FreeNode`] in its first 16 bytes (the
//! smallest block is 64 bytes). Links are offsets from the pool base, [`NIL`] for none, so a
//! node never holds a pointer and provenance always comes from the pool base.
//!
//! Invariants, for every order `k`:
//! - `heads[k]` is the offset of the first node of list `k`, or `NIL` when the list is empty;
//! - bit `k` of `nonempty` is set ⇔ `heads[k] != NIL`;
//! - for consecutive nodes `a → b`: `a.next == b` and `b.prev == a`; the head's `prev` is `NIL`.
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

/// The links stored at the start of every free block.
#[repr(C)]
#[derive(Clone, Copy)]
struct FreeNode {
    next: usize,
    prev: usize,
}

/// The heads and a non-empty mask of the per-order free lists.
#[derive(Debug, Clone)]
pub struct FreeLists {
    /// Slots `ORDER_COUNT..SLOTS` stay `NIL`.
    heads: [usize; SLOTS],
    /// Bit `k` set ⇔ list `k` is non-empty, so the smallest usable order is one `trailing_zeros`.
    nonempty: u64,
}

impl FreeLists {
    /// All lists empty.
    pub const fn new() -> Self {
        Self {
            heads: [NIL; SLOTS],
            nonempty: 0,
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
        self.heads[ord(k)]
    }

    /// Pushes the block at `off` onto list `k`.
    ///
    /// # Safety
    /// - `base + off .. base + off + 16` is writable memory of the pool, aligned to 16, and the
    ///   block is free and in no list;
    /// - every node in list `k` is valid, as after earlier `push` calls.
    #[inline(always)]
    pub unsafe fn push(&mut self, base: NonNull<u8>, k: u32, off: usize) {
        let head = self.heads[ord(k)];
        // SAFETY: the caller guarantees the block at `off` is free pool memory we may write.
        unsafe {
            node(base, off).write(FreeNode {
                next: head,
                prev: NIL,
            })
        };
        if head != NIL {
            // SAFETY: `head` is a node of list k, valid by the caller's guarantee.
            unsafe { (*node(base, head)).prev = off };
        }
        self.heads[ord(k)] = off;
        self.nonempty |= 1 << k;
    }

    /// Links the upper halves left by splitting the block at `off` from order `j` down to `k`:
    /// for each `i` in `k..j`, from `j - 1` down, the block at `off + 2^i` becomes the only node
    /// of list `i`, and `linked(i, (off + 2^i) >> i)` is called with its block index.
    ///
    /// Cost per order: two stores for the node, one for the head. The lists were empty, so no
    /// old head is patched, and the non-empty mask is updated once for all of them.
    ///
    /// # Safety
    /// - `k <= j < ORDER_COUNT`, and lists `k..j` are empty;
    /// - `off` is aligned to `2^j`, and `base + off .. base + off + 2^j` is writable pool memory
    ///   in no list (the block of order `j` just taken).
    #[inline(always)]
    pub unsafe fn push_split(
        &mut self,
        base: NonNull<u8>,
        k: u32,
        j: u32,
        off: usize,
        mut linked: impl FnMut(u32, usize),
    ) {
        debug_assert!(k <= j && (j as usize) < ORDER_COUNT, "orders {k}..{j}");
        debug_assert_eq!(
            self.nonempty & ((1 << j) - (1 << k)),
            0,
            "lists {k}..{j} are empty before a split"
        );
        let mut i = j;
        // The lower half's index at order i: doubled at each step down, no shift by i.
        let mut index = off >> j;
        while i > k {
            i -= 1;
            index *= 2;
            let half = off + (1 << i);
            // SAFETY: the upper half of order i lies inside the block the caller gave us, which
            // is writable pool memory in no list; it is aligned to 2^i >= 64.
            unsafe {
                node(base, half).write(FreeNode {
                    next: NIL,
                    prev: NIL,
                })
            };
            self.heads[ord(i)] = half;
            linked(i, index + 1);
        }
        self.nonempty |= (1 << j) - (1 << k);
    }

    /// Unlinks the block at `off` from list `k`. O(1).
    ///
    /// # Safety
    /// - the block at `off` is in list `k`, and every node of list `k` is valid.
    #[inline(always)]
    pub unsafe fn remove(&mut self, base: NonNull<u8>, k: u32, off: usize) {
        // SAFETY: the caller's guarantees are `unlink`'s.
        let emptied = unsafe { self.unlink(base, k, off) };
        self.mark_empty(emptied);
    }

    /// Unlinks the block at `off` from list `k`, leaving the non-empty mask to the caller: returns
    /// `1 << k` when list `k` is now empty (pass it, or several OR-ed, to
    /// [`mark_empty`](Self::mark_empty) before the mask is next read), else 0. O(1).
    ///
    /// # Safety
    /// - the block at `off` is in list `k`, and every node of list `k` is valid.
    #[inline(always)]
    pub unsafe fn unlink(&mut self, base: NonNull<u8>, k: u32, off: usize) -> u64 {
        let mut emptied = 0;
        // SAFETY: `off` is a node of list k (caller's guarantee).
        let FreeNode { next, prev } = unsafe { node(base, off).read() };
        if prev == NIL {
            debug_assert_eq!(
                self.heads[ord(k)],
                off,
                "a node without prev heads its list"
            );
            self.heads[ord(k)] = next;
            if next == NIL {
                emptied = 1 << k;
            }
        } else {
            // SAFETY: `prev` is a node of list k, since the list is well formed.
            unsafe { (*node(base, prev)).next = next };
        }
        if next != NIL {
            // SAFETY: `next` is a node of list k, since the list is well formed.
            unsafe { (*node(base, next)).prev = prev };
        }
        emptied
    }

    /// Clears the non-empty bits of the lists that [`unlink`](Self::unlink) emptied.
    #[inline(always)]
    pub fn mark_empty(&mut self, emptied: u64) {
        self.nonempty &= !emptied;
    }

    /// Unlinks and returns the first block of list `k`, if any.
    ///
    /// # Safety
    /// - every node of list `k` is valid.
    #[inline]
    pub unsafe fn pop(&mut self, base: NonNull<u8>, k: u32) -> Option<usize> {
        let head = self.heads[ord(k)];
        if head == NIL {
            return None;
        }
        // SAFETY: head is in list k; the caller guarantees the list is valid.
        unsafe { self.remove(base, k, head) };
        Some(head)
    }

    /// The offset after `off` in its list.
    ///
    /// # Safety
    /// - `off` is a node of a valid list.
    #[inline]
    pub unsafe fn next_of(base: NonNull<u8>, off: usize) -> usize {
        // SAFETY: the caller guarantees `off` is a valid node.
        unsafe { node(base, off).read().next }
    }

    /// The offset before `off` in its list.
    ///
    /// # Safety
    /// - `off` is a node of a valid list.
    #[inline]
    pub unsafe fn prev_of(base: NonNull<u8>, off: usize) -> usize {
        // SAFETY: the caller guarantees `off` is a valid node.
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
