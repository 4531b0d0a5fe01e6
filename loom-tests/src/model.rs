//! Running a scenario under loom with a per-model preemption bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Explores every interleaving of `scenario` with at most `preemptions` preemptions per
/// execution (`LOOM_MAX_PREEMPTIONS` overrides it for all models), then prints the number of
/// executions, the bound, the time taken and how many tolerated out-of-memory results were seen.
pub fn check<F>(name: &str, preemptions: usize, scenario: F)
where
    F: Fn() + Send + Sync + 'static,
{
    let mut builder = loom::model::Builder::new();
    let bound = *builder.preemption_bound.get_or_insert(preemptions);
    // The setup of the larger pools takes a few hundred scheduling points before any thread
    // is spawned; loom's default cap of 1000 branches is for smaller programs.
    builder.max_branches = builder.max_branches.max(100_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        scenario();
    });
    eprintln!(
        "loom model {name}: {} executions, LOOM_MAX_PREEMPTIONS={bound}, {:.1?}, \
         {} tolerated out-of-memory results",
        runs.load(Ordering::Relaxed),
        start.elapsed(),
        crate::check::take_tolerated_ooms(),
    );
}
