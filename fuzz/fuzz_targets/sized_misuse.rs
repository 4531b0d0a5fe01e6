//! `sized_misuse`: arbitrary sequences of allocations and *trusted, sized* frees on one
//! `ConcurrentPool` (through `LocalCache`, the pool and its thread cache, `GlobalAlloc` and
//! `Allocator`), with flushes between them, then at most one misuse: a second free of a block
//! that is still free, or the free of a pointer the pool does not own.
//!
//! Checked on every input:
//! - no block is ever handed out twice: each allocation is aligned, inside the pool, and
//!   overlaps no block the input holds (a map of held ranges);
//! - a held block's bytes keep the byte it was filled with until its free (so no allocator
//!   write lands in a held block);
//! - the misuse stops the process: it runs in a forked child, which must die by `SIGABRT` (the
//!   trusted paths' `balloc:` stop). A child that survives the misuse allocates until the pool
//!   is empty and exits with [`HANDED_OUT_TWICE`] if it was given memory it already held, or
//!   [`SURVIVED`] otherwise; either fails the input.
//! - at the end, everything freed and flushed, the pool is whole again.
//!
//! Only misuse the trusted paths promise to catch is generated: the block freed twice is one
//! the input freed and that no allocation has handed out since (in whole or in part).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::ptr::NonNull;

use allocator_api2::alloc::Allocator;
use arbitrary::Arbitrary;
use balloc_concurrent::{ConcurrentPool, LocalCache, MIN_K, SMALLEST_K};
use balloc_fuzz::{next_tag, Block, Size};
use libfuzzer_sys::fuzz_target;

/// Exit code of a child that survived its misuse and was handed a block it already held.
const HANDED_OUT_TWICE: i32 = 3;
/// Exit code of a child that survived its misuse.
const SURVIVED: i32 = 2;

/// Which sized path allocates or frees.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Via {
    Local,
    Pool,
    Global,
    Api,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc { size: Size, via: Via },
    Free { index: u16, via: Via },
    FlushLocal,
    FlushThread,
}

#[derive(Arbitrary, Debug)]
enum Misuse {
    /// A second free, through `via`, of the `index`-th block freed that is still free.
    DoubleFree { index: u16, via: Via },
    /// A block of the system allocator freed to the pool through `via`.
    Foreign { via: Via },
}

#[derive(Arbitrary, Debug)]
struct Input {
    big: bool,
    /// Cached orders `SMALLEST_K..=SMALLEST_K + cached % 11`.
    cached: u8,
    /// Blocks per cached order: `capacity % 65` (0 turns caches off).
    capacity: u8,
    ops: Vec<Op>,
    misuse: Option<Misuse>,
}

/// A block the input holds, with its layout.
#[derive(Clone, Copy, Debug)]
struct Held {
    block: Block,
    layout: Layout,
}

struct Model<'p> {
    pool: &'p ConcurrentPool,
    local: LocalCache<'p>,
    /// Held blocks by start address.
    held: BTreeMap<usize, Held>,
    /// Blocks freed and not handed out since (in whole or in part), oldest first.
    free: Vec<Held>,
    tag: u8,
}

impl Model<'_> {
    fn alloc(&mut self, layout: Layout, via: Via) -> Option<NonNull<u8>> {
        match via {
            Via::Local => self.local.alloc_layout(layout).ok(),
            Via::Pool => self.pool.alloc_layout(layout).ok(),
            // SAFETY: the layout's size is not zero (the caller's).
            Via::Global => NonNull::new(unsafe { GlobalAlloc::alloc(self.pool, layout) }),
            Via::Api => (&self.pool).allocate(layout).ok().map(NonNull::cast),
        }
    }

    /// Frees `p` (allocated with `layout`) through `via`'s trusted path.
    ///
    /// # Safety
    /// - as the trusted paths require, unless the caller is testing misuse (in a child).
    unsafe fn dealloc(&self, p: NonNull<u8>, layout: Layout, via: Via) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match via {
                Via::Local => self.local.dealloc(p, layout),
                Via::Pool => self.pool.dealloc(p, layout),
                Via::Global => GlobalAlloc::dealloc(self.pool, p.as_ptr(), layout),
                Via::Api => (&self.pool).deallocate(p, layout),
            }
        }
    }

    /// The held block that overlaps `[addr, addr + len)`, if any.
    fn overlapping(&self, addr: usize, len: usize) -> Option<&Held> {
        let before = self.held.range(..addr + len).next_back().map(|(_, h)| h);
        before.filter(|h| h.block.addr() + h.block.len() > addr)
    }

    fn allocated(&mut self, p: NonNull<u8>, layout: Layout) {
        let k = balloc_core::btok(layout.size().max(layout.align()));
        let addr = p.as_ptr().addr();
        assert_eq!(addr % (1 << k), 0, "aligned to its size 2^{k}");
        assert!(self.pool.contains(p.as_ptr()), "inside the pool");
        if let Some(h) = self.overlapping(addr, 1 << k) {
            panic!("{addr:#x} (2^{k} bytes) handed out while held: {h:?}");
        }
        self.free.retain(|f| {
            f.block.addr() + f.block.len() <= addr || addr + (1 << k) <= f.block.addr()
        });
        self.tag = next_tag(self.tag);
        // SAFETY: just allocated to us, 2^k bytes.
        let block = unsafe { Block::fill(p, k, self.tag) };
        self.held.insert(addr, Held { block, layout });
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Alloc { size, via } => {
                let bytes = size.bytes(self.pool.size());
                let Ok(layout) = Layout::from_size_align(bytes, 1) else {
                    return;
                };
                if bytes == 0 || bytes > self.pool.size() {
                    return;
                }
                if let Some(p) = self.alloc(layout, via) {
                    self.allocated(p, layout);
                }
            }
            Op::Free { index, via } if !self.held.is_empty() => {
                let addr = *self
                    .held
                    .keys()
                    .nth(index as usize % self.held.len())
                    .expect("in range");
                let h = self.held.remove(&addr).expect("held");
                // SAFETY: held by us since its allocation.
                unsafe { h.block.check("before free") };
                // SAFETY: allocated from this pool with `h.layout`, freed once.
                unsafe { self.dealloc(h.block.ptr, h.layout, via) };
                self.free.push(h);
            }
            Op::FlushLocal => self.local.flush(),
            Op::FlushThread => self.pool.flush_thread_cache(),
            Op::Free { .. } => {}
        }
    }

    /// Runs the misuse in a child, which must be stopped by it.
    fn misuse(&mut self, m: &Misuse) {
        let (p, layout, via, what) = match *m {
            Misuse::DoubleFree { index, via } => {
                let Some(f) = self.free.get(index as usize % self.free.len().max(1)) else {
                    return;
                };
                (f.block.ptr, f.layout, via, "double free")
            }
            Misuse::Foreign { via } => {
                let layout = Layout::from_size_align(64, 8).unwrap();
                // SAFETY: a non-zero size.
                let Some(p) = NonNull::new(unsafe { System.alloc(layout) }) else {
                    return;
                };
                (p, layout, via, "foreign pointer")
            }
        };
        // SAFETY: the child only calls the pool and exits; the parent only waits. The fuzz
        // target runs on one thread, so the child has every thread the pool was used by.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            // The child's `balloc:` line would fill the fuzzer's log: stderr to /dev/null. And
            // the abort must end the child as a plain SIGABRT, not run libFuzzer's crash
            // handler (which the child inherited, and which would report a crash and exit).
            // SAFETY: plain syscalls on valid arguments.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                libc::dup2(null, 2);
                libc::signal(libc::SIGABRT, libc::SIG_DFL);
            }
            // SAFETY: (the misuse under test) `p` is free, or not the pool's.
            unsafe { self.dealloc(p, layout, via) };
            let twice = self.take_everything();
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(if twice { HANDED_OUT_TWICE } else { SURVIVED }) };
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child.
            let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
            if waited == pid {
                break;
            }
            // libFuzzer's timer signal (for -timeout) interrupts the wait: wait again.
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "waitpid: {e}");
        }
        let stopped = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT;
        if !stopped {
            let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
            panic!(
                "{what} of {p:p} through {via:?} did not stop the process (exit {code:?}{})",
                if code == Some(HANDED_OUT_TWICE) {
                    ": a block was handed out twice"
                } else {
                    ""
                }
            );
        }
        if let Misuse::Foreign { .. } = m {
            // SAFETY: allocated above from `System` with `layout`; the parent never freed it.
            unsafe { System.dealloc(p.as_ptr(), layout) };
        }
    }

    /// In a child that survived a misuse: allocates 64 B blocks until the pool has none, and
    /// says whether one of them overlaps a held block or another of them.
    fn take_everything(&mut self) -> bool {
        let layout = Layout::from_size_align(1 << SMALLEST_K, 1).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        while let Ok(p) = self.local.alloc_layout(layout) {
            let addr = p.as_ptr().addr();
            if self.overlapping(addr, layout.size()).is_some() || !seen.insert(addr) {
                return true;
            }
        }
        false
    }

    /// Frees everything held and flushes: the pool must be whole.
    fn finish(mut self) {
        let held: Vec<Held> = self.held.values().copied().collect();
        for h in held {
            // SAFETY: held by us.
            unsafe { h.block.check("at the end") };
            // SAFETY: allocated from this pool with `h.layout`, freed once.
            unsafe { self.dealloc(h.block.ptr, h.layout, Via::Pool) };
        }
        self.held.clear();
        let pool = self.pool;
        drop(self);
        pool.flush_thread_cache();
        let stats = pool.stats();
        assert!(stats.is_coalesced(), "whole again: {stats:?}");
        if let Err(e) = pool.validate() {
            panic!("validate at the end: {e}");
        }
    }
}

fuzz_target!(|input: Input| {
    let size = 1usize << (MIN_K + u32::from(input.big));
    let pool = ConcurrentPool::builder()
        .size(size)
        .cached_orders(SMALLEST_K..=SMALLEST_K + u32::from(input.cached % 11))
        .cache_capacity(usize::from(input.capacity % 65))
        .build()
        .expect("a pool of at most 2 MiB");
    let mut m = Model {
        pool: &pool,
        local: pool.local(),
        held: BTreeMap::new(),
        free: Vec::new(),
        tag: 0,
    };
    for op in &input.ops {
        m.run(op);
    }
    if let Some(misuse) = &input.misuse {
        m.misuse(misuse);
    }
    m.finish();
});
