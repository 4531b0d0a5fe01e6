//! Per-call latency: a sample of the allocator calls of a run, timed one by one, in an HDR
//! histogram.
//!
//! Method:
//! - **What is timed**: one allocator call, an allocation or a free, alike (a `LocalAlloc::alloc`
//!   or `LocalAlloc::dealloc`), the calls the workload makes anyway. Nothing else sits between
//!   the two clock reads.
//! - **Which calls**: about one in [`SAMPLE_EVERY`], per thread. The gap to the next timed call is
//!   drawn uniformly from `1..=2 × SAMPLE_EVERY - 1`, so that the sample does not lock onto a
//!   period of the workload (`batch` cycles 7 sizes, caches refill every so many calls).
//! - **Timer overhead**: each thread first times [`CALIBRATION`] empty intervals (two clock reads
//!   back to back) and subtracts their median from every timed call (a call measured below that
//!   counts as 0 ns). What is left is the call's own time, within the clock's jitter of a few ns.
//! - **Precision**: the histogram keeps [`SIGNIFICANT_DIGITS`] significant digits from 1 ns to
//!   [`MAX_NS`]; each thread records into its own, and a run's histograms are merged at its end.
//!
//! On a machine with fewer CPUs than threads, the tail includes time slices lost to preemption
//! (milliseconds): that is what a caller of an oversubscribed service sees too.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::alloc::LocalAlloc;

/// One call in this many, on average, is timed: two clock reads (a few tens of ns) per this
/// many calls add about 0.1-0.2 ns to the average call.
pub const SAMPLE_EVERY: u32 = 256;
/// Empty intervals each thread times to learn the clock's own cost.
pub const CALIBRATION: usize = 1001;
/// Significant digits the histogram keeps (relative error under 0.1 %).
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// The largest latency recorded as itself, 10 s; longer ones count as this.
pub const MAX_NS: u64 = 10_000_000_000;

/// The percentiles of one run's timed calls, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    /// Calls timed.
    pub samples: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest timed call.
    pub max: u64,
}

impl Latency {
    /// The percentiles of `h`, or `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            samples: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        })
    }
}

/// An empty histogram with the report's bounds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_max(MAX_NS, SIGNIFICANT_DIGITS).expect("valid histogram bounds")
}

/// Adds `from` to `into` (same bounds, so nothing can be out of range).
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from).expect("histograms with the same bounds");
}

/// A thread's [`LocalAlloc`] handle that times a sample of its calls (see the module docs), or
/// passes every call straight through when sampling is off.
pub struct Timed<L> {
    inner: L,
    sampler: Option<Sampler>,
}

/// The state of sampling: the histogram, the clock's cost and when to time next.
struct Sampler {
    hist: Histogram<u64>,
    overhead: u64,
    /// Calls left until the next timed one.
    gap: u32,
    /// xorshift state for the gaps.
    state: u64,
}

impl Sampler {
    fn new(seed: u64) -> Self {
        let mut empty: Vec<u64> = (0..CALIBRATION)
            .map(|_| {
                let t = Instant::now();
                t.elapsed().as_nanos() as u64
            })
            .collect();
        empty.sort_unstable();
        let mut s = Sampler {
            hist: histogram(),
            overhead: empty[CALIBRATION / 2],
            gap: 0,
            // Never zero, or xorshift stays at zero.
            state: seed | 1,
        };
        s.gap = s.next_gap();
        s
    }

    fn next_gap(&mut self) -> u32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        1 + (self.state % (2 * u64::from(SAMPLE_EVERY) - 1)) as u32
    }

    /// Whether to time this call.
    #[inline(always)]
    fn due(&mut self) -> bool {
        self.gap -= 1;
        if self.gap == 0 {
            self.gap = self.next_gap();
            true
        } else {
            false
        }
    }

    fn record(&mut self, start: Instant) {
        let ns = start.elapsed().as_nanos() as u64;
        self.hist
            .saturating_record(ns.saturating_sub(self.overhead));
    }
}

impl<L: LocalAlloc> Timed<L> {
    /// Wraps `inner`; with `sample`, times a sample of its calls, with a sequence of gaps drawn
    /// from `seed`.
    pub fn new(inner: L, sample: bool, seed: u64) -> Self {
        Timed {
            inner,
            sampler: sample.then(|| Sampler::new(seed)),
        }
    }

    /// Stops sampling and returns the histogram of the calls timed so far (`None` when
    /// sampling was off). Calls after this, such as a run's cleanup, pass straight through.
    pub fn finish(&mut self) -> Option<Histogram<u64>> {
        self.sampler.take().map(|s| s.hist)
    }
}

impl<L: LocalAlloc> LocalAlloc for Timed<L> {
    #[inline(always)]
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        if let Some(s) = &mut self.sampler {
            if s.due() {
                let t = Instant::now();
                let p = self.inner.alloc(layout);
                s.record(t);
                return p;
            }
        }
        self.inner.alloc(layout)
    }

    #[inline(always)]
    unsafe fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if let Some(s) = &mut self.sampler {
            if s.due() {
                let t = Instant::now();
                // SAFETY: the caller upholds `dealloc`'s contract; passed on unchanged.
                unsafe { self.inner.dealloc(ptr, layout) };
                s.record(t);
                return;
            }
        }
        // SAFETY: as above.
        unsafe { self.inner.dealloc(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::BenchAlloc as _;
    use crate::alloc::Global;

    #[test]
    fn samples_about_one_call_in_sample_every() {
        let a = Global(std::alloc::System);
        let mut t = Timed::new(a.local(), true, 7);
        let layout = Layout::from_size_align(64, 8).unwrap();
        let calls = 256 * 1000;
        for _ in 0..calls / 2 {
            let p = t.alloc(layout).unwrap();
            // SAFETY: just allocated with `layout`.
            unsafe { t.dealloc(p, layout) };
        }
        let lat = Latency::of(&t.finish().unwrap()).unwrap();
        let expected = calls / u64::from(SAMPLE_EVERY);
        assert!(
            lat.samples > expected * 9 / 10 && lat.samples < expected * 11 / 10,
            "{lat:?}"
        );
        assert!(lat.p50 <= lat.p99 && lat.p99 <= lat.p999 && lat.p999 <= lat.max);
    }

    #[test]
    fn off_records_nothing() {
        let a = Global(std::alloc::System);
        let mut t = Timed::new(a.local(), false, 7);
        let layout = Layout::from_size_align(64, 8).unwrap();
        let p = t.alloc(layout).unwrap();
        // SAFETY: just allocated with `layout`.
        unsafe { t.dealloc(p, layout) };
        assert!(t.finish().is_none());
    }

    #[test]
    fn percentiles_of_a_known_histogram() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let mut other = histogram();
        other.record(5_000_000).unwrap();
        merge(&mut h, &other);
        let lat = Latency::of(&h).unwrap();
        assert_eq!((lat.samples, lat.p50, lat.p99), (1001, 501, 991));
        assert_eq!(lat.p999, 1000);
        assert!(lat.max.abs_diff(5_000_000) <= 5_000, "{lat:?}");
        assert_eq!(Latency::of(&histogram()), None);
    }
}
