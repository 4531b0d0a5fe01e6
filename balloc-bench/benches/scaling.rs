//! Criterion benches of the scaling workloads: one group per workload, every allocator in the
//! group, `BenchmarkId` `<allocator>/threads/<n>`, timed with `iter_custom` over rounds in which
//! every thread does one round (the threads start together at a barrier).
//!
//! `fragmentation` measures memory, not time: it is in the report binary only.
//!
//! Criterion's "thrpt" is ops/s (one op = one allocation and its free).

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::time::Duration;

use balloc_bench::registry::{AllocKind, Instances, Run, ThreadPools, Workload};
use balloc_bench::workload::Budget;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const THREADS: [usize; 5] = [1, 2, 4, 8, 16];

fn scaling(c: &mut Criterion) {
    let instances = Instances::new();
    let pools = ThreadPools::new();
    for w in Workload::ALL.into_iter().filter(|w| w.is_throughput()) {
        let mut group = c.benchmark_group(format!("scaling/{}", w.id()));
        // 245 cells: short windows keep a full `cargo bench` near 10 minutes.
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800));
        for n in THREADS {
            let pool = pools.get(n);
            group.throughput(Throughput::Elements(w.ops_per_round(n)));
            for a in AllocKind::ALL.into_iter().filter(|&a| w.applies_to(a)) {
                group.bench_with_input(
                    BenchmarkId::new(format!("{}/threads", a.id()), n),
                    &n,
                    |b, _| {
                        b.iter_custom(|iters| {
                            let run = Run {
                                workload: w,
                                pool,
                                budget: Budget::Rounds(iters),
                                seed: 0x5EED,
                            };
                            let outcome = run.on(&instances, a);
                            assert_eq!(outcome.errors, 0, "{} failed allocations", outcome.errors);
                            outcome.elapsed
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, scaling);
criterion_main!(benches);
