//! Without `--cfg balloc_loom` there are no loom models to run: say so loudly, and run the
//! same scenarios many times on real threads instead (a smoke test, not a proof).

use loom_tests::scenarios as s;

/// Runs per scenario: enough to hit a few races on two cores, in about a second in all.
const RUNS: usize = 200;

#[test]
fn loom_models_need_the_cfg_so_run_the_scenarios_on_real_threads() {
    eprintln!(
        "NOTE: loom-tests built without --cfg balloc_loom: the loom models did NOT run. Run \
         them with ci/loom.sh (RUSTFLAGS=\"--cfg balloc_loom\" cargo test -p loom-tests \
         --release). Running each scenario {RUNS} times on real threads instead."
    );
    let scenarios: [(&str, fn()); 19] = [
        ("whole_pool_claimed_once", s::whole_pool_claimed_once),
        ("two_smallest_blocks", s::two_smallest_blocks),
        ("buddies_freed_at_once", s::buddies_freed_at_once),
        ("merge_cascade", s::merge_cascade),
        ("merge_races_claim", s::merge_races_claim),
        ("split_race_same_order", s::split_race_same_order),
        ("split_race_mixed_orders", s::split_race_mixed_orders),
        ("cache_flush_races_alloc", s::cache_flush_races_alloc),
        ("thread_exit_races_alloc", s::thread_exit_races_alloc),
        (
            "pressure_makes_holder_flush",
            s::pressure_makes_holder_flush,
        ),
        ("three_threads_mixed_orders", s::three_threads_mixed_orders),
        ("double_free_race_cached", s::double_free_race_cached),
        ("double_free_race_uncached", s::double_free_race_uncached),
        ("summary_hint_race", s::summary_hint_race),
        (
            "pool_drop_races_thread_exit",
            s::pool_drop_races_thread_exit,
        ),
        ("depot_handoff", s::depot_handoff),
        ("out_of_memory_together_2", s::out_of_memory_together_2),
        ("out_of_memory_together_3", s::out_of_memory_together_3),
        (
            "grow_in_place_races_buddy_free_and_claim",
            s::grow_in_place_races_buddy_free_and_claim,
        ),
    ];
    for (name, scenario) in scenarios {
        for _ in 0..RUNS {
            scenario();
        }
        eprintln!("smoke: {name} x{RUNS} ok");
    }
}
