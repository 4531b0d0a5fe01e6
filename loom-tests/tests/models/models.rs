//! One `#[test]` per model. Each doc comment gives the model's preemption bound and why; the
//! executions and times are from `ci/loom.sh` on the 2-core development machine.
//!
//! The rule: bound 3 (loom's and tokio's usual ceiling) wherever the model finishes in about a
//! minute or so; less only where bound 3 would take the suite past its 10-minute budget. The
//! two-thread models all run at bound 3 in about a second. Thread exits cost most: each
//! retires a cache (flush, depot drain, its return to the registry, two reference counts), and every
//! scenario's checks wait until the other threads' retirements are done
//! (`loom_tests::sync::wait_retired`).

use loom_tests::model::check;
use loom_tests::scenarios as s;

/// Model 1a, the bare claim race on one bit. Bound 3: 2 threads, 11 executions, < 1 s (pools
/// that cache nothing give threads no cache, so the uncached models explore the bitmaps only).
#[test]
fn m1a_whole_pool_claimed_once() {
    check("m1a_whole_pool_claimed_once", 3, s::whole_pool_claimed_once);
}

/// Model 1b, a claim racing a split of the only larger block. Bound 3: 2 threads, ~530
/// executions, < 1 s.
#[test]
fn m1b_two_smallest_blocks() {
    check("m1b_two_smallest_blocks", 3, s::two_smallest_blocks);
}

/// Model 2a, two buddies' merge-or-mark CASes on one word. Bound 3: 2 threads, ~100
/// executions, < 1 s.
#[test]
fn m2a_buddies_freed_at_once() {
    check("m2a_buddies_freed_at_once", 3, s::buddies_freed_at_once);
}

/// Model 2b, merges cascading over two levels from three frees. Bound 3: 3 threads, ~7,300
/// executions, ~2 s.
#[test]
fn m2b_merge_cascade() {
    check("m2b_merge_cascade", 3, s::merge_cascade);
}

/// Model 3, a claim racing two merges that take its bit as a buddy. Bound 3: 3 threads,
/// ~11,600 executions, ~3 s.
#[test]
fn m3_merge_races_claim() {
    check("m3_merge_races_claim", 3, s::merge_races_claim);
}

/// Model 4a, two claims racing a two-level split. Bound 3: 2 threads, ~1,300 executions, < 1 s.
#[test]
fn m4a_split_race_same_order() {
    check("m4a_split_race_same_order", 3, s::split_race_same_order);
}

/// Model 4b, as 4a with a half and a quarter. Bound 3: 2 threads, ~380 executions, < 1 s.
#[test]
fn m4b_split_race_mixed_orders() {
    check("m4b_split_race_mixed_orders", 3, s::split_race_mixed_orders);
}

/// Model 5a, `flush_thread_cache` racing an allocation of the flushed block. Bound 3: 2
/// threads, ~1,500 executions, < 1 s.
#[test]
fn m5a_cache_flush_races_alloc() {
    check("m5a_cache_flush_races_alloc", 3, s::cache_flush_races_alloc);
}

/// Model 5b, thread exit (cache retirement) racing an allocation of the retired block. Bound
/// 3: 2 threads, ~1,500 executions, < 1 s.
#[test]
fn m5b_thread_exit_races_alloc() {
    check("m5b_thread_exit_races_alloc", 3, s::thread_exit_races_alloc);
}

/// Model 5c, the pressure epoch: out-of-memory makes the holder flush at its next slow path.
/// Bound 3: 2 threads, ~330 executions, < 1 s.
#[test]
fn m5c_pressure_makes_holder_flush() {
    check(
        "m5c_pressure_makes_holder_flush",
        3,
        s::pressure_makes_holder_flush,
    );
}

/// Model 6, three threads each allocating and freeing, of mixed orders, where any may run out
/// of memory. Bound 1: ~9,200 executions, ~2 s; bound 2 did not finish in 10 minutes (each
/// out-of-memory decision is a dozen atomic steps, and here a third of the executions have
/// one). The pairwise races it contains run at bound 3 in models 1 to 4 and 9.
#[test]
fn m6_three_threads_mixed_orders() {
    check(
        "m6_three_threads_mixed_orders",
        1,
        s::three_threads_mixed_orders,
    );
}

/// Model 7a, two validated frees of one cached-order block: the tag CAS. Bound 3: 2 threads,
/// ~30 executions, < 1 s.
#[test]
fn m7a_double_free_race_cached() {
    check("m7a_double_free_race_cached", 3, s::double_free_race_cached);
}

/// Model 7b, two frees of one uncached block: the live bit's `fetch_and`. Bound 3: 2 threads,
/// 7 executions, < 1 s.
#[test]
fn m7b_double_free_race_uncached() {
    check(
        "m7b_double_free_race_uncached",
        3,
        s::double_free_race_uncached,
    );
}

/// Model 7c, a stale summary hint cleared while its word is refilled and re-marked. Bound 3:
/// 3 threads, ~39,000 executions, ~13 s (the suite's longest).
#[test]
fn m7c_summary_hint_race() {
    check("m7c_summary_hint_race", 3, s::summary_hint_race);
}

/// Model 7d, the pool's last reference dropped while a thread's cache retires. Bound 3: 2
/// threads, ~30 executions (only the reference counts and the registry conflict), < 1 s.
#[test]
fn m7d_pool_drop_races_thread_exit() {
    check(
        "m7d_pool_drop_races_thread_exit",
        3,
        s::pool_drop_races_thread_exit,
    );
}

/// Model 8, the depot: a full cache deposits a magazine while another thread's empty cache
/// takes from the depot or the bitmaps, then thread exit: the retiring cache drains the depot.
/// Bound 3: 2 threads, ~350 executions, < 1 s, the depot's peek turned off so that loom
/// explores the hand-over (see the crate README).
#[test]
fn m8_depot_handoff() {
    check("m8_depot_handoff", 3, s::depot_handoff);
}

/// Model 8b, the depot's shards: a magazine deposited in another thread's shard is found by an
/// allocation that starts after it, without the out-of-memory path. Bound 3.
#[test]
fn m8b_magazine_in_another_shard_is_taken() {
    check(
        "m8b_magazine_in_another_shard_is_taken",
        3,
        s::magazine_in_another_shard_is_taken,
    );
}

/// Model 8c, the depot's shards: an out-of-memory decision drains every shard. Bound 3.
#[test]
fn m8c_out_of_memory_drains_every_shard() {
    check(
        "m8c_out_of_memory_drains_every_shard",
        3,
        s::out_of_memory_drains_every_shard,
    );
}

/// Model 9a: two threads run out of memory together; both decide at once, and neither's
/// decision search is overlapped by the other's. Bound 3: ~70 executions, < 1 s.
#[test]
fn m9a_out_of_memory_together_2() {
    check(
        "m9a_out_of_memory_together_2",
        3,
        s::out_of_memory_together_2,
    );
}

/// Model 9b: three threads run out of memory together; all decide at once. Bound 3: ~6,800
/// executions, ~2 s.
#[test]
fn m9b_out_of_memory_together_3() {
    check(
        "m9b_out_of_memory_together_3",
        3,
        s::out_of_memory_together_3,
    );
}

/// Model 10: a grow in place (claiming the buddy above with one `fetch_and`) racing the
/// buddy's free (merge-or-mark CAS) and another thread's claim. Bound 3: 3 threads, ~275,000
/// executions, ~20 s.
#[test]
fn m10_grow_in_place_races_buddy_free_and_claim() {
    check(
        "m10_grow_in_place_races_buddy_free_and_claim",
        3,
        s::grow_in_place_races_buddy_free_and_claim,
    );
}
