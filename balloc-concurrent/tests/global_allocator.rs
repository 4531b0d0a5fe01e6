//! `GlobalPool` as this test binary's `#[global_allocator]`: every allocation of the harness and
//! the tests (that the pool can serve) comes from a balloc pool, across many threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

use balloc_concurrent::GlobalPool;

#[global_allocator]
static GLOBAL: GlobalPool = GlobalPool::new(1 << 28);

#[test]
fn the_pool_serves_the_process() {
    let v: Vec<u64> = (0..1000).collect();
    let pool = GLOBAL.pool().expect("built on first allocation");
    assert!(pool.contains(v.as_ptr().cast()), "a Vec lives in the pool");
    // A request larger than the pool falls back to the system allocator instead of failing.
    let huge: Vec<u8> = vec![7; (1 << 28) + 1];
    assert!(!pool.contains(huge.as_ptr()));
    assert_eq!(huge[1 << 27], 7);
}

#[test]
fn multithreaded_work_in_the_pool() {
    const THREADS: usize = 8;
    const ITEMS: usize = if cfg!(miri) { 50 } else { 20_000 };
    let shared = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut words: HashMap<String, usize> = HashMap::new();
                let mut batch = Vec::new();
                for i in 0..ITEMS {
                    let w = format!("t{t}-w{}", i % 97);
                    *words.entry(w.clone()).or_default() += 1;
                    batch.push(w);
                    if batch.len() == 64 {
                        tx.send(std::mem::take(&mut batch)).unwrap(); // freed on another thread
                    }
                }
                tx.send(batch).unwrap();
                let total: usize = words.values().sum();
                shared.lock().unwrap().insert(t, (words.len(), total));
            })
        })
        .collect();
    drop(tx);
    let mut received = 0;
    for batch in rx {
        received += batch.len();
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(received, THREADS * ITEMS);
    let map = shared.lock().unwrap();
    for t in 0..THREADS {
        assert_eq!(map[&t], (97, ITEMS));
    }
    let stats = GLOBAL.pool().unwrap().stats();
    assert!(stats.allocated_bytes > 0);
    assert_eq!(
        stats.allocated_bytes + stats.free_bytes + stats.cached_bytes,
        stats.size
    );
}

/// A pool that is full sends allocations to the system allocator and counts them; after the
/// frees the pool serves again.
#[test]
fn a_full_pool_falls_back_and_counts_it() {
    use std::alloc::{GlobalAlloc, Layout};
    static SMALL: GlobalPool = GlobalPool::new(1 << 20);
    let layout = Layout::from_size_align(4096, 8).unwrap();
    let before = SMALL.stats();
    assert!(before.pool.is_none(), "built on first use");
    let mut in_pool = Vec::new();
    loop {
        // SAFETY: a valid non-zero layout.
        let p = unsafe { SMALL.alloc(layout) };
        assert!(!p.is_null());
        if !SMALL.pool().unwrap().contains(p) {
            // SAFETY: from `alloc` with `layout`.
            unsafe { SMALL.dealloc(p, layout) };
            break;
        }
        in_pool.push(p);
    }
    let extra: Vec<_> = (0..10)
        // SAFETY: a valid non-zero layout.
        .map(|_| unsafe { SMALL.alloc(layout) })
        .collect();
    let s = SMALL.stats();
    assert_eq!(s.fallback_allocations, 11);
    assert_eq!(s.fallback_bytes, 11 * 4096);
    assert_eq!(s.pool.unwrap().free_bytes, 0);
    for p in extra.into_iter().chain(in_pool) {
        // SAFETY: each from `alloc` with `layout`, freed once.
        unsafe { SMALL.dealloc(p, layout) };
    }
    // SAFETY: a valid non-zero layout.
    let p = unsafe { SMALL.alloc(layout) };
    assert!(SMALL.pool().unwrap().contains(p), "the pool serves again");
    // SAFETY: from `alloc` with `layout`.
    unsafe { SMALL.dealloc(p, layout) };
    assert_eq!(SMALL.stats().fallback_allocations, 11);
}
