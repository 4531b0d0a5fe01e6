//! The memory workload: how much RSS each allocator holds at its peak and after the load has
//! gone, relative to the bytes the program asked for. The scaling report runs it after its
//! throughput cells (`--no-memory` skips it); `--bin memory` runs it alone with other settings.
//!
//! The workload, the same for every allocator (a fixed seed per thread):
//! - sizes (`service`, the default mix): 85% small (16–512 B), 14% buffers (4–64 KiB), 1% large
//!   (256 KiB–1 MiB), each uniform in its range; `small`: 16–512 B only, where rounding costs
//!   most;
//! - waves: in wave `w` every thread allocates `objects × [1, 3, 2, 4, 1, 3][w % 6]` blocks,
//!   writing every byte, then (all threads past a barrier) frees 80% of the blocks its
//!   neighbour thread holds, picked at random: use rises and falls, and a fifth of each wave
//!   stays into the next. After the last wave everything is freed.
//! - then the load is light: the workers exit, and after 60 ms without calls one thread makes
//!   `light` (default 400) allocations and frees of the same mix, as a service between bursts
//!   does.
//!
//! Each allocator runs in a child process of its own (the calling binary started again with
//! [`CHILD_FLAG`]), driven through `GlobalAlloc` directly (the workload's bookkeeping is
//! allocated before the measurement starts, from the system allocator). RSS comes from
//! `/proc/self/status`: the baseline `VmRSS` before the workload is subtracted; the peak is
//! `VmHWM` (the kernel's high-water mark, reset through `/proc/self/clear_refs` after the
//! baseline), so it is exact, not sampled. Ratios divide by the peak of live requested bytes
//! (summed over threads at the end of each allocation phase). "after trim" is RSS after the
//! allocator's own hand-back call: `GlobalPool::trim`, glibc's `malloc_trim(0)`; the others have
//! none here ("–").

use core::alloc::{GlobalAlloc, Layout};
use std::alloc::System;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use balloc_concurrent::GlobalPool;

use crate::rng::Rng;

/// The allocators compared, by the name a child process takes.
pub const ALLOCATORS: [&str; 4] = ["glibc", "mimalloc", "jemalloc", "balloc-global"];

/// The flag that makes a binary run one allocator's workload and print its result line:
/// `<exe> --memory-child NAME THREADS OBJECTS WAVES LIGHT MIX`.
pub const CHILD_FLAG: &str = "--memory-child";

/// Wave multipliers: use rises and falls.
const WAVES: [usize; 6] = [1, 3, 2, 4, 1, 3];

/// Share of a wave's blocks freed before the next one, in percent.
const FREED_PERCENT: usize = 80;

/// The `GlobalPool`'s size: address space only, enough that nothing falls back.
const POOL: usize = 1 << 32;

/// The workload's settings.
#[derive(Debug, Clone)]
pub struct Params {
    /// Threads allocating and freeing at once.
    pub threads: usize,
    /// Blocks per thread in a wave of multiplier 1.
    pub objects: usize,
    /// Waves.
    pub waves: usize,
    /// Allocations (each freed at once) made by one thread after the waves, the light use.
    pub light: usize,
    /// Size mix: `service` or `small`.
    pub mix: String,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            threads: 4,
            objects: 4000,
            waves: 6,
            light: 400,
            mix: "service".into(),
        }
    }
}

impl Params {
    fn to_args(&self) -> [String; 5] {
        [
            self.threads.to_string(),
            self.objects.to_string(),
            self.waves.to_string(),
            self.light.to_string(),
            self.mix.clone(),
        ]
    }

    fn from_args(a: &[String]) -> Option<Self> {
        let [threads, objects, waves, light, mix] = a else {
            return None;
        };
        Some(Self {
            threads: threads.parse().ok()?,
            objects: objects.parse().ok()?,
            waves: waves.parse().ok()?,
            light: light.parse().ok()?,
            mix: mix.clone(),
        })
    }
}

/// If this process was started as a memory child (`args` after the program name begin with
/// [`CHILD_FLAG`]), runs that allocator's workload, prints its result line and returns true.
pub fn serve_child(args: &[String]) -> bool {
    let Some((flag, rest)) = args.split_first() else {
        return false;
    };
    if flag != CHILD_FLAG {
        return false;
    }
    let (name, params) = rest.split_first().expect("--memory-child NAME PARAMS...");
    let params = Params::from_args(params).expect("--memory-child: five parameters");
    child(name, &params);
    true
}

/// Runs every allocator in `names`, each in a child process of `exe` (a binary that calls
/// [`serve_child`] first thing), and returns the markdown table. A child that gives no result
/// is reported on stderr and left out.
pub fn table(exe: &std::path::Path, names: &[&str], params: &Params) -> String {
    let mut rows = Vec::new();
    for &name in names {
        let out = Command::new(exe)
            .arg(CHILD_FLAG)
            .arg(name)
            .args(params.to_args())
            .output()
            .expect("run the child");
        let line = String::from_utf8_lossy(&out.stdout);
        match line.lines().find_map(Result_::parse) {
            Some(r) => rows.push((name, r)),
            None => eprintln!(
                "{name}: no result ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
    markdown(params, &rows)
}

/// What one child measured, in bytes.
#[derive(Debug, Clone, Copy)]
struct Result_ {
    peak_live: usize,
    peak_rounded: usize,
    peak_rss: usize,
    after_rss: usize,
    after_trim_rss: Option<usize>,
}

impl Result_ {
    fn line(&self) -> String {
        format!(
            "RESULT {} {} {} {} {}",
            self.peak_live,
            self.peak_rounded,
            self.peak_rss,
            self.after_rss,
            self.after_trim_rss.map_or(-1, |b| b as i64)
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let mut f = line.strip_prefix("RESULT ")?.split(' ');
        let mut next = || f.next()?.parse::<i64>().ok();
        Some(Self {
            peak_live: next()? as usize,
            peak_rounded: next()? as usize,
            peak_rss: next()? as usize,
            after_rss: next()? as usize,
            after_trim_rss: usize::try_from(next()?).ok(),
        })
    }
}

fn markdown(args: &Params, rows: &[(&str, Result_)]) -> String {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let intro = format!(
        "Memory use, {} mix: {} threads, {} blocks per thread per unit wave, {} waves, {} calls \
         of light use after. Sizes in MiB; ratios are RSS over the peak of live requested bytes \
         (lower is better).",
        args.mix, args.threads, args.objects, args.waves, args.light
    );
    let mut s = crate::report::wrap(&intro, crate::report::WIDTH).join("\n");
    s += "\n\n| allocator | peak live | peak RSS | peak / live | RSS after | after / live | \
          trimmed / live |\n|---|--:|--:|--:|--:|--:|--:|\n";
    for (name, r) in rows {
        let live = r.peak_live.max(1) as f64;
        s += &format!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.1} | {:.3} | {} |\n",
            mib(r.peak_live),
            mib(r.peak_rss),
            r.peak_rss as f64 / live,
            mib(r.after_rss),
            r.after_rss as f64 / live,
            r.after_trim_rss
                .map_or("–".to_string(), |b| format!("{:.3}", b as f64 / live)),
        );
    }
    if let Some((_, r)) = rows.first() {
        let note = format!(
            "Rounding alone (a balloc block is the request rounded up to a power of two, at \
             least 64 B): {:.2} × the live requested bytes at the peak. \"RSS after\": after the \
             waves and a light load; \"trimmed\": after the allocator's own hand-back call \
             (`GlobalPool::trim`, glibc's `malloc_trim`; – where there is none).",
            r.peak_rounded as f64 / r.peak_live.max(1) as f64
        );
        s += "\n";
        s += &crate::report::wrap(&note, crate::report::WIDTH).join("\n");
        s += "\n";
    }
    s
}

// ----- the child ---------------------------------------------------------------------------

/// A block the workload holds.
#[derive(Clone, Copy)]
struct Slot {
    addr: usize,
    size: usize,
}

fn child(name: &str, args: &Params) {
    match name {
        "glibc" => run(&System, args, glibc_trim),
        "mimalloc" => run(&mimalloc::MiMalloc, args, || None),
        "jemalloc" => run(&tikv_jemallocator::Jemalloc, args, || None),
        "balloc-global" => {
            static POOL_G: GlobalPool = GlobalPool::new(POOL);
            run(&POOL_G, args, || {
                POOL_G.trim();
                Some(())
            })
        }
        other => panic!("unknown allocator {other}"),
    }
}

/// glibc's `malloc_trim(0)`: hands back free memory of every arena.
fn glibc_trim() -> Option<()> {
    #[cfg(target_env = "gnu")]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim has no preconditions.
        unsafe { malloc_trim(0) };
        Some(())
    }
    #[cfg(not(target_env = "gnu"))]
    None
}

/// A size from the mix: the service-like one, or small blocks only.
fn size(rng: &mut Rng, small_only: bool) -> usize {
    if small_only {
        return rng.between(16, 512);
    }
    match rng.below(100) {
        0..85 => rng.between(16, 512),
        85..99 => rng.between(4 << 10, 64 << 10),
        _ => rng.between(256 << 10, 1 << 20),
    }
}

/// The block size balloc rounds `size` up to.
fn rounded(size: usize) -> usize {
    size.next_power_of_two().max(64)
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("layout")
}

/// `VmRSS` and `VmHWM` of this process, in bytes.
fn rss() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| {
                v.trim()
                    .trim_end_matches(" kB")
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .expect("field")
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn run<A: GlobalAlloc + Sync>(a: &A, args: &Params, trim: impl Fn() -> Option<()>) {
    let t = args.threads;
    let small_only = args.mix == "small";
    let most = WAVES.iter().max().unwrap() * args.objects * 2;
    // Bookkeeping first, from the system allocator, touched, before the baseline.
    let held: Vec<Mutex<Vec<Slot>>> = (0..t)
        .map(|_| {
            let mut v = Vec::with_capacity(most);
            v.resize(most, Slot { addr: 0, size: 0 });
            v.clear();
            Mutex::new(v)
        })
        .collect();
    let live: Vec<AtomicUsize> = (0..t).map(|_| AtomicUsize::new(0)).collect();
    let live_rounded: Vec<AtomicUsize> = (0..t).map(|_| AtomicUsize::new(0)).collect();
    let (peak_live, peak_rounded) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let barrier = Barrier::new(t);
    let (base, _) = rss();
    // Reset the high-water mark to the current RSS ("5": the peak RSS, see proc(5)).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    std::thread::scope(|s| {
        for me in 0..t {
            let (held, live, live_rounded, barrier) = (&held, &live, &live_rounded, &barrier);
            let (peak_live, peak_rounded) = (&peak_live, &peak_rounded);
            s.spawn(move || {
                let mut rng = Rng::new(0x5EED, me as u64);
                let alloc_one = |rng: &mut Rng| {
                    let n = size(rng, small_only);
                    // SAFETY: a non-zero layout; freed later with the same layout.
                    let p = unsafe { a.alloc(layout(n)) };
                    assert!(!p.is_null(), "allocation failed");
                    // SAFETY: a live block of `n` bytes.
                    unsafe { p.write_bytes(0x5A, n) };
                    held[me].lock().unwrap().push(Slot {
                        addr: p as usize,
                        size: n,
                    });
                    live[me].fetch_add(n, Ordering::Relaxed);
                    live_rounded[me].fetch_add(rounded(n), Ordering::Relaxed);
                };
                let free = |slot: Slot, owner: usize| {
                    // SAFETY: a live block of the workload, allocated with this layout.
                    unsafe { a.dealloc(slot.addr as *mut u8, layout(slot.size)) };
                    live[owner].fetch_sub(slot.size, Ordering::Relaxed);
                    live_rounded[owner].fetch_sub(rounded(slot.size), Ordering::Relaxed);
                };
                for w in 0..args.waves {
                    for _ in 0..args.objects * WAVES[w % WAVES.len()] {
                        alloc_one(&mut rng);
                    }
                    if barrier.wait().is_leader() {
                        let sum = |v: &[AtomicUsize]| -> usize {
                            v.iter().map(|x| x.load(Ordering::Relaxed)).sum()
                        };
                        peak_live.fetch_max(sum(live), Ordering::Relaxed);
                        peak_rounded.fetch_max(sum(live_rounded), Ordering::Relaxed);
                    }
                    barrier.wait();
                    // Free most of the neighbour's blocks (cross-thread frees, as in services).
                    let owner = (me + 1) % t;
                    let mut v = held[owner].lock().unwrap();
                    let mut i = 0;
                    while i < v.len() {
                        if rng.below(100) < FREED_PERCENT {
                            let slot = v.swap_remove(i);
                            free(slot, owner);
                        } else {
                            i += 1;
                        }
                    }
                    drop(v);
                    barrier.wait();
                }
                for slot in held[me].lock().unwrap().drain(..) {
                    free(slot, me);
                }
            });
        }
    });
    // Light use after the load (the workers have exited, their caches gone back): a pause
    // longer than the purge delays, then a few calls from one thread.
    std::thread::sleep(Duration::from_millis(60));
    let mut rng = Rng::new(0x5EED, u64::MAX);
    for _ in 0..args.light {
        let n = size(&mut rng, small_only);
        // SAFETY: a non-zero layout, freed at once with it.
        unsafe {
            let p = a.alloc(layout(n));
            assert!(!p.is_null(), "allocation failed");
            p.write_bytes(0x5A, n);
            a.dealloc(p, layout(n));
        }
    }
    let (after, peak) = rss();
    let after_trim_rss = trim().map(|()| rss().0.saturating_sub(base));
    let r = Result_ {
        peak_live: peak_live.load(Ordering::Relaxed),
        peak_rounded: peak_rounded.load(Ordering::Relaxed),
        peak_rss: peak.saturating_sub(base),
        after_rss: after.saturating_sub(base),
        after_trim_rss,
    };
    println!("{}", r.line());
}
