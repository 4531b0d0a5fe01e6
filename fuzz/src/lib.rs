//! Helpers shared by the balloc fuzz targets: how raw numbers become request sizes, and how a
//! live block is filled with its own byte and checked.
//!
//! A block's contents are checked before it is freed or resized: a block that overlaps
//! another, or whose bytes the allocator wrote into (a free-list node, the `debug-fill` pattern,
//! a lost `realloc` copy), fails the check. [`Block::fill`] and [`Block::check`] cover every
//! byte.

use std::cell::RefCell;
use std::ptr::NonNull;

use arbitrary::Arbitrary;

std::thread_local! {
    /// A page of one byte value, the last tag checked, for [`Block::check_prefix`]: on the heap,
    /// because a 4 KiB array on the stack gives every check a frame that AddressSanitizer
    /// allocates apart (its fake stack).
    static PATTERN: RefCell<Vec<u8>> = RefCell::new(vec![0; 4096]);
}

/// A request size, drawn from a raw `u32` so that the fuzzer can reach every size class:
/// the low two bits pick a class, the rest is the value within it.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Size(pub u32);

impl Size {
    /// The size in bytes for a pool of `pool_size` bytes.
    ///
    /// Classes: up to 512 bytes, up to 8 KiB, up to a quarter of the pool (all including 0),
    /// and up to twice the pool or within 4 KiB of `usize::MAX` (too large).
    pub fn bytes(self, pool_size: usize) -> usize {
        let v = (self.0 >> 2) as usize;
        match self.0 & 3 {
            0 => v % 513,
            1 => v % 8193,
            2 => v % (pool_size / 4 + 1),
            _ if v & 1 == 0 => (v >> 1) % (2 * pool_size + 1),
            _ => usize::MAX - (v >> 1) % 4096,
        }
    }
}

/// The next per-block byte after `tag`: never 0 (what untouched or trimmed memory reads as) and
/// never 0xDB (balloc-core's `debug-fill` pattern), so a block the allocator overwrote shows.
pub fn next_tag(tag: u8) -> u8 {
    let mut t = tag.wrapping_add(1);
    while t == 0 || t == 0xDB {
        t = t.wrapping_add(1);
    }
    t
}

/// A block handed out to the fuzz target, and the byte all of it was filled with.
#[derive(Debug, Clone, Copy)]
pub struct Block {
    /// Its start.
    pub ptr: NonNull<u8>,
    /// Its order: the block is `2^order` bytes.
    pub order: u32,
    /// The byte every one of its bytes holds.
    pub tag: u8,
}

// SAFETY: a `Block` is a plain address plus numbers; it is dereferenced only by the thread that
// owns the block (the fuzz targets hand blocks between threads through a mutex, so only one
// thread holds it at a time).
unsafe impl Send for Block {}

impl Block {
    /// Bytes in the block.
    pub fn len(&self) -> usize {
        1 << self.order
    }

    /// Always false: a block has at least 64 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Start address.
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr().addr()
    }

    /// True when `addr` lies inside the block.
    pub fn contains(&self, addr: usize) -> bool {
        addr.wrapping_sub(self.addr()) < self.len()
    }

    /// Fills the whole block with `tag`.
    ///
    /// # Safety
    /// - `ptr` is a block of `2^order` bytes allocated to the caller, which no one else accesses.
    pub unsafe fn fill(ptr: NonNull<u8>, order: u32, tag: u8) -> Self {
        // SAFETY: the caller owns all 2^order bytes.
        unsafe { ptr.as_ptr().write_bytes(tag, 1 << order) };
        Self { ptr, order, tag }
    }

    /// Panics unless the first `len` bytes of the block hold its tag.
    ///
    /// # Safety
    /// - the block is still allocated to the caller and `len <= self.len()`.
    pub unsafe fn check_prefix(&self, len: usize, what: &str) {
        assert!(len <= self.len());
        // SAFETY: the caller owns the block's bytes, and `len` is within it.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), len) };
        // Compare a page at a time with `==` on slices, which is one `memcmp`: a byte loop here
        // would call the fuzzer's comparison hook once per byte and dominate the run time.
        let clean = PATTERN.with_borrow_mut(|pattern| {
            if pattern[0] != self.tag {
                pattern.fill(self.tag);
            }
            bytes
                .chunks(pattern.len())
                .all(|c| c == &pattern[..c.len()])
        });
        if clean {
            return;
        }
        if let Some(i) = bytes.iter().position(|&b| b != self.tag) {
            panic!(
                "{what}: byte {i} of the {}-byte block at {:p} is {:#04x}, expected its tag {:#04x}",
                self.len(),
                self.ptr,
                bytes[i],
                self.tag
            );
        }
    }

    /// Panics unless every byte of the block holds its tag.
    ///
    /// # Safety
    /// - the block is still allocated to the caller.
    pub unsafe fn check(&self, what: &str) {
        // SAFETY: the caller's guarantee, and the whole block is `len()` bytes.
        unsafe { self.check_prefix(self.len(), what) }
    }
}
