//! Stops for misuse found on paths that cannot return an error: the trusted, sized frees
//! (`GlobalAlloc::dealloc`, `Allocator::deallocate`, `ConcurrentPool::dealloc`,
//! `LocalCache::dealloc`). Going on would hand one block to two owners (a double free) or
//! hand out memory the pool does not own (a foreign pointer), so the process stops, as glibc
//! stops on "double free detected", with a message that starts with `balloc:` and names the
//! fault. The pool is not touched before the stop.

use std::io::Write;

/// A misuse of a trusted free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The block is already free: cached (its tag is in its second word) or in the bitmaps.
    DoubleFree,
    /// The pointer is not inside the pool's region.
    Foreign,
}

/// Writes the fault's message to stderr and aborts. Cold and out of line, so the checks on
/// the fast paths cost a compare and a branch each.
#[cold]
#[inline(never)]
pub(crate) fn stop(fault: Fault, ptr: *const u8) -> ! {
    let what = match fault {
        Fault::DoubleFree => "double free detected: the block is already free",
        Fault::Foreign => "dealloc of a pointer that is not in this pool",
    };
    // No allocation here: this may run inside the global allocator. stderr is unbuffered and
    // formatting integers needs no heap.
    let _ = writeln!(std::io::stderr(), "balloc: {what} ({ptr:p})");
    std::process::abort()
}
