//! Running a scenario under loom with a per-model preemption bound.
//!
//! A failed check does not unwind out of loom: loom would then drop the model's threads, and
//! with them balloc's loom thread-locals, outside the model, where their destructors (thread
//! cache retirement, which touches loom atomics) panic again and abort the process. Instead the
//! scenario's panic is caught inside the execution, the execution ends normally, the first
//! failure is kept (and printed, with its execution number), and `check` panics with its
//! message once loom is done. Panics inside executions are kept off stderr meanwhile.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Instant;

std::thread_local! {
    /// Set while this OS thread runs a model (loom runs all of a model's threads on it).
    static IN_MODEL: Cell<bool> = const { Cell::new(false) };
    /// The first failure of the running model: execution number and panic message.
    static FIRST_FAILURE: RefCell<Option<(usize, String)>> = const { RefCell::new(None) };
    /// Failed executions of the running model.
    static FAILURES: Cell<usize> = const { Cell::new(0) };
}

/// Installs (once) a panic hook that stays quiet for panics inside a model's executions and
/// defers to the previous hook otherwise.
fn quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_MODEL.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic".to_owned()
    }
}

/// Explores every interleaving of `scenario` with at most `preemptions` preemptions per
/// execution (`LOOM_MAX_PREEMPTIONS` overrides it for all models), then prints the number of
/// executions, the bound, the time taken and how many tolerated out-of-memory results were
/// seen. Panics with the first failure's message if any execution failed.
pub fn check<F>(name: &str, preemptions: usize, scenario: F)
where
    F: Fn() + Send + Sync + 'static,
{
    quiet_hook();
    // Every model starts with the depot's peek on; model 8 turns it off for itself.
    balloc_concurrent::loom_depot_peek(true);
    let mut builder = loom::model::Builder::new();
    let bound = *builder.preemption_bound.get_or_insert(preemptions);
    // The setup of the larger pools takes a few hundred scheduling points before any thread
    // is spawned; loom's default cap of 1000 branches is for smaller programs.
    builder.max_branches = builder.max_branches.max(100_000);
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    FIRST_FAILURE.with(|f| f.borrow_mut().take());
    FAILURES.with(|n| n.set(0));
    let start = Instant::now();
    IN_MODEL.with(|m| m.set(true));
    builder.check(move || {
        let run = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(&scenario)) {
            FAILURES.with(|n| n.set(n.get() + 1));
            FIRST_FAILURE.with(|f| {
                f.borrow_mut()
                    .get_or_insert_with(|| (run, message(&*payload)));
            });
        }
    });
    IN_MODEL.with(|m| m.set(false));
    let runs = runs.load(Ordering::Relaxed);
    eprintln!(
        "loom model {name}: {runs} executions, LOOM_MAX_PREEMPTIONS={bound}, {:.1?}, \
         {} tolerated out-of-memory results",
        start.elapsed(),
        crate::check::take_tolerated_ooms(),
    );
    if let Some((run, msg)) = FIRST_FAILURE.with(|f| f.borrow_mut().take()) {
        let failed = FAILURES.with(Cell::get);
        panic!(
            "loom model {name} failed in {failed} of {runs} executions, first in execution \
             {run}: {msg}"
        );
    }
}
