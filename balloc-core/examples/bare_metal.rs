//! A pool over memory you own, as a kernel or firmware would use it (`from_raw`, no OS calls).
//!
//! `cargo run -p balloc-core --example bare_metal`

use core::ptr::NonNull;

use balloc_core::{metadata_words, BuddyPool, FreeError};

const POOL: usize = 1 << 20;

/// The pool's memory: a static, aligned to its own size as the buddy system requires.
#[repr(C, align(1048576))]
struct Arena([u8; POOL]);

static mut ARENA: Arena = Arena([0; POOL]);
static mut METADATA: [u64; metadata_words(POOL)] = [0; metadata_words(POOL)];

fn main() {
    // SAFETY: main runs once, so these statics are used by this pool alone, for the program's life.
    let mut pool = unsafe {
        let memory = NonNull::new(core::ptr::addr_of_mut!(ARENA).cast::<u8>()).unwrap();
        let meta = NonNull::new(core::ptr::addr_of_mut!(METADATA)).unwrap();
        BuddyPool::from_raw(memory, POOL, meta).expect("a valid static region")
    };
    let page = pool.alloc(4096).expect("a page");
    println!(
        "page at {page:p}, {} bytes",
        pool.usable_size(page).unwrap()
    );
    pool.free(page).unwrap();
    assert_eq!(pool.free(page), Err(FreeError::DoubleFree));
    println!(
        "double free rejected; pool coalesced: {}",
        pool.stats().is_coalesced()
    );
}
