//! Memory given back to the OS (`trim`, the automatic purge), zero pages that a zeroed
//! allocation does not write, and resizing in place. RSS is read from the pool's own
//! `stats().resident_bytes` (`mincore` over its region) and from `/proc/self/statm`.

use std::alloc::{GlobalAlloc, Layout};
use std::time::Duration;

use allocator_api2::alloc::Allocator;
use allocator_api2::vec::Vec as ApiVec;
use balloc_concurrent::{ConcurrentPool, GlobalPool};

use crate::{assert_whole, SendPtr, POOL};

const MIB: usize = 1 << 20;

/// This process's resident set, from `/proc/self/statm` (Linux); `None` elsewhere.
fn process_rss() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Allocates `n` blocks of `size` bytes and writes every byte of them.
fn fill(pool: &ConcurrentPool, n: usize, size: usize) -> Vec<SendPtr> {
    (0..n)
        .map(|i| {
            let p = pool.alloc(size).unwrap();
            // SAFETY: a live block of at least `size` bytes.
            unsafe { p.as_ptr().write_bytes(i as u8 | 1, size) };
            SendPtr(p)
        })
        .collect()
}

/// The measurement from the report: 5,000 B blocks written and all freed; RSS stayed. Here
/// `trim` hands it back, and a second trim finds nothing.
#[cfg_attr(miri, ignore = "no madvise or mincore under Miri")]
#[test]
fn trim_hands_freed_pages_back_and_resident_bytes_fall() {
    let pool = ConcurrentPool::builder()
        .size(256 * MIB)
        .no_purge()
        .build()
        .unwrap();
    let blocks = fill(&pool, 10_000, 5_000);
    let touched = pool.stats().resident_bytes;
    assert!(
        touched >= 10_000 * 5_000,
        "written bytes are resident: {touched}"
    );
    for p in blocks {
        pool.free(p.get()).unwrap();
    }
    pool.flush_thread_cache();
    let rss_before = process_rss();
    assert!(pool.stats().resident_bytes >= touched, "free is not trim");
    let given = pool.trim();
    let after = pool.stats().resident_bytes;
    assert!(given >= 10_000 * 5_000, "handed back {given}");
    assert!(after < MIB, "resident after trim: {after}");
    if let (Some(before), Some(now)) = (rss_before, process_rss()) {
        assert!(now + given / 2 < before, "process RSS {before} -> {now}");
    }
    assert_eq!(pool.trim(), 0, "nothing left to hand back");
    assert_whole(&pool);
}

/// Trim while other threads allocate and free: no block is lost or handed out twice, and
/// writes into live blocks survive (trim only touches blocks it claimed).
#[cfg_attr(miri, ignore = "no madvise under Miri")]
#[test]
fn trim_races_allocations_without_losing_data_or_blocks() {
    let pool = ConcurrentPool::builder()
        .size(64 * MIB)
        .no_purge()
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..3u8 {
            let pool = &pool;
            s.spawn(move || {
                for round in 0..200usize {
                    let size = [300usize, 5_000, 70_000, 300_000][(round + t as usize) % 4];
                    let blocks = fill(pool, 8, size);
                    for (i, p) in blocks.iter().enumerate() {
                        // SAFETY: a live block of `size` bytes written by `fill`.
                        let bytes = unsafe { std::slice::from_raw_parts(p.get().as_ptr(), size) };
                        assert!(bytes.iter().all(|&b| b == i as u8 | 1), "trim lost data");
                    }
                    for p in blocks {
                        pool.free(p.get()).unwrap();
                    }
                }
                pool.flush_thread_cache();
            });
        }
        s.spawn(|| {
            for _ in 0..300 {
                pool.trim();
            }
        });
    });
    pool.trim();
    assert_whole(&pool);
}

/// The automatic return: with a zero delay, a burst freed, then light use (a few slow-path
/// calls) hands the memory back without any call to `trim`.
#[cfg_attr(miri, ignore = "no madvise or mincore under Miri")]
#[test]
fn resident_bytes_fall_after_a_burst_is_freed_and_the_pool_is_used_lightly() {
    let pool = ConcurrentPool::builder()
        .size(256 * MIB)
        .purge_delay(Duration::ZERO)
        .purge_threshold(MIB)
        .build()
        .unwrap();
    let burst = fill(&pool, 64, MIB);
    let peak = pool.stats().resident_bytes;
    assert!(peak >= 64 * MIB);
    for p in burst {
        pool.free(p.get()).unwrap();
    }
    // Light use: a few allocations that miss the caches (each a slow path that ticks).
    for _ in 0..64 {
        let p = pool.alloc(256 << 10).unwrap();
        pool.free(p).unwrap();
    }
    let after = pool.stats().resident_bytes;
    assert!(after < peak / 4, "resident {peak} -> {after}");
    pool.validate().unwrap();
}

/// With purging off, nothing goes back until `trim`.
#[cfg_attr(miri, ignore = "no mincore under Miri")]
#[test]
fn no_purge_keeps_freed_memory_resident_until_trim() {
    let pool = ConcurrentPool::builder()
        .size(64 * MIB)
        .no_purge()
        .build()
        .unwrap();
    for p in fill(&pool, 16, MIB) {
        pool.free(p.get()).unwrap();
    }
    for _ in 0..64 {
        let p = pool.alloc(256 << 10).unwrap();
        pool.free(p).unwrap();
    }
    assert!(pool.stats().resident_bytes >= 16 * MIB);
    assert!(pool.trim() >= 15 * MIB);
}

/// A zeroed allocation of never-touched pages writes nothing: they stay out of RSS. After the
/// memory was written and freed, the same request comes zeroed (written), and after a trim
/// it comes zeroed without writes again.
#[test]
fn alloc_zeroed_skips_pages_known_to_be_zero() {
    let (size, big) = if cfg!(miri) {
        (POOL, 256 << 10)
    } else {
        (256 * MIB, 64 * MIB)
    };
    let pool = ConcurrentPool::builder()
        .size(size)
        .no_purge()
        .build()
        .unwrap();
    let layout = Layout::from_size_align(big, 8).unwrap();
    let zeros = |p: *mut u8| {
        // SAFETY: a live block of `big` bytes.
        unsafe { std::slice::from_raw_parts(p, big) }
            .iter()
            .all(|&b| b == 0)
    };
    // SAFETY: a valid, non-zero layout; the block is freed below with it.
    let p = unsafe { GlobalAlloc::alloc_zeroed(&pool, layout) };
    assert!(!p.is_null());
    // (Under debug-fill, hand-outs read every byte to check the fill.)
    let reads_blocks = cfg!(miri) || cfg!(feature = "debug-fill");
    if !reads_blocks {
        assert!(
            pool.stats().resident_bytes < MIB,
            "untouched pages were not written"
        );
    }
    assert!(zeros(p));
    // SAFETY: a live block of `big` bytes; freed with its layout.
    unsafe {
        p.write_bytes(0xEE, big);
        GlobalAlloc::dealloc(&pool, p, layout);
    }
    // SAFETY: as above.
    let q = unsafe { GlobalAlloc::alloc_zeroed(&pool, layout) };
    assert_eq!(q, p, "the same block again");
    assert!(zeros(q), "dirty pages are written with zeros");
    // SAFETY: as above.
    unsafe { GlobalAlloc::dealloc(&pool, q, layout) };
    if !cfg!(miri) {
        assert!(pool.trim() >= big);
        let r = (&pool).allocate_zeroed(layout).unwrap();
        assert!(
            reads_blocks || pool.stats().resident_bytes < MIB,
            "trimmed pages were not written"
        );
        // (Reading maps the shared zero page, which `mincore` counts: check after.)
        assert!(zeros(r.cast::<u8>().as_ptr()));
        // SAFETY: allocated above with `layout`.
        unsafe { (&pool).deallocate(r.cast(), layout) };
    }
    // Small (cached) orders are written: still zeros after a dirty free.
    let small = Layout::from_size_align(100, 8).unwrap();
    for _ in 0..3 {
        let s = (&pool).allocate_zeroed(small).unwrap().cast::<u8>();
        // SAFETY: a live 128 B block.
        unsafe {
            assert!(std::slice::from_raw_parts(s.as_ptr(), 128)
                .iter()
                .all(|&b| b == 0));
            s.as_ptr().write_bytes(0x77, 128);
            (&pool).deallocate(s, small);
        }
    }
    pool.flush_thread_cache();
    assert_whole(&pool);
}

/// `GlobalPool::realloc` keeps the block when the new size fits it, and grows in place over
/// free buddies; `alloc_zeroed` and `trim` reach the pool.
#[test]
fn global_pool_reallocs_in_place_and_trims() {
    static POOL_G: GlobalPool = GlobalPool::new(POOL);
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: valid layouts; every block is freed with the layout it has at that moment.
    unsafe {
        let p = POOL_G.alloc_zeroed(layout);
        assert!(!p.is_null() && POOL_G.pool().unwrap().contains(p));
        p.write_bytes(7, 100);
        let q = POOL_G.realloc(p, layout, 120);
        assert_eq!(q, p, "same order: the block fits");
        let big = POOL_G.realloc(q, Layout::from_size_align(120, 8).unwrap(), 64 << 10);
        assert!(std::slice::from_raw_parts(big, 100).iter().all(|&b| b == 7));
        let small = POOL_G.realloc(big, Layout::from_size_align(64 << 10, 8).unwrap(), 50);
        assert_eq!(small, big, "a shrink never moves");
        assert!(std::slice::from_raw_parts(small, 50)
            .iter()
            .all(|&b| b == 7));
        POOL_G.dealloc(small, Layout::from_size_align(50, 8).unwrap());
    }
    let pool = POOL_G.pool().unwrap();
    pool.flush_thread_cache();
    let _ = POOL_G.trim();
    assert_whole(pool);
}

/// A Vec that doubles again and again keeps its address while the buddies above it are free
/// (the pool without caches, so its first block is at the start and nothing sits above it).
#[test]
fn a_doubling_vec_keeps_its_address_while_its_buddies_are_free() {
    let pool = ConcurrentPool::builder()
        .size(POOL)
        .cache_capacity(0)
        .build()
        .unwrap();
    {
        let mut v: ApiVec<u64, _> = ApiVec::with_capacity_in(8, &pool);
        let start = v.as_ptr();
        for i in 0..(POOL / 8 / 2) as u64 {
            v.push(i);
            assert_eq!(v.as_ptr(), start, "moved at length {}", v.len());
        }
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
        v.truncate(10);
        v.shrink_to_fit();
        assert_eq!(v.as_ptr(), start, "a shrink never moves");
        assert_eq!(pool.stats().allocated_bytes, 128);
        // Something above it now: the next growth copies.
        let blocker = pool.alloc(128).unwrap();
        v.extend(0..100);
        assert_ne!(v.as_ptr(), start);
        pool.free(blocker).unwrap();
    }
    assert_whole(&pool);
}

/// `grow_zeroed` in place: the bytes past the old size come zeroed, from the old block's tail
/// and the absorbed buddies alike, even where they were written before.
#[test]
fn grow_zeroed_in_place_zeroes_the_tail_and_the_absorbed_buddies() {
    let pool = ConcurrentPool::builder()
        .size(POOL)
        .cache_capacity(0)
        .build()
        .unwrap();
    let a = pool.alloc(4096).unwrap();
    // SAFETY: a live 4 KiB block.
    unsafe { a.as_ptr().write_bytes(0xAB, 4096) };
    pool.free(a).unwrap();
    let old = Layout::from_size_align(1000, 8).unwrap();
    let new = Layout::from_size_align(4000, 8).unwrap();
    let p = (&pool).allocate(old).unwrap().cast::<u8>();
    // SAFETY: grow within Allocator's contract; the bytes read are inside the new block.
    unsafe {
        p.as_ptr().write_bytes(1, 1000);
        let g = (&pool).grow_zeroed(p, old, new).unwrap();
        assert_eq!(g.cast::<u8>(), p, "grew in place");
        let bytes = std::slice::from_raw_parts(p.as_ptr(), 4096);
        assert!(bytes[..1000].iter().all(|&b| b == 1));
        assert!(bytes[1000..].iter().all(|&b| b == 0));
        (&pool).deallocate(p, new);
    }
    assert_whole(&pool);
}

/// Many threads grow and shrink blocks in place while others allocate and free around them
/// (racing for the same buddies): contents survive, and the pool is whole at the end.
#[test]
fn grow_and_shrink_in_place_race_allocations() {
    let pool = ConcurrentPool::builder()
        .size(if cfg!(miri) { POOL } else { 16 * MIB })
        .build()
        .unwrap();
    let rounds = if cfg!(miri) { 20 } else { 3000 };
    std::thread::scope(|s| {
        for t in 0..4usize {
            let pool = &pool;
            s.spawn(move || {
                let mut rng = crate::Rng(0x9E37_79B9 + t as u64);
                for _ in 0..rounds {
                    let old = Layout::from_size_align(64 << rng.below(8), 8).unwrap();
                    let new = Layout::from_size_align(64 << rng.below(12), 8).unwrap();
                    let p = (&pool).allocate(old).unwrap().cast::<u8>();
                    let tag = (t as u8) << 4 | 1;
                    let keep = old.size().min(new.size());
                    // SAFETY: Allocator's contract: `p` is live with `old`; grow or shrink by
                    // the sizes' order; every block is freed once with its current layout.
                    unsafe {
                        p.as_ptr().write_bytes(tag, old.size());
                        let q = if new.size() >= old.size() {
                            (&pool).grow(p, old, new)
                        } else {
                            (&pool).shrink(p, old, new)
                        }
                        .unwrap()
                        .cast::<u8>();
                        let bytes = std::slice::from_raw_parts(q.as_ptr(), keep);
                        assert!(bytes.iter().all(|&b| b == tag), "resize lost data");
                        q.as_ptr().write_bytes(tag, new.size());
                        (&pool).deallocate(q, new);
                    }
                }
                pool.flush_thread_cache();
            });
        }
    });
    assert_whole(&pool);
}

/// Trims and purges (zero delay, zero threshold: one at nearly every slow path) race grows
/// and shrinks in place: a claimed piece and a claimed buddy never overlap a live block, data
/// survives, and the pool is whole at the end.
#[cfg_attr(miri, ignore = "no madvise under Miri")]
#[test]
fn trims_and_purges_race_resizes_in_place() {
    let pool = ConcurrentPool::builder()
        .size(64 * MIB)
        .purge_delay(Duration::ZERO)
        .purge_threshold(0)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..3usize {
            let pool = &pool;
            s.spawn(move || {
                let mut rng = crate::Rng(0xC0FF_EE00 + t as u64);
                for _ in 0..2000 {
                    let old = Layout::from_size_align(4096 << rng.below(6), 8).unwrap();
                    let new = Layout::from_size_align(4096 << rng.below(8), 8).unwrap();
                    let a = &pool;
                    let p = a.allocate(old).unwrap().cast::<u8>();
                    let tag = (t as u8) << 4 | 3;
                    // SAFETY: as in `grow_and_shrink_in_place_race_allocations`.
                    unsafe {
                        p.as_ptr().write_bytes(tag, old.size());
                        let q = if new.size() >= old.size() {
                            a.grow(p, old, new)
                        } else {
                            a.shrink(p, old, new)
                        }
                        .unwrap()
                        .cast::<u8>();
                        let keep = old.size().min(new.size());
                        let bytes = std::slice::from_raw_parts(q.as_ptr(), keep);
                        assert!(bytes.iter().all(|&b| b == tag), "lost data");
                        a.deallocate(q, new);
                    }
                }
                pool.flush_thread_cache();
            });
        }
        s.spawn(|| {
            for _ in 0..200 {
                pool.trim();
            }
        });
    });
    pool.trim();
    assert_whole(&pool);
}
