//! Counting atomics (`--cfg balloc_contention`): std's atomics, each write recorded in
//! [`crate::contention`] against the cache line of the word it wrote.
//!
//! - every read-modify-write (`fetch_*`, `swap`, `compare_exchange*`) records one RMW, and a
//!   `compare_exchange*` that fails records a failed CAS as well (a failed `lock cmpxchg` still
//!   takes its line exclusive, so it is a write to the line all the same);
//! - every `store` records a store;
//! - loads record nothing.
//!
//! Each type is `#[repr(transparent)]` over the std atomic it wraps, so it has that atomic's
//! size, alignment and bit validity: `Words::get` views a mapping of `u64`s as these.
//! Only the operations the crate uses are here; a new one is added where the compiler asks.

use core::fmt;
use core::sync::atomic::Ordering;

use crate::contention;

/// Address of `v`, the key of its cache line.
#[inline(always)]
fn addr<T>(v: &T) -> usize {
    core::ptr::from_ref(v).addr()
}

/// Records a `compare_exchange*` (an RMW, and a failed CAS when it failed) and passes its
/// result on.
#[inline(always)]
fn cas<T>(at: usize, r: Result<T, T>) -> Result<T, T> {
    contention::record_rmw(at);
    if r.is_err() {
        contention::record_failed_cas();
    }
    r
}

/// One counted read-modify-write `fetch_*`/`swap` method of an integer atomic.
macro_rules! counted_rmw {
    ($op:ident, $int:ty) => {
        #[inline(always)]
        pub(crate) fn $op(&self, v: $int, order: Ordering) -> $int {
            contention::record_rmw(addr(self));
            self.0.$op(v, order)
        }
    };
}

/// An integer atomic: `new`, `load`, `store`, both `compare_exchange`s, and the listed
/// read-modify-writes (those the crate uses on it).
macro_rules! counted_int {
    ($(#[$attr:meta])* $name:ident, $std:ty, $int:ty, [$($op:ident),*]) => {
        $(#[$attr])*
        #[repr(transparent)]
        pub(crate) struct $name($std);

        impl $name {
            #[inline(always)]
            pub(crate) const fn new(v: $int) -> Self {
                Self(<$std>::new(v))
            }

            #[inline(always)]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }

            #[inline(always)]
            pub(crate) fn store(&self, v: $int, order: Ordering) {
                contention::record_store(addr(self));
                self.0.store(v, order)
            }

            $(counted_rmw!($op, $int);)*

            #[inline(always)]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                cas(addr(self), self.0.compare_exchange(current, new, success, failure))
            }

            #[inline(always)]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                cas(addr(self), self.0.compare_exchange_weak(current, new, success, failure))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

counted_int!(
    /// `AtomicU64`, counted.
    AtomicU64,
    core::sync::atomic::AtomicU64,
    u64,
    [fetch_add, fetch_sub, fetch_and, fetch_or]
);
counted_int!(
    /// `AtomicUsize`, counted.
    AtomicUsize,
    core::sync::atomic::AtomicUsize,
    usize,
    [fetch_add, fetch_sub]
);

/// `AtomicPtr<T>`, counted.
#[repr(transparent)]
pub(crate) struct AtomicPtr<T>(core::sync::atomic::AtomicPtr<T>);

impl<T> AtomicPtr<T> {
    #[inline(always)]
    pub(crate) const fn new(p: *mut T) -> Self {
        Self(core::sync::atomic::AtomicPtr::new(p))
    }

    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> *mut T {
        self.0.load(order)
    }

    #[inline(always)]
    pub(crate) fn store(&self, p: *mut T, order: Ordering) {
        contention::record_store(addr(self));
        self.0.store(p, order)
    }

    #[inline(always)]
    pub(crate) fn swap(&self, p: *mut T, order: Ordering) -> *mut T {
        contention::record_rmw(addr(self));
        self.0.swap(p, order)
    }

    #[inline(always)]
    pub(crate) fn compare_exchange_weak(
        &self,
        current: *mut T,
        new: *mut T,
        success: Ordering,
        failure: Ordering,
    ) -> Result<*mut T, *mut T> {
        cas(
            addr(self),
            self.0.compare_exchange_weak(current, new, success, failure),
        )
    }
}

impl<T> fmt::Debug for AtomicPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
