//! Memory from the operating system: reserved lazily, released on demand.
//!
//! On Unix a [`Mapping`] is an anonymous private `mmap` with `MAP_NORESERVE`: it costs address
//! space, not resident memory, until pages are touched. Under Miri, and on other platforms, it
//! falls back to a zeroed allocation from the global allocator (not lazy there).

use core::ptr::NonNull;

use crate::error::{DestroyError, InitError};

/// A zero-filled region of memory owned by the pool, aligned to `align`.
///
/// Invariant: `ptr..ptr + len` is readable and writable, starts at a multiple of `align`, and
/// stays valid until [`Mapping::release`].
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    align: usize,
}

// SAFETY: a Mapping exclusively owns its memory; nothing about it is tied to a thread.
unsafe impl Send for Mapping {}
// SAFETY: shared references only read the pointer and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Reserves `len` zeroed bytes aligned to `align` (a power of two, at least the page size
    /// or a divisor of it).
    ///
    /// # Errors
    /// [`InitError::TooLarge`] when `len + align` overflows, [`InitError::Os`] when the OS refuses.
    pub fn reserve(len: usize, align: usize) -> Result<Self, InitError> {
        debug_assert!(align.is_power_of_two(), "alignment must be a power of two");
        debug_assert!(len > 0, "a mapping holds at least one byte");
        let ptr = imp::reserve(len, align)?;
        Ok(Self { ptr, len, align })
    }

    /// Start of the region.
    #[inline]
    pub fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length of the region in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the region is empty (never, for a reserved mapping).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tells the OS that the bytes `offset..offset + len` (page aligned) will not be read before
    /// being written again; their pages may be returned and read back as zeros. Returns the bytes
    /// handed back (0 where the platform cannot).
    pub fn discard(&self, offset: usize, len: usize) -> usize {
        debug_assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        imp::discard(self.ptr, offset, len)
    }

    /// Bytes of the region backed by physical pages now, as the OS reports it; `None` where
    /// the platform cannot tell (then the caller must assume all of it). O(len / page size),
    /// with no allocation.
    pub fn resident(&self) -> Option<usize> {
        imp::resident(self.ptr, self.len)
    }

    /// Returns the region to the OS.
    ///
    /// # Errors
    /// [`DestroyError::Os`] when the OS refuses; the region is then leaked, never reused.
    pub fn release(self) -> Result<(), DestroyError> {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used again, and ptr/len/align are what `reserve` returned.
        unsafe { imp::release(this.ptr, this.len, this.align) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: drop runs once; ptr/len/align are what `reserve` returned.
        let _ = unsafe { imp::release(self.ptr, self.len, self.align) };
    }
}

/// The OS page size.
pub fn page_size() -> usize {
    imp::page_size()
}

#[cfg(all(unix, not(miri)))]
mod imp {
    use core::ptr::{self, NonNull};

    use crate::error::{DestroyError, InitError};

    fn errno() -> i32 {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    pub fn page_size() -> usize {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            size as usize
        } else {
            4096
        }
    }

    pub fn reserve(len: usize, align: usize) -> Result<NonNull<u8>, InitError> {
        let page = page_size();
        let align = align.max(page);
        // Over-reserve by `align` so an aligned start exists, then unmap the slack around it.
        let padded = len
            .checked_next_multiple_of(page)
            .and_then(|l| l.checked_add(align))
            .ok_or(InitError::TooLarge { requested: len })?;
        // SAFETY: an anonymous private mapping with a null hint has no preconditions.
        let raw = unsafe {
            libc::mmap(
                ptr::null_mut(),
                padded,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(InitError::Os { code: errno() });
        }
        let raw = raw.cast::<u8>();
        let head = raw.addr().next_multiple_of(align) - raw.addr();
        let body = len.next_multiple_of(page);
        let tail = padded - head - body;
        let start = raw.wrapping_add(head);
        // SAFETY: both ranges lie inside the mapping just made and are page aligned (mmap returns
        // page-aligned memory and head, body are page multiples). Failure only leaks slack.
        unsafe {
            if head > 0 {
                libc::munmap(raw.cast(), head);
            }
            if tail > 0 {
                libc::munmap(start.wrapping_add(body).cast(), tail);
            }
        }
        NonNull::new(start).ok_or(InitError::Os { code: 0 })
    }

    pub fn discard(base: NonNull<u8>, offset: usize, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let at = base.as_ptr().wrapping_add(offset);
        // SAFETY: the range lies in the mapping (checked by the caller) and the caller promises it
        // holds no data anyone will read before writing; MADV_DONTNEED on private anonymous memory
        // makes later reads return zeros.
        let rc = unsafe { libc::madvise(at.cast(), len, libc::MADV_DONTNEED) };
        if rc == 0 {
            len
        } else {
            0
        }
    }

    pub fn resident(base: NonNull<u8>, len: usize) -> Option<usize> {
        // One `mincore` call per chunk of pages (4 MiB of 4 KiB pages), into a buffer on the
        // stack (1 KiB: allocating could re-enter a pool that is the global allocator).
        const CHUNK_PAGES: usize = 1024;
        let page = page_size();
        let total = len.div_ceil(page);
        let mut vec = [0u8; CHUNK_PAGES];
        let mut resident = 0;
        let mut done = 0;
        while done < total {
            let n = (total - done).min(CHUNK_PAGES);
            let at = base.as_ptr().wrapping_add(done * page);
            // SAFETY: `at .. at + n pages` lies inside the mapping (a whole number of pages
            // from its page-aligned start); `vec` has room for `n` entries. mincore only reads
            // the page tables.
            let rc = unsafe { libc::mincore(at.cast(), n * page, vec.as_mut_ptr().cast()) };
            if rc != 0 {
                return None;
            }
            resident += resident_pages(&vec[..n]) * page;
            done += n;
        }
        Some(resident.min(len))
    }

    /// Pages marked resident in a `mincore` vector (bit 0 of each byte), eight bytes per step.
    fn resident_pages(vec: &[u8]) -> usize {
        const LOW_BITS: u64 = 0x0101_0101_0101_0101;
        let words = vec.chunks_exact(8);
        let rest = words.remainder().iter().filter(|&&b| b & 1 != 0).count();
        let mut eight = [0u8; 8];
        words
            .map(|c| {
                eight.copy_from_slice(c);
                (u64::from_ne_bytes(eight) & LOW_BITS).count_ones() as usize
            })
            .sum::<usize>()
            + rest
    }

    /// # Safety
    /// - `ptr`, `len`, `align` are what one `reserve` call returned, and the region is not used
    ///   after this call.
    pub unsafe fn release(ptr: NonNull<u8>, len: usize, _align: usize) -> Result<(), DestroyError> {
        let body = len.next_multiple_of(page_size());
        // SAFETY: the caller guarantees this is a live mapping of `body` bytes that nobody uses again.
        let rc = unsafe { libc::munmap(ptr.as_ptr().cast(), body) };
        if rc == 0 {
            Ok(())
        } else {
            Err(DestroyError::Os { code: errno() })
        }
    }
}

#[cfg(any(not(unix), miri))]
mod imp {
    extern crate alloc;

    use alloc::alloc::{alloc_zeroed, dealloc, Layout};
    use core::ptr::NonNull;

    use crate::error::{DestroyError, InitError};

    pub fn page_size() -> usize {
        4096
    }

    pub fn reserve(len: usize, align: usize) -> Result<NonNull<u8>, InitError> {
        let layout = Layout::from_size_align(len, align)
            .map_err(|_| InitError::TooLarge { requested: len })?;
        // SAFETY: len > 0 (checked by Mapping::reserve's contract).
        let ptr = unsafe { alloc_zeroed(layout) };
        NonNull::new(ptr).ok_or(InitError::Os { code: 0 })
    }

    /// Nothing to hand back: this memory comes from the global allocator (and Miri has no
    /// `madvise`), so its pages stay as they are and count as not handed back.
    pub fn discard(_base: NonNull<u8>, _offset: usize, _len: usize) -> usize {
        0
    }

    /// Unknown here (no `mincore`).
    pub fn resident(_base: NonNull<u8>, _len: usize) -> Option<usize> {
        None
    }

    /// # Safety
    /// - `ptr`, `len`, `align` are what one `reserve` call returned, and the region is not used
    ///   after this call.
    pub unsafe fn release(ptr: NonNull<u8>, len: usize, align: usize) -> Result<(), DestroyError> {
        // SAFETY: reserve made this allocation with exactly this layout, which was valid then.
        unsafe { dealloc(ptr.as_ptr(), Layout::from_size_align_unchecked(len, align)) };
        Ok(())
    }
}
