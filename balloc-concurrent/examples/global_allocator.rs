//! The whole program allocates from a balloc pool: `GlobalPool` as `#[global_allocator]`.
//!
//! `cargo run --release -p balloc-concurrent --example global_allocator`

use std::collections::HashMap;

use balloc_concurrent::GlobalPool;

#[global_allocator]
static POOL: GlobalPool = GlobalPool::new(1 << 30);

fn main() {
    let handles: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut counts: HashMap<String, usize> = HashMap::new();
                for i in 0..100_000 {
                    *counts
                        .entry(format!("key-{}", (i * 7 + t) % 1000))
                        .or_default() += 1;
                }
                counts.len()
            })
        })
        .collect();
    let keys: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let pool = POOL.pool().expect("built on first allocation");
    let s = pool.stats();
    println!(
        "{keys} keys counted on 4 threads; pool: {} B allocated, {} B cached, {} B free",
        s.allocated_bytes, s.cached_bytes, s.free_bytes
    );
}
