//! Allocate from a pool, look at its stats, free, and see it coalesce.
//!
//! `cargo run --release -p balloc-core --example pool_stats`

use balloc_core::{BuddyPool, Stats};

fn show(label: &str, s: &Stats) {
    println!(
        "{label:<28} allocated {:>9} B  free {:>9} B  largest free block {:>9} B",
        s.allocated_bytes, s.free_bytes, s.largest_free_block
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut pool = BuddyPool::new(16 << 20)?; // 16 MiB, reserved lazily
    println!(
        "pool of 2^{} bytes at {:p}, {} bytes of metadata",
        pool.kval(),
        pool.base(),
        pool.metadata_bytes()
    );
    show("fresh", &pool.stats());

    let sizes = [24, 100, 1000, 4096, 70_000, 1 << 20];
    let blocks: Vec<_> = sizes
        .iter()
        .map(|&s| pool.alloc(s))
        .collect::<Result<_, _>>()?;
    for (&s, &b) in sizes.iter().zip(&blocks) {
        println!(
            "  alloc({s:>7}) -> {b:p}, block of {} bytes",
            pool.usable_size(b).unwrap()
        );
    }
    show("after 6 allocations", &pool.stats());
    let stats = pool.stats();
    let orders: Vec<String> = (0..stats.free_blocks.len())
        .filter(|&k| stats.free_blocks[k] > 0)
        .map(|k| format!("2^{k}x{}", stats.free_blocks[k]))
        .collect();
    println!("  free blocks per order: {}", orders.join(" "));

    for b in blocks {
        pool.free(b)?;
    }
    show("after freeing them all", &pool.stats());
    assert!(
        pool.stats().is_coalesced(),
        "the pool is one free block again"
    );
    pool.validate()?;
    pool.destroy()?;
    Ok(())
}
