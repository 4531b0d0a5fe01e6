//! Worker threads allocating from one pool through their own `LocalCache`, handing blocks to a
//! consumer thread that frees them: the cross-thread pattern of a request pipeline.
//!
//! `cargo run --release -p balloc-concurrent --example workers`

use std::sync::mpsc;
use std::time::Instant;

use balloc_concurrent::ConcurrentPool;

/// A block on its way to the consumer.
struct Msg(std::ptr::NonNull<u8>, usize);
// SAFETY: the block is owned by whoever holds the message.
unsafe impl Send for Msg {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const WORKERS: usize = 4;
    const PER_WORKER: usize = 200_000;
    let pool = ConcurrentPool::new(1 << 26)?;
    let (tx, rx) = mpsc::sync_channel::<Msg>(1024);
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..WORKERS {
            let (pool, tx) = (&pool, tx.clone());
            s.spawn(move || {
                let local = pool.local();
                for i in 0..PER_WORKER {
                    let size = 32 + (i * 37 + w * 11) % 2000;
                    let p = local.alloc(size).expect("pool large enough");
                    // SAFETY: a live block of at least `size` bytes.
                    unsafe { p.as_ptr().write_bytes(w as u8, size) };
                    tx.send(Msg(p, size)).unwrap();
                }
            });
        }
        drop(tx);
        let pool = &pool;
        s.spawn(move || {
            let local = pool.local();
            for Msg(p, size) in rx {
                // SAFETY: the producer filled `size` bytes.
                let last = unsafe { p.as_ptr().add(size - 1).read() };
                assert!((last as usize) < WORKERS);
                local.free(p).expect("a block the pool handed out");
            }
        });
    });
    let elapsed = start.elapsed();
    let n = WORKERS * PER_WORKER;
    println!(
        "{n} blocks allocated on {WORKERS} threads, freed on another: {:.1} ns per block",
        elapsed.as_nanos() as f64 / n as f64
    );
    let stats = pool.stats();
    println!(
        "after: allocated {} B, free {} B, cached {} B",
        stats.allocated_bytes, stats.free_bytes, stats.cached_bytes
    );
    assert!(stats.is_coalesced(), "every block came back and merged");
    Ok(())
}
