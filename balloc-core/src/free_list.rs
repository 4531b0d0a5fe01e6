//! Knuth's `Avail` lists: one doubly linked list of free blocks per order, threaded through the
//! free blocks themselves.
//!
//! A free block of order `k` at offset `off` holds a [`FreeNode`] in its first 16 bytes (the
//! smallest block is 64 bytes). Links are offsets from the pool base, [`NIL`] for none, so a
//! node never holds a pointer and provenance always comes from the pool base.
//!
//! Invariants, for every order `k`:
//! - `heads[k]` is the offset of the first node of list `k`, or `NIL` when the list is empty;
//! - `counts[k]` is the list's length; bit `k` of `nonempty` is set ⇔ `counts[k] > 0`;
//! - for consecutive nodes `a → b`: `a.next == b` and `b.prev == a`; the head's `prev` is `NIL`.

use core::ptr::NonNull;

use crate::order::ORDER_COUNT;

/// "No block": the end of a list.
pub const NIL: usize = usize::MAX;

/// The links stored at the start of every free block.
#[repr(C)]
#[derive(Clone, Copy)]
struct FreeNode {
    next: usize,
    prev: usize,
}

/// The heads, lengths and a non-empty mask of the per-order free lists.
#[derive(Debug, Clone)]
pub struct FreeLists {
    heads: [usize; ORDER_COUNT],
    counts: [usize; ORDER_COUNT],
    /// Bit `k` set ⇔ list `k` is non-empty, so the smallest usable order is one `trailing_zeros`.
    nonempty: u64,
}

impl FreeLists {
    /// All lists empty.
    pub const fn new() -> Self {
        Self {
            heads: [NIL; ORDER_COUNT],
            counts: [0; ORDER_COUNT],
            nonempty: 0,
        }
    }

    /// Number of free blocks of order `k`.
    #[inline]
    pub fn count(&self, k: u32) -> usize {
        self.counts[ord(k)]
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
        self.counts[ord(k)] += 1;
        self.nonempty |= 1 << k;
    }

    /// Unlinks the block at `off` from list `k`. O(1).
    ///
    /// # Safety
    /// - the block at `off` is in list `k`, and every node of list `k` is valid.
    #[inline(always)]
    pub unsafe fn remove(&mut self, base: NonNull<u8>, k: u32, off: usize) {
        // SAFETY: `off` is a node of list k (caller's guarantee).
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
        self.counts[ord(k)] -= 1;
        if self.counts[ord(k)] == 0 {
            self.nonempty &= !(1 << k);
        }
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

/// `k` as an index into the per-order arrays, clamped (one cmov instead of a bounds check;
/// orders come from the pool's own arithmetic and are always in range).
#[inline(always)]
fn ord(k: u32) -> usize {
    debug_assert!((k as usize) < ORDER_COUNT, "order {k} out of range");
    (k as usize).min(ORDER_COUNT - 1)
}

/// The node of the block at `off`, derived from `base` so it keeps the pool's provenance.
#[inline]
fn node(base: NonNull<u8>, off: usize) -> *mut FreeNode {
    base.as_ptr().wrapping_add(off).cast::<FreeNode>()
}
