//! Loom implementations: model-checked atomics and thread-locals, and side tables for what
//! native code keeps in raw memory (loom only sees atomics it created).

use core::ptr::NonNull;

use balloc_core::InitError;
use balloc_core::SMALLEST_K;

pub(crate) use loom::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
pub(crate) use loom::thread::yield_now;

/// loom's `thread_local!` for declarations written as std's with a `const { .. }` initialiser
/// (loom evaluates the initialiser on first use per model thread).
macro_rules! loom_thread_local {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr };) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init);
    };
}
pub(crate) use loom_thread_local as thread_local;

/// Under loom every preemption is explored already: no extra yields.
pub(crate) fn chaos_yield() {}

/// `len` zero-initialised loom atomic words.
#[derive(Debug)]
pub(crate) struct Words {
    words: Box<[AtomicU64]>,
}

impl Words {
    /// `len` zeroed words.
    pub(crate) fn zeroed(len: usize) -> Result<Self, InitError> {
        Ok(Self {
            words: (0..len).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The words.
    #[inline]
    pub(crate) fn get(&self) -> &[AtomicU64] {
        &self.words
    }

    /// Bytes of memory the words take.
    pub(crate) fn bytes(&self) -> usize {
        self.words.len() * 8
    }
}

/// Tag words in a side table, one per smallest block, owned by the pool.
#[derive(Debug)]
pub(crate) struct TagTable {
    side: Box<[AtomicUsize]>,
}

impl TagTable {
    /// Tag words for a pool of order `kval`.
    pub(crate) fn new(kval: u32) -> Self {
        let n = 1usize << (kval - SMALLEST_K);
        Self {
            side: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// A copyable handle to the table, valid while the table lives.
    pub(crate) fn words(&self) -> TagWords {
        TagWords {
            side: self.side.as_ptr(),
        }
    }
}

/// A copyable handle to a [`TagTable`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct TagWords {
    side: *const AtomicUsize,
}

impl TagWords {
    /// The tag word of the block at offset `off`.
    ///
    /// # Safety
    /// - as natively: `off` is a block start of the pool, and the table is alive.
    #[inline(always)]
    pub(crate) unsafe fn word<'a>(self, _block: NonNull<u8>, off: usize) -> &'a AtomicUsize {
        // SAFETY: the table has one word per smallest block and outlives every handle's use
        // (the caller's obligation); `off` is inside the pool.
        unsafe { &*self.side.add(off >> SMALLEST_K) }
    }

    /// The tag word's value, read by a thread that holds the block (a loom atomic load).
    ///
    /// # Safety
    /// - as for [`Self::word`].
    #[inline(always)]
    pub(crate) unsafe fn read_held(self, block: NonNull<u8>, off: usize) -> usize {
        // SAFETY: forwarded from the caller.
        unsafe { self.word(block, off) }.load(crate::facade::Ordering::Relaxed)
    }
}

std::thread_local! {
    /// Per OS thread: loom runs all of a model's threads on the test's own thread.
    static DEPOT_PEEK: core::cell::Cell<bool> = const { core::cell::Cell::new(true) };
}

/// Whether the depot peeks (a Relaxed load) before its magazine CAS: unless a model turned it
/// off with [`loom_depot_peek`].
#[inline(always)]
pub(crate) fn depot_peek() -> bool {
    DEPOT_PEEK.with(|p| p.get())
}

/// Loom hook: turns the depot's peek before the magazine CAS off (or back on) for the models
/// run on this OS thread. With the peek, loom compares a thread's CAS with that thread's own
/// last access to the word and never explores the CAS losing to another thread's, so a model
/// never hands a magazine across threads. Without it every claim is a CAS, which multiplies
/// the executions of the models that flush, so only the depot model turns it off.
pub fn loom_depot_peek(on: bool) {
    DEPOT_PEEK.with(|p| p.set(on));
}

std::thread_local! {
    /// Per OS thread: the depot-shard mutant a mutant model turned on, if any.
    static SHARD_MUTANT: core::cell::Cell<Option<super::ShardMutant>> =
        const { core::cell::Cell::new(None) };
}

/// Whether the depot-shard mutant `which` replaces the real step: only in a mutants build
/// (`--cfg balloc_loom_mutants`), and only once a model turned it on with
/// [`loom_shard_mutant`].
#[inline(always)]
pub(crate) fn shard_mutant(which: super::ShardMutant) -> bool {
    super::MUTANTS && SHARD_MUTANT.with(|m| m.get() == Some(which))
}

/// Loom hook: turns one depot-shard mutant on (or none) for the models run on this OS thread.
/// Unlike the other mutants, which are always on in a mutants build, each of these is on only
/// where its model asks: a drain that misses shards, say, would also break every model whose
/// threads exit, and each model must be shown to catch its own mutant.
pub fn loom_shard_mutant(which: Option<super::ShardMutant>) {
    SHARD_MUTANT.with(|m| m.set(which));
}
