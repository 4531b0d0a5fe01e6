//! Model-based random test: long random sequences of alloc / alloc_layout / free / realloc /
//! garbage frees, checked against a model of the live blocks after every step.
//!
//! Checked: no two live blocks overlap; every block is inside the pool and aligned to its size;
//! contents written survive until freed; an allocation fails only when no free block is large
//! enough (the buddy system's exact rule); `stats()` and `validate()` agree with the model.

use std::alloc::Layout;
use std::ptr::NonNull;

use balloc_core::{btok, AllocError, BuddyPool, FreeError};
use proptest::prelude::*;

use crate::POOL;

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize),
    AllocLayout(usize, u32),
    Free(usize),
    Realloc(usize, usize),
    FreeGarbage(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Sizes skewed small, as real workloads are, with some up to a quarter of the pool.
    let size = prop_oneof![4 => 1usize..=512, 2 => 1usize..=8192, 1 => 1usize..=POOL / 4];
    prop_oneof![
        4 => size.clone().prop_map(Op::Alloc),
        2 => (size.clone(), 0u32..=14).prop_map(|(s, a)| Op::AllocLayout(s, a)),
        4 => any::<usize>().prop_map(Op::Free),
        2 => (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
        1 => (0usize..POOL).prop_map(Op::FreeGarbage),
    ]
}

/// A live block: where, how big, and the byte its first `len` bytes were filled with.
struct Live {
    ptr: NonNull<u8>,
    block: usize,
    len: usize,
    tag: u8,
}

struct Model {
    pool: BuddyPool,
    live: Vec<Live>,
    next_tag: u8,
}

impl Model {
    fn write(&mut self, ptr: NonNull<u8>, len: usize) -> u8 {
        self.next_tag = self.next_tag.wrapping_add(1);
        // SAFETY: `ptr` is a live block of at least `len` bytes.
        unsafe { ptr.as_ptr().write_bytes(self.next_tag, len) };
        self.next_tag
    }

    fn check_contents(l: &Live) {
        // Check the first and last 64 bytes of what was written: enough to catch overlap and
        // lost copies without making the test quadratic.
        let head = l.len.min(64);
        // SAFETY: `l` is live with at least `len` bytes written.
        let bytes = unsafe { std::slice::from_raw_parts(l.ptr.as_ptr(), l.len) };
        assert!(
            bytes[..head].iter().all(|&b| b == l.tag),
            "block {:p} head overwritten",
            l.ptr
        );
        assert!(
            bytes[l.len - head..].iter().all(|&b| b == l.tag),
            "block {:p} tail overwritten",
            l.ptr
        );
    }

    fn alloc_outcome(
        &mut self,
        r: Result<NonNull<u8>, AllocError>,
        order: u32,
        len: usize,
        largest: usize,
    ) {
        match r {
            Ok(p) => {
                let block = 1usize << order;
                assert!(
                    largest >= block,
                    "allocated {block} with largest free block {largest}"
                );
                let tag = self.write(p, len);
                self.live.push(Live {
                    ptr: p,
                    block,
                    len,
                    tag,
                });
            }
            Err(AllocError::OutOfMemory { order: o }) => {
                assert_eq!(o, order);
                assert!(
                    largest < 1 << order,
                    "out of memory with a free block of {largest}"
                );
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn step(&mut self, op: Op) {
        let largest = self.pool.stats().largest_free_block;
        match op {
            Op::Alloc(size) => {
                let r = self.pool.alloc(size);
                self.alloc_outcome(r, btok(size), size, largest);
            }
            Op::AllocLayout(size, align_shift) => {
                let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                let r = self.pool.alloc_layout(layout);
                if let Ok(p) = r {
                    assert_eq!(p.as_ptr().addr() % layout.align(), 0);
                }
                self.alloc_outcome(r, btok(size.max(layout.align())), size, largest);
            }
            Op::Free(i) if !self.live.is_empty() => {
                let l = self.live.swap_remove(i % self.live.len());
                Self::check_contents(&l);
                self.pool.free(l.ptr).unwrap();
                assert_eq!(self.pool.free(l.ptr), Err(FreeError::DoubleFree));
            }
            Op::Realloc(i, size) if !self.live.is_empty() => {
                let i = i % self.live.len();
                Self::check_contents(&self.live[i]);
                let old_block = self.live[i].block;
                match self.pool.realloc(self.live[i].ptr, size) {
                    Ok(p) => {
                        let kept = self.live[i].len.min(size);
                        let l = &mut self.live[i];
                        l.ptr = p;
                        l.block = 1 << btok(size);
                        l.len = kept;
                        Self::check_contents(&self.live[i]);
                        let tag = self.write(p, size);
                        self.live[i].len = size;
                        self.live[i].tag = tag;
                    }
                    Err(AllocError::OutOfMemory { .. }) => {
                        assert!(
                            btok(size) > old_block.trailing_zeros(),
                            "shrinking never fails"
                        );
                        Self::check_contents(&self.live[i]);
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            Op::FreeGarbage(off) => {
                let p = NonNull::new(self.pool.base().as_ptr().wrapping_add(off)).unwrap();
                if self.live.iter().any(|l| l.ptr == p) {
                    return;
                }
                let inside = self.live.iter().any(|l| {
                    let a = l.ptr.as_ptr().addr();
                    (a..a + l.block).contains(&p.as_ptr().addr())
                });
                let expected = if off % 64 != 0 {
                    FreeError::Misaligned
                } else if inside {
                    FreeError::Interior
                } else {
                    FreeError::DoubleFree
                };
                assert_eq!(self.pool.free(p), Err(expected), "offset {off}");
            }
            Op::Free(_) | Op::Realloc(..) => {}
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        if let Err(e) = self.pool.validate() {
            panic!("{e}");
        }
        let base = self.pool.base().as_ptr().addr();
        let mut ranges: Vec<(usize, usize)> = self
            .live
            .iter()
            .map(|l| {
                let a = l.ptr.as_ptr().addr();
                assert_eq!(a % l.block, 0, "block aligned to its size");
                assert!(
                    a >= base && a + l.block <= base + POOL,
                    "block inside the pool"
                );
                assert_eq!(self.pool.usable_size(l.ptr), Some(l.block));
                (a, a + l.block)
            })
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            assert!(w[0].1 <= w[1].0, "live blocks overlap: {w:x?}");
        }
        let stats = self.pool.stats();
        let live_bytes: usize = self.live.iter().map(|l| l.block).sum();
        assert_eq!(stats.allocated_bytes, live_bytes);
        assert_eq!(stats.allocated_bytes + stats.free_bytes, POOL);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_match_the_model(ops in prop::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 400 })) {
        let mut model = Model { pool: BuddyPool::new(POOL).unwrap(), live: Vec::new(), next_tag: 0 };
        for op in ops {
            model.step(op);
        }
        for l in std::mem::take(&mut model.live) {
            Model::check_contents(&l);
            model.pool.free(l.ptr).unwrap();
        }
        prop_assert!(model.pool.stats().is_coalesced());
        model.pool.validate().unwrap();
    }
}
