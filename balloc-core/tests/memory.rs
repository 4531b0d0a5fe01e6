//! Lazy memory: a big pool costs address space, not resident memory, until used; `trim` hands
//! pages back. One test per binary run, in order, so other tests do not move the RSS.

#![cfg(all(unix, not(miri)))]

use balloc_core::BuddyPool;

/// Resident set size of this process in bytes, from /proc (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn lazy_reservation_and_trim() {
    const GIB: usize = 1 << 30;
    let before = rss();
    let mut pool = BuddyPool::new(GIB).unwrap();
    let grown = rss().saturating_sub(before);
    assert!(
        grown < GIB / 100,
        "creating a 1 GiB pool raised RSS by {grown} bytes (limit 1%)"
    );

    // Touch 64 MiB, free it, trim: the RSS falls back.
    let block = pool.alloc(64 << 20).unwrap();
    // SAFETY: a live 64 MiB block.
    unsafe { block.as_ptr().write_bytes(1, 64 << 20) };
    let touched = rss();
    assert!(
        touched >= before + (60 << 20),
        "writing 64 MiB shows in RSS"
    );
    pool.free(block).unwrap();
    let released = pool.trim();
    assert!(released >= 63 << 20, "trim released {released} bytes");
    let after = rss();
    assert!(
        after + (60 << 20) <= touched,
        "RSS {touched} -> {after} after trim"
    );
    // The trimmed memory is still usable and reads as zeros past the kept first page.
    let again = pool.alloc(64 << 20).unwrap();
    // SAFETY: a live 64 MiB block.
    let b = unsafe { again.as_ptr().add(1 << 20).read() };
    assert_eq!(b, 0);
    pool.free(again).unwrap();
    pool.validate().unwrap();
    pool.destroy().unwrap();
}
