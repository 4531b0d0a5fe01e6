//! Proof that the models bite. Under `--cfg balloc_loom_mutants`, balloc-concurrent's claim
//! step (`claim_bits`) is a load then a separate store instead of one `fetch_and`, and its merge
//! step (`merge_or_mark`) a load then a separate store instead of one CAS (bitmaps.rs). Every
//! model of the claim race (1a, 1b, 3, 4a, 4b, 10) and of the merge race (2a, 2b, 10) must then fail,
//! and with the message of the invariant it exists to check. Both mutants are on at once, so
//! model 3 (frees and a claim together) could trip on either. A third mutant makes the depot's
//! magazine claim (`Magazine::acquire`, depot.rs) a load then a store instead of one CAS: model
//! 8 must catch a magazine taken by two threads (one hands its blocks out, the other returns
//! them to the bitmaps).
//!
//! A fourth mutant restores the out-of-memory rule that livelocked (`Region::search` and
//! `ladder::decide`): every search opens a transit, and a decision counts its own as the only
//! one allowed. Models 9a and 9b must catch failing searches invalidating each other.
//!
//! A failing model still runs all its executions (see `loom_tests::model`), so the
//! three-thread models run here at bound 2, where they fail just the same, to keep this fast.
//! Each fails early (1a in its first execution, the two-thread models within about 20, 2b
//! and 3 at about 2,100): loom lets the mutant's plain load read a value older than the other
//! thread's write (nothing orders them), which is exactly what the atomic read-modify-write
//! rules out.

use balloc_concurrent::{loom_shard_mutant, ShardMutant};
use loom_tests::model::check;
use loom_tests::scenarios as s;

#[test]
#[should_panic(expected = "balloc invariant broken: 2 threads were handed the whole pool")]
fn m1a_catches_claim_mutant() {
    check("m1a_whole_pool_claimed_once", 3, s::whole_pool_claimed_once);
}

#[test]
#[should_panic(expected = "balloc invariant broken: double hand-out")]
fn m1b_catches_claim_mutant() {
    check("m1b_two_smallest_blocks", 3, s::two_smallest_blocks);
}

#[test]
#[should_panic(expected = "balloc invariant broken: buddies freed at once did not coalesce")]
fn m2a_catches_merge_mutant() {
    check("m2a_buddies_freed_at_once", 3, s::buddies_freed_at_once);
}

#[test]
#[should_panic(expected = "balloc invariant broken: a cascade of merges did not coalesce")]
fn m2b_catches_merge_mutant() {
    check("m2b_merge_cascade", 2, s::merge_cascade);
}

#[test]
#[should_panic(
    expected = "balloc invariant broken: validate: free and live blocks do not add up to the pool"
)]
fn m3_catches_claim_mutant() {
    check("m3_merge_races_claim", 2, s::merge_races_claim);
}

#[test]
#[should_panic(expected = "balloc invariant broken: double hand-out")]
fn m4a_catches_claim_mutant() {
    check("m4a_split_race_same_order", 3, s::split_race_same_order);
}

#[test]
#[should_panic(
    expected = "balloc invariant broken: validate: free and live blocks do not add up to the pool"
)]
fn m4b_catches_claim_mutant() {
    check("m4b_split_race_mixed_orders", 3, s::split_race_mixed_orders);
}

#[test]
#[should_panic(
    expected = "balloc invariant broken: validate: free and live blocks do not add up to the pool"
)]
fn m8_catches_depot_mutant() {
    check("m8_depot_handoff", 3, s::depot_handoff);
}

#[test]
#[should_panic(
    expected = "balloc invariant broken: an allocation that a magazine in the depot could serve"
)]
fn m8b_catches_take_mutant() {
    with_shard_mutant(ShardMutant::TakeFromAffinityOnly, || {
        check(
            "m8b_magazine_in_another_shard_is_taken",
            3,
            s::magazine_in_another_shard_is_taken,
        );
    });
}

#[test]
#[should_panic(
    expected = "balloc invariant broken: false out-of-memory: the memory was in a depot"
)]
fn m8c_catches_drain_mutant() {
    with_shard_mutant(ShardMutant::DecisionDrainsShardZero, || {
        check(
            "m8c_out_of_memory_drains_every_shard",
            3,
            s::out_of_memory_drains_every_shard,
        );
    });
}

/// Runs `f` with the depot-shard mutant `which` on (each is on only for the model that must
/// catch it, see `loom_shard_mutant`), and off again after, even when `f` panics.
fn with_shard_mutant(which: ShardMutant, f: impl FnOnce()) {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            loom_shard_mutant(None);
        }
    }
    loom_shard_mutant(Some(which));
    let _off = Off;
    f();
}

#[test]
#[should_panic(expected = "balloc invariant broken: failing searches invalidated each other")]
fn m9a_catches_oom_rule_mutant() {
    check(
        "m9a_out_of_memory_together_2",
        3,
        s::out_of_memory_together_2,
    );
}

#[test]
#[should_panic(expected = "balloc invariant broken: failing searches invalidated each other")]
fn m9b_catches_oom_rule_mutant() {
    check(
        "m9b_out_of_memory_together_3",
        2,
        s::out_of_memory_together_3,
    );
}

/// Both the claim and the merge mutants race here (the grow's claim of the buddy, the buddy's
/// free, the third thread's claim): the first broken execution shows a lost block
/// (`validate`), so any invariant message counts.
#[test]
#[should_panic(expected = "balloc invariant broken")]
fn m10_catches_claim_or_merge_mutant() {
    check(
        "m10_grow_in_place_races_buddy_free_and_claim",
        2,
        s::grow_in_place_races_buddy_free_and_claim,
    );
}
