//! One `#[test]` per model. Each doc comment names the preemption bound and why.

use loom_tests::model::check;
use loom_tests::scenarios as s;

/// Bound 3: one bit, two threads; the whole space is small.
#[test]
fn m1a_whole_pool_claimed_once() {
    check("m1a_whole_pool_claimed_once", 3, s::whole_pool_claimed_once);
}

/// Bound 3.
#[test]
fn m1b_two_smallest_blocks() {
    check("m1b_two_smallest_blocks", 3, s::two_smallest_blocks);
}

/// Bound 3.
#[test]
fn m2a_buddies_freed_at_once() {
    check("m2a_buddies_freed_at_once", 3, s::buddies_freed_at_once);
}

/// Bound 3.
#[test]
fn m2b_merge_cascade() {
    check("m2b_merge_cascade", 3, s::merge_cascade);
}

/// Bound 3.
#[test]
fn m3_merge_races_claim() {
    check("m3_merge_races_claim", 3, s::merge_races_claim);
}

/// Bound 3.
#[test]
fn m4a_split_race_same_order() {
    check("m4a_split_race_same_order", 3, s::split_race_same_order);
}

/// Bound 3.
#[test]
fn m4b_split_race_mixed_orders() {
    check("m4b_split_race_mixed_orders", 3, s::split_race_mixed_orders);
}

/// Bound 3.
#[test]
fn m5a_cache_flush_races_alloc() {
    check("m5a_cache_flush_races_alloc", 3, s::cache_flush_races_alloc);
}

/// Bound 3.
#[test]
fn m5b_thread_exit_races_alloc() {
    check("m5b_thread_exit_races_alloc", 3, s::thread_exit_races_alloc);
}

/// Bound 3.
#[test]
fn m5c_pressure_makes_holder_flush() {
    check(
        "m5c_pressure_makes_holder_flush",
        3,
        s::pressure_makes_holder_flush,
    );
}

/// Bound 3.
#[test]
fn m6_three_threads_mixed_orders() {
    check(
        "m6_three_threads_mixed_orders",
        3,
        s::three_threads_mixed_orders,
    );
}

/// Bound 3.
#[test]
fn m7a_double_free_race_cached() {
    check("m7a_double_free_race_cached", 3, s::double_free_race_cached);
}

/// Bound 3.
#[test]
fn m7b_double_free_race_uncached() {
    check(
        "m7b_double_free_race_uncached",
        3,
        s::double_free_race_uncached,
    );
}

/// Bound 3.
#[test]
fn m7c_summary_hint_race() {
    check("m7c_summary_hint_race", 3, s::summary_hint_race);
}

/// Bound 3.
#[test]
fn m7d_pool_drop_races_thread_exit() {
    check(
        "m7d_pool_drop_races_thread_exit",
        3,
        s::pool_drop_races_thread_exit,
    );
}
