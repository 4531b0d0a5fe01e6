//! Typed errors. Every error leaves the pool exactly as it was.

use core::fmt;

/// Why a pool could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitError {
    /// The requested size is above `2^MAX_K` or does not fit in this platform's `usize`.
    TooLarge {
        /// The size asked for.
        requested: usize,
    },
    /// `from_raw`: the size is below `2^MIN_K`.
    TooSmall {
        /// The size given.
        size: usize,
    },
    /// `from_raw`: the size is not a power of two.
    NotPowerOfTwo {
        /// The size given.
        size: usize,
    },
    /// `from_raw`: the memory does not start at a multiple of its own size.
    Misaligned,
    /// `from_raw`: the metadata buffer is shorter than [`crate::metadata_words`] says.
    MetadataTooSmall {
        /// Words needed.
        needed: usize,
        /// Words given.
        given: usize,
    },
    /// The operating system refused the reservation (out of address space or memory).
    Os {
        /// The OS error code (`errno`), 0 where there is none.
        code: i32,
    },
}

/// Why an allocation failed. The pool is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllocError {
    /// A request for zero bytes.
    ZeroSize,
    /// The request (size, or size and alignment together) is larger than the whole pool.
    TooLarge {
        /// The size asked for.
        requested: usize,
    },
    /// The alignment asked for is above the pool size.
    AlignmentTooLarge {
        /// The alignment asked for.
        align: usize,
    },
    /// No free block of the needed order: free some memory and try again.
    OutOfMemory {
        /// The order that could not be served.
        order: u32,
    },
    /// `realloc` was given a pointer that is not an allocated block of this pool.
    InvalidPointer(FreeError),
}

/// Why a free was rejected. The pool is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreeError {
    /// The pointer is not inside this pool.
    OutOfPool,
    /// The pointer is inside the pool but not on a smallest-block boundary, so it is no block's start.
    Misaligned,
    /// The pointer is inside an allocated block but is not its start.
    Interior,
    /// The block is not allocated: it was already freed (a double free) or never handed out.
    DoubleFree,
}

/// Why destroying a pool failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DestroyError {
    /// The operating system refused to release the memory.
    Os {
        /// The OS error code (`errno`).
        code: i32,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooLarge { requested } => {
                write!(f, "pool size {requested} is above 2^{}", crate::MAX_K)
            }
            Self::TooSmall { size } => write!(f, "pool size {size} is below 2^{}", crate::MIN_K),
            Self::NotPowerOfTwo { size } => write!(f, "pool size {size} is not a power of two"),
            Self::Misaligned => f.write_str("pool memory is not aligned to its size"),
            Self::MetadataTooSmall { needed, given } => {
                write!(f, "metadata buffer has {given} words, {needed} needed")
            }
            Self::Os { code } => write!(f, "the OS refused to reserve the pool (errno {code})"),
        }
    }
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroSize => f.write_str("zero-size allocation"),
            Self::TooLarge { requested } => {
                write!(f, "request of {requested} bytes exceeds the pool")
            }
            Self::AlignmentTooLarge { align } => write!(f, "alignment {align} exceeds the pool"),
            Self::OutOfMemory { order } => {
                write!(f, "out of memory for a block of 2^{order} bytes")
            }
            Self::InvalidPointer(e) => write!(f, "invalid pointer: {e}"),
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::OutOfPool => "pointer is outside the pool",
            Self::Misaligned => "pointer is not on a block boundary",
            Self::Interior => "pointer is inside an allocated block, not at its start",
            Self::DoubleFree => "block is not allocated (double free)",
        })
    }
}

impl fmt::Display for DestroyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Os { code } => write!(f, "the OS refused to release the pool (errno {code})"),
        }
    }
}

impl core::error::Error for InitError {}
impl core::error::Error for AllocError {}
impl core::error::Error for FreeError {}
impl core::error::Error for DestroyError {}
