//! balloc's `ConcurrentPool`, two ways: through an explicit per-thread [`LocalCache`] (the
//! fastest path) and through `GlobalAlloc` (what a `#[global_allocator]` user gets; it keeps its
//! own thread-local cache).
//!
//! Both free with the sized, trusting `dealloc(ptr, layout)`, the path `GlobalAlloc` uses, so
//! they see exactly what the `GlobalAlloc` peers see.

use core::alloc::Layout;
use core::ptr::NonNull;

use balloc_concurrent::{ConcurrentPool, LocalCache};

use crate::alloc::{BenchAlloc, LocalAlloc};

fn new_pool(size: usize) -> ConcurrentPool {
    ConcurrentPool::new(size).expect("reserve the ConcurrentPool")
}

/// `ConcurrentPool` through one [`LocalCache`] per thread.
#[derive(Debug)]
pub struct BallocLocal(pub ConcurrentPool);

impl BallocLocal {
    /// A pool of `size` bytes (lazily reserved).
    ///
    /// # Panics
    /// When the OS refuses the reservation.
    pub fn new(size: usize) -> Self {
        Self(new_pool(size))
    }
}

impl BenchAlloc for BallocLocal {
    type Local<'a> = LocalCache<'a>;

    fn local(&self) -> LocalCache<'_> {
        self.0.local()
    }

    fn allocated_bytes(&self) -> Option<usize> {
        Some(self.0.stats().allocated_bytes)
    }
}

impl LocalAlloc for LocalCache<'_> {
    #[inline]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_layout(layout).ok()
    }

    #[inline]
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this pool with `layout` and is live.
        unsafe { LocalCache::dealloc(self, ptr, layout) }
    }
}

/// `ConcurrentPool` through its `GlobalAlloc` impl.
#[derive(Debug)]
pub struct BallocGlobal(pub ConcurrentPool);

impl BallocGlobal {
    /// A pool of `size` bytes (lazily reserved).
    ///
    /// # Panics
    /// When the OS refuses the reservation.
    pub fn new(size: usize) -> Self {
        Self(new_pool(size))
    }
}

impl BenchAlloc for BallocGlobal {
    /// `&ConcurrentPool` drives the pool through `GlobalAlloc` (the blanket impl in
    /// [`crate::alloc`]).
    type Local<'a> = &'a ConcurrentPool;

    fn local(&self) -> &ConcurrentPool {
        &self.0
    }

    fn allocated_bytes(&self) -> Option<usize> {
        Some(self.0.stats().allocated_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<A: BenchAlloc>(a: &A) {
        let mut local = a.local();
        let layout = Layout::from_size_align(100, 8).unwrap();
        let p = local.alloc(layout).expect("alloc");
        assert_eq!(a.allocated_bytes(), Some(128));
        // SAFETY: `p` came from `local.alloc(layout)` and is live.
        unsafe { local.dealloc(p, layout) };
        assert_eq!(a.allocated_bytes(), Some(0));
    }

    #[test]
    fn both_paths_round_trip() {
        round_trip(&BallocLocal::new(1 << 20));
        round_trip(&BallocGlobal::new(1 << 20));
    }
}
