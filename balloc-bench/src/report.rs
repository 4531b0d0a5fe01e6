//! Turning runs into the report: medians and spreads, the text and Markdown tables, the CSV and
//! the SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::latency::Latency;
use crate::registry::{AllocKind, Workload};
use crate::workload::Outcome;

/// Every line of the printed report and of `results.md` (tables included) fits this many
/// columns: a wider table is split into parts by thread count.
pub const WIDTH: usize = 100;

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// It finished: its outcome is a measurement.
    Done,
    /// No result within the time limit of a run; its worker process was killed.
    Stalled,
    /// Its worker process died before answering (a panic or an abort).
    Crashed,
}

impl Status {
    /// The word in tables and in the CSV's `status` column.
    pub fn word(self) -> &'static str {
        match self {
            Status::Done => "ok",
            Status::Stalled => "stalled",
            Status::Crashed => "crashed",
        }
    }
}

/// One run of one workload on one allocator at one thread count.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The workload.
    pub workload: Workload,
    /// The allocator.
    pub alloc: AllocKind,
    /// Threads.
    pub threads: usize,
    /// Repetition number, from 0.
    pub rep: usize,
    /// How the run ended; `outcome` means something only when it is [`Status::Done`].
    pub status: Status,
    /// What was measured (all zero for a run that did not finish).
    pub outcome: Outcome,
}

impl Sample {
    /// The number the report is about: Mops/s, or for `fragmentation` the requested share live
    /// at the first out-of-memory, in percent; `None` for a run that did not finish.
    pub fn value(&self) -> Option<f64> {
        (self.status == Status::Done).then(|| match &self.outcome.frag {
            Some(f) => f.requested_share * 100.0,
            None => self.outcome.mops(),
        })
    }
}

/// Median and spread of the repetitions of one (workload, allocator, threads).
///
/// Runs that did not finish (stalled or crashed) are counted, and left out of every number.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Median, smallest and largest [`Sample::value`] of the finished runs (`None`: none
    /// finished).
    pub value: Option<Spread>,
    /// Runs, finished or not.
    pub runs: usize,
    /// Runs that stalled.
    pub stalled: usize,
    /// Runs whose worker crashed.
    pub crashed: usize,
    /// Failed allocations over the finished repetitions (throughput workloads).
    pub errors: u64,
    /// `fragmentation`: median share of the pool in allocated blocks, in percent.
    pub allocated_median: Option<f64>,
    /// Throughput workloads: this thread count's throughput over the same allocator's at the
    /// smallest thread count, as [`Spread`] over repetitions paired by number (`None` at the
    /// smallest count itself, or where no repetition has both finished).
    pub scaling: Option<Spread>,
    /// Latency of the sampled calls: the median over the finished repetitions of each
    /// percentile, and the largest `max` (`None` where no run sampled any).
    pub lat: Option<Latency>,
}

impl Cell {
    /// Runs that did not finish.
    pub fn unfinished(&self) -> usize {
        self.stalled + self.crashed
    }

    /// What stands where the number would be when no run finished.
    fn failure_word(&self) -> &'static str {
        match (self.stalled, self.crashed) {
            (_, 0) => "stalled",
            (0, _) => "crashed",
            _ => "stalled/crashed",
        }
    }

    /// A note on the runs that did not finish, such as ` (2/5 stalled)`, or nothing.
    fn unfinished_note(&self) -> String {
        let mut parts = Vec::new();
        if self.stalled > 0 {
            parts.push(format!("{}/{} stalled", self.stalled, self.runs));
        }
        if self.crashed > 0 {
            parts.push(format!("{}/{} crashed", self.crashed, self.runs));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}

/// Median, smallest and largest of a handful of numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// Median.
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`, or `None` when there are none.
    pub fn of(values: Vec<f64>) -> Option<Spread> {
        if values.is_empty() {
            return None;
        }
        Some(Spread {
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            median: median(values),
        })
    }
}

/// Cells keyed by (workload, allocator, threads).
pub type Cells = BTreeMap<(Workload, AllocKind, usize), Cell>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Groups the samples into cells.
pub fn summarize(samples: &[Sample]) -> Cells {
    let mut groups: BTreeMap<_, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.workload, s.alloc, s.threads))
            .or_default()
            .push(s);
    }
    // Per (workload, allocator): the smallest thread count run, and its value per repetition.
    let mut base: BTreeMap<(Workload, AllocKind), (usize, BTreeMap<usize, f64>)> = BTreeMap::new();
    // The smallest count is chosen among all runs, finished or not, so that a stalled 1-thread
    // cell leaves the scaling table empty rather than moving its base to 2 threads.
    for s in samples.iter().filter(|s| s.workload.is_throughput()) {
        let entry = base
            .entry((s.workload, s.alloc))
            .or_insert_with(|| (s.threads, BTreeMap::new()));
        if s.threads < entry.0 {
            *entry = (s.threads, BTreeMap::new());
        }
        if let (true, Some(v)) = (s.threads == entry.0, s.value()) {
            entry.1.insert(s.rep, v);
        }
    }
    groups
        .into_iter()
        .map(|(key, ss)| {
            let scaling = base.get(&(key.0, key.1)).and_then(|(n0, by_rep)| {
                if key.2 == *n0 {
                    return None;
                }
                let ratios = ss
                    .iter()
                    .filter_map(|s| Some(s.value()? / by_rep.get(&s.rep)?))
                    .collect();
                Spread::of(ratios)
            });
            let done = || ss.iter().filter(|s| s.status == Status::Done);
            let count = |status| ss.iter().filter(|s| s.status == status).count();
            let allocated: Vec<f64> = done()
                .filter_map(|s| s.outcome.frag.map(|f| f.allocated_share * 100.0))
                .filter(|v| !v.is_nan())
                .collect();
            let lats: Vec<Latency> = done().filter_map(|s| s.outcome.lat).collect();
            let lat = (!lats.is_empty()).then(|| {
                let med = |f: fn(&Latency) -> u64| {
                    median(lats.iter().map(|l| f(l) as f64).collect()).round() as u64
                };
                Latency {
                    samples: lats.iter().map(|l| l.samples).sum(),
                    p50: med(|l| l.p50),
                    p99: med(|l| l.p99),
                    p999: med(|l| l.p999),
                    max: lats.iter().map(|l| l.max).max().unwrap_or(0),
                }
            });
            let cell = Cell {
                value: Spread::of(ss.iter().filter_map(|s| s.value()).collect()),
                lat,
                runs: ss.len(),
                stalled: count(Status::Stalled),
                crashed: count(Status::Crashed),
                errors: done().map(|s| s.outcome.errors).sum(),
                allocated_median: (!allocated.is_empty()).then(|| median(allocated)),
                scaling,
            };
            (key, cell)
        })
        .collect()
}

/// What the tables are drawn from: the cells and the order of rows and columns.
pub struct Report<'a> {
    /// The cells.
    pub cells: &'a Cells,
    /// Workloads in order.
    pub workloads: &'a [Workload],
    /// Allocators in order; the first one present in a workload is its ratios' reference.
    pub allocs: &'a [AllocKind],
    /// Thread counts in order.
    pub threads: &'a [usize],
    /// CPUs of the machine: thread counts above it are oversubscribed (marked in the chart).
    pub cpus: usize,
}

/// One table of the report: a title, rows of cells (a header row first), and a note.
struct Table {
    title: String,
    rows: Vec<Vec<String>>,
    note: Option<String>,
}

/// A measured number with three significant digits or so (`1234`, `12.3`, `1.23`).
pub fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Report<'_> {
    fn rows(&self, w: Workload) -> Vec<AllocKind> {
        self.allocs
            .iter()
            .copied()
            .filter(|&a| {
                self.threads
                    .iter()
                    .any(|&n| self.cells.contains_key(&(w, a, n)))
            })
            .collect()
    }

    /// The text of one table cell.
    fn cell_text(&self, w: Workload, a: AllocKind, n: usize, reference: AllocKind) -> String {
        let Some(c) = self.cells.get(&(w, a, n)) else {
            return "-".into();
        };
        let Some(v) = c.value else {
            return c.failure_word().into();
        };
        let mut s = if w.is_throughput() {
            let mut s = format!(
                "{} [{}–{}]",
                fmt_num(v.median),
                fmt_num(v.min),
                fmt_num(v.max)
            );
            if let Some(r) = self.cells.get(&(w, reference, n)).and_then(|r| r.value) {
                let _ = write!(s, " {:.2}×", v.median / r.median);
            }
            if c.errors > 0 {
                let _ = write!(s, " ({} failed allocs!)", c.errors);
            }
            s
        } else {
            let mut s = format!("{:.1}% [{:.1}–{:.1}]", v.median, v.min, v.max);
            if let Some(a) = c.allocated_median {
                let _ = write!(s, " blocks {a:.1}%");
            }
            s
        };
        s.push_str(&c.unfinished_note());
        s
    }

    fn title(w: Workload) -> String {
        if w.is_throughput() {
            format!(
                "{}: throughput, Mops/s (higher is better): median [min–max], ratio to row 1",
                w.id()
            )
        } else {
            format!(
                "{}: share of the pool live at the first out-of-memory (higher is better)",
                w.id()
            )
        }
    }

    /// The scaling table's cell: throughput at `n` threads over the smallest thread count's.
    fn scaling_text(&self, w: Workload, a: AllocKind, n: usize) -> String {
        let Some(c) = self.cells.get(&(w, a, n)) else {
            return "-".into();
        };
        let s = match c.scaling {
            _ if c.value.is_none() => return c.failure_word().into(),
            Some(s) => format!("{:.2}× [{:.2}–{:.2}]", s.median, s.min, s.max),
            None if Some(&n) == self.threads.iter().min() => "1".into(),
            None => "-".into(),
        };
        s + &c.unfinished_note()
    }

    /// The note under a table where a run did not finish.
    fn unfinished_note(&self, w: Workload) -> Option<String> {
        let cells = self.cells.iter().filter(|(k, _)| k.0 == w).map(|(_, c)| c);
        let (stalled, crashed) = cells.fold((0, 0), |(s, c), x| (s + x.stalled, c + x.crashed));
        if stalled + crashed == 0 {
            return None;
        }
        let mut note = String::from("Note: ");
        if stalled > 0 {
            note.push_str(
                "'stalled' = no result within the time limit of a run; its worker process was \
                 killed. ",
            );
        }
        if crashed > 0 {
            note.push_str("'crashed' = the run's worker process died before answering. ");
        }
        note.push_str(
            "Such runs are left out of the medians, min–max, ratios and scaling pairs; \
             'k/n' counts them among the runs of a cell.",
        );
        Some(note)
    }

    /// The latency table of a workload (none when no run sampled any): one row per allocator
    /// and thread count.
    fn latency_table(&self, w: Workload, rows: &[AllocKind]) -> Option<Table> {
        let mut t = vec![["allocator", "threads", "p50", "p99", "p99.9", "max"]
            .map(str::to_owned)
            .to_vec()];
        for &a in rows {
            for &n in self.threads {
                let Some(c) = self.cells.get(&(w, a, n)) else {
                    continue;
                };
                let Some(l) = c.lat else {
                    continue;
                };
                t.push(vec![
                    a.label().to_owned(),
                    n.to_string(),
                    l.p50.to_string(),
                    l.p99.to_string(),
                    l.p999.to_string(),
                    format!("{}{}", l.max, c.unfinished_note()),
                ]);
            }
        }
        (t.len() > 1).then(|| Table {
            title: format!(
                "{}: latency of one allocator call (alloc or free), ns (lower is better)",
                w.id()
            ),
            rows: t,
            note: None,
        })
    }

    /// Every table: per workload its main table, then for a throughput workload run at more than
    /// one thread count its speedup table, then its latency table.
    fn tables(&self) -> Vec<Table> {
        let header: Vec<String> = std::iter::once("allocator".to_owned())
            .chain(self.threads.iter().map(|n| format!("{n} thr")))
            .collect();
        let mut out = Vec::new();
        for &w in self.workloads {
            let rows = self.rows(w);
            let Some(&reference) = rows.first() else {
                continue;
            };
            let table = |cell: &dyn Fn(AllocKind, usize) -> String| {
                let mut t = vec![header.clone()];
                for &a in &rows {
                    t.push(
                        std::iter::once(a.label().to_owned())
                            .chain(self.threads.iter().map(|&n| cell(a, n)))
                            .collect(),
                    );
                }
                t
            };
            let note = self.unfinished_note(w);
            out.push(Table {
                title: Self::title(w),
                rows: table(&|a, n| self.cell_text(w, a, n, reference)),
                note: note.clone(),
            });
            if w.is_throughput() && self.threads.len() > 1 {
                let n0 = self.threads.iter().min().copied().unwrap_or(1);
                out.push(Table {
                    title: format!(
                        "{}: speedup, throughput at n threads / at {n0}: median [min–max]",
                        w.id()
                    ),
                    rows: table(&|a, n| self.scaling_text(w, a, n)),
                    note,
                });
            }
            out.extend(self.latency_table(w, &rows));
        }
        out
    }

    /// Plain-text tables, columns aligned, each line at most [`WIDTH`] columns.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for t in self.tables() {
            for (part, rows) in split_columns(&t.rows, 2, 2).iter().enumerate() {
                let widths = column_widths(rows);
                let _ = writeln!(out);
                for line in wrap(&part_title(&t.title, part), WIDTH) {
                    let _ = writeln!(out, "{line}");
                }
                for row in rows {
                    let line: Vec<String> = row
                        .iter()
                        .zip(&widths)
                        .enumerate()
                        .map(|(i, (c, &wd))| {
                            if i == 0 {
                                format!("{c:<wd$}")
                            } else {
                                format!("{c:>wd$}")
                            }
                        })
                        .collect();
                    let _ = writeln!(out, "  {}", line.join("  ").trim_end());
                }
            }
            if let Some(note) = t.note {
                for line in wrap(&note, WIDTH - 2) {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        out
    }

    /// Markdown tables, each source line at most [`WIDTH`] columns (notes are wrapped
    /// paragraphs).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for t in self.tables() {
            let escaped: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|r| r.iter().map(|c| c.replace('<', "\\<")).collect())
                .collect();
            for (part, rows) in split_columns(&escaped, 2, 3).iter().enumerate() {
                let _ = writeln!(out, "\n#### {}\n", part_title(&t.title, part));
                for (i, row) in rows.iter().enumerate() {
                    let _ = writeln!(out, "| {} |", row.join(" | "));
                    if i == 0 {
                        let _ = writeln!(out, "|---|{}", "---:|".repeat(row.len() - 1));
                    }
                }
            }
            if let Some(note) = t.note {
                let _ = writeln!(out);
                for line in wrap(&note, WIDTH) {
                    let _ = writeln!(out, "{line}");
                }
            }
        }
        out
    }
}

/// The title of part `part` of a table split by [`split_columns`]: a later part repeats the
/// title up to its first comma ("pair-64: throughput (continued)"), so that a heading stays short.
fn part_title(title: &str, part: usize) -> String {
    if part == 0 {
        title.to_owned()
    } else {
        format!("{} (continued)", title.split(',').next().unwrap_or(title))
    }
}

/// The widest cell of each column.
fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect()
}

/// Splits a table into parts that each fit [`WIDTH`] columns, every part keeping the first
/// column: a line is `margin` columns plus the cells with `sep` columns between them.
fn split_columns(rows: &[Vec<String>], margin: usize, sep: usize) -> Vec<Vec<Vec<String>>> {
    let widths = column_widths(rows);
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut used = usize::MAX;
    for (i, &w) in widths.iter().enumerate().skip(1) {
        if used.saturating_add(sep + w) > WIDTH {
            parts.push(Vec::new());
            used = margin + widths[0];
        }
        parts.last_mut().expect("one part").push(i);
        used += sep + w;
    }
    parts
        .iter()
        .map(|cols| {
            rows.iter()
                .map(|r| {
                    std::iter::once(r[0].clone())
                        .chain(cols.iter().map(|&i| r[i].clone()))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// `text` broken at spaces into lines of at most `width` characters (a longer word stays whole).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line");
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(word.to_owned());
        } else {
            if len > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// Every sample, one line each. A run that did not finish has its `status` (`stalled`,
/// `crashed`) and empty measurement columns; the latency columns are empty for runs that sampled
/// none (`ring-only`, which makes no allocator call).
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "workload,allocator,threads,rep,ops,errors,seconds,mops,live_requested_share,\
         live_allocated_share,lat_samples,lat_p50_ns,lat_p99_ns,lat_p999_ns,lat_max_ns,status\n",
    );
    for s in samples {
        if s.status != Status::Done {
            let _ = writeln!(
                out,
                "{},{},{},{},,,,,,,,,,,,{}",
                s.workload.id(),
                s.alloc.id(),
                s.threads,
                s.rep,
                s.status.word()
            );
            continue;
        }
        let o = &s.outcome;
        let (req, alloc) = o.frag.map_or((String::new(), String::new()), |f| {
            let a = if f.allocated_share.is_nan() {
                String::new()
            } else {
                format!("{:.6}", f.allocated_share)
            };
            (format!("{:.6}", f.requested_share), a)
        });
        let mops = if o.frag.is_some() {
            String::new()
        } else {
            format!("{:.4}", o.mops())
        };
        let lat = o.lat.map_or_else(
            || ",,,,".to_owned(),
            |l| format!("{},{},{},{},{}", l.samples, l.p50, l.p99, l.p999, l.max),
        );
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.6},{},{},{},{},{}",
            s.workload.id(),
            s.alloc.id(),
            s.threads,
            s.rep,
            o.ops,
            o.errors,
            o.elapsed.as_secs_f64(),
            mops,
            req,
            alloc,
            lat,
            s.status.word()
        );
    }
    out
}

/// The guide at the top of `results.md`: what each number means, then each workload, as list
/// items (unwrapped; see [`bullets`]).
pub fn guide(workloads: &[Workload]) -> (Vec<String>, Vec<String>) {
    let mut how = vec![
        "**Op**: one allocation and the free that matches it. **Throughput** is in Mops/s \
         (millions of ops a second, all threads together): **higher is better**. Cells: median \
         [min–max] over the repetitions, then the ratio of the median to the first row's."
            .to_owned(),
        "**Speedup**: throughput at n threads over the same allocator's at the fewest threads, \
         per repetition (a repetition runs every thread count a few seconds apart), as median \
         [min–max]. Perfect scaling equals the ratio of thread counts, up to the number of CPUs; \
         above it, threads share cores."
            .to_owned(),
        format!(
            "**Latency**: time of one allocator call, an allocation or a free, in ns: **lower is \
             better**. About one call in {} of every thread is timed alone (the gaps between \
             timed calls drawn at random), and the median cost of an empty timed interval, \
             measured by each thread before it starts, is subtracted; results under about 10 ns \
             are within the clock's jitter. p50, p99 and p99.9 are medians over the \
             repetitions; max is the slowest call of all of them. With more threads than CPUs \
             the tail includes time slices lost to preemption.",
            crate::latency::SAMPLE_EVERY
        ),
    ];
    if workloads.contains(&Workload::Fragmentation) {
        how.push(
            "**Fragmentation**: bytes the callers asked for, live at the first out-of-memory, as \
             a share of the pool (higher is better); 'blocks' is the share in allocated blocks, as \
             the allocator counts them (the rest of a block is rounding). Its latency table \
             times the calls of a pool filling up, the last one failing."
                .to_owned(),
        );
    }
    how.push(
        "**Chart**: `scaling.svg`, next to this file: per workload, throughput on linear axes and \
         speedup with the ideal line; thread counts above the CPU count shaded; bars min–max. \
         Every run, one line each: `results.csv`."
            .to_owned(),
    );
    let what = workloads
        .iter()
        .map(|w| format!("`{}`: {}.", w.id(), w.about()))
        .collect();
    (how, what)
}

/// Markdown list items, each wrapped to [`WIDTH`] columns.
pub fn bullets(items: &[String]) -> String {
    let mut out = String::new();
    for item in items {
        for (i, line) in wrap(item, WIDTH - 2).iter().enumerate() {
            let _ = writeln!(out, "{}{line}", if i == 0 { "- " } else { "  " });
        }
    }
    out
}

/// Where the report goes: `$CARGO_TARGET_DIR/balloc-report`, else `<workspace>/target/balloc-report`.
pub fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target")
        });
    target.join("balloc-report")
}

/// How a line is marked.
#[derive(Clone, Copy)]
enum Mark {
    Dot,
    Triangle,
    Cross,
}

/// Colour, line width and marker of an allocator's line: every allocator its own hue (the
/// Okabe–Ito palette, which stays distinct for colour-blind readers, and three more), balloc's
/// two lines black and blue with dots, the C allocators with triangles, the locked buddy
/// allocators with crosses.
fn style(a: AllocKind) -> (RGBColor, u32, Mark) {
    match a {
        AllocKind::BallocLocal => (RGBColor(0, 0, 0), 3, Mark::Dot),
        AllocKind::BallocGlobal => (RGBColor(0, 114, 178), 3, Mark::Dot),
        AllocKind::MutexBuddy => (RGBColor(204, 121, 167), 2, Mark::Cross),
        AllocKind::LockedHeap => (RGBColor(150, 150, 150), 2, Mark::Cross),
        AllocKind::System => (RGBColor(140, 86, 75), 2, Mark::Triangle),
        AllocKind::Mimalloc => (RGBColor(213, 94, 0), 2, Mark::Triangle),
        AllocKind::Jemalloc => (RGBColor(0, 158, 115), 2, Mark::Triangle),
        AllocKind::Snmalloc => (RGBColor(148, 52, 196), 2, Mark::Triangle),
        AllocKind::RingOnly => (RGBColor(188, 189, 34), 2, Mark::Dot),
    }
}

/// Draws marker `$mark` at `$at` in `$color` on `$area` (a chart or a drawing area).
macro_rules! draw_mark {
    ($area:expr, $mark:expr, $at:expr, $color:expr) => {
        match $mark {
            Mark::Dot => $area.draw(&Circle::new($at, 4, $color.filled()))?,
            Mark::Triangle => $area.draw(&TriangleMarker::new($at, 5, $color.filled()))?,
            Mark::Cross => $area.draw(&Cross::new($at, 4, $color.stroke_width(2)))?,
        }
    };
}

/// One line of a panel: the allocator and its points `(x, median, min, max)`, as runs of
/// neighbouring thread counts (a line is not drawn across a cell left out).
type Series = (AllocKind, Vec<Vec<(f64, f64, f64, f64)>>);

/// The series of workload `w`: `value` picks the spread of a cell (throughput or speedup).
/// Each allocator's points sit slightly apart on the x axis so that error bars do not overlap.
fn series(report: &Report<'_>, w: Workload, value: fn(&Cell) -> Option<Spread>) -> Vec<Series> {
    let allocs = report.rows(w);
    let k = allocs.len() as f64;
    allocs
        .iter()
        .enumerate()
        .map(|(j, &a)| {
            let dx = (j as f64 - (k - 1.0) / 2.0) * 0.03;
            let mut segments = vec![Vec::new()];
            for (i, &n) in report.threads.iter().enumerate() {
                let point = report
                    .cells
                    .get(&(w, a, n))
                    .filter(|c| c.unfinished() == 0)
                    .and_then(value);
                match point {
                    Some(v) => segments.last_mut().expect("one").push((
                        i as f64 + dx,
                        v.median,
                        v.min,
                        v.max,
                    )),
                    None if segments.last().is_some_and(|s| !s.is_empty()) => {
                        segments.push(Vec::new())
                    }
                    None => {}
                }
            }
            (a, segments)
        })
        .collect()
}

/// The speedup of a cell, 1 at the smallest thread count itself.
fn speedup(c: &Cell) -> Option<Spread> {
    c.scaling.or(c.value.map(|_| Spread {
        median: 1.0,
        min: 1.0,
        max: 1.0,
    }))
}

/// Draws the chart: for each throughput workload a row of two panels, throughput (linear axes)
/// and speedup over the smallest thread count (with the ideal, linear speedup); thread counts
/// above the machine's CPUs shaded; min–max error bars; one legend for all panels at the top.
/// `fragmentation` is a table only. A cell with a run that did not finish is left out: its
/// median would leave out exactly the runs that went wrong.
///
/// # Errors
/// When the file cannot be written.
pub fn svg(
    report: &Report<'_>,
    path: &Path,
    subtitle: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let workloads: Vec<Workload> = report
        .workloads
        .iter()
        .copied()
        .filter(|w| w.is_throughput() && !report.rows(*w).is_empty())
        .collect();
    let allocs: Vec<AllocKind> = report
        .allocs
        .iter()
        .copied()
        .filter(|&a| workloads.iter().any(|&w| report.rows(w).contains(&a)))
        .collect();
    let (width, head, row_h) = (1200u32, 190u32, 340u32);
    let root = SVGBackend::new(path, (width, head + row_h * workloads.len().max(1) as u32))
        .into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(head);
    top.draw(&Text::new(
        "balloc scaling report",
        (20, 12),
        ("sans-serif", 26).into_font(),
    ))?;
    for (i, line) in wrap(subtitle, 150).iter().enumerate() {
        top.draw(&Text::new(
            line.clone(),
            (20, 46 + 18 * i as i32),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    // The legend: every allocator, the ideal line, the shading.
    let font = ("sans-serif", 14).into_font();
    let per_row = 5;
    let mut entry = 0;
    let place = |entry: &mut usize| {
        let (r, c) = (*entry / per_row, *entry % per_row);
        *entry += 1;
        (20 + 232 * c as i32, 100 + 22 * r as i32)
    };
    for &a in &allocs {
        let (color, w, mark) = style(a);
        let (x, y) = place(&mut entry);
        top.draw(&PathElement::new(
            vec![(x, y), (x + 30, y)],
            color.stroke_width(w),
        ))?;
        draw_mark!(top, mark, (x + 15, y), color);
        top.draw(&Text::new(a.label(), (x + 38, y - 8), font.clone()))?;
    }
    let (x, y) = place(&mut entry);
    top.draw(&PathElement::new(
        vec![(x, y), (x + 8, y)],
        BLACK.stroke_width(1),
    ))?;
    top.draw(&PathElement::new(
        vec![(x + 14, y), (x + 22, y)],
        BLACK.stroke_width(1),
    ))?;
    top.draw(&Text::new(
        "ideal speedup (linear)",
        (x + 38, y - 8),
        font.clone(),
    ))?;
    let shade = RGBColor(225, 225, 225);
    if report.threads.iter().any(|&n| n > report.cpus) {
        let (x, y) = place(&mut entry);
        top.draw(&Rectangle::new(
            [(x, y - 8), (x + 30, y + 8)],
            shade.filled(),
        ))?;
        top.draw(&Text::new(
            format!("oversubscribed: more threads than the {} CPUs", report.cpus),
            (x + 38, y - 8),
            font.clone(),
        ))?;
    }
    let (_, y) = place(&mut entry);
    top.draw(&Text::new(
        "bars: min–max over the repetitions; points: median",
        (20, y + 14),
        font,
    ))?;

    let threads = report.threads;
    let last_x = threads.len().saturating_sub(1) as f64;
    let x_range = -0.4..last_x + 0.4;
    let x_fmt = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < threads.len() {
            threads[i as usize].to_string()
        } else {
            String::new()
        }
    };
    let areas = body.split_evenly((workloads.len().max(1), 2));
    for (row, &w) in workloads.iter().enumerate() {
        for panel in 0..2 {
            let area = &areas[row * 2 + panel];
            let data = if panel == 0 {
                series(report, w, |c| c.value)
            } else {
                series(report, w, speedup)
            };
            let hi = data
                .iter()
                .flat_map(|s| s.1.iter().flatten().map(|p| p.3))
                .fold(0f64, f64::max);
            if hi <= 0.0 {
                continue;
            }
            let n0 = threads.iter().copied().min().unwrap_or(1) as f64;
            // The ideal line's top: as far as the data, or the ideal at the CPU count.
            let ideal_cap = threads
                .iter()
                .filter(|&&n| n <= report.cpus)
                .map(|&n| n as f64 / n0)
                .fold(1f64, f64::max);
            let y_top = if panel == 0 {
                hi * 1.08
            } else {
                hi.max(ideal_cap) * 1.08
            };
            let (caption, y_desc) = if panel == 0 {
                (format!("{}: throughput", w.id()), "Mops/s")
            } else {
                (
                    format!("{}: speedup over {} thread(s)", w.id(), n0),
                    "× own throughput at fewest threads",
                )
            };
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(34)
                .y_label_area_size(60)
                .build_cartesian_2d(x_range.clone(), 0f64..y_top)?;
            for (i, &n) in threads.iter().enumerate() {
                if n > report.cpus {
                    let (a, b) = (i as f64 - 0.5, i as f64 + 0.5);
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(a.max(x_range.start), 0.0), (b.min(x_range.end), y_top)],
                        shade.filled(),
                    )))?;
                }
            }
            chart
                .configure_mesh()
                .x_labels(threads.len() * 4)
                .x_label_formatter(&x_fmt)
                .y_label_formatter(&|y: &f64| fmt_num(*y))
                .disable_x_mesh()
                .x_desc("threads")
                .y_desc(y_desc)
                .draw()?;
            if panel == 1 {
                // Linear speedup, up to where it leaves the panel.
                let mut ideal: Vec<(f64, f64)> = Vec::new();
                for (i, &n) in threads.iter().enumerate() {
                    let y = n as f64 / n0;
                    // Stop a dash short of the top, so that no dash crosses it.
                    let y_top = y_top * 0.97;
                    if y <= y_top {
                        ideal.push((i as f64, y));
                        continue;
                    }
                    if let Some(&(px, py)) = ideal.last() {
                        ideal.push((px + (y_top - py) / (y - py), y_top));
                    }
                    break;
                }
                chart.draw_series(DashedLineSeries::new(ideal, 8, 6, BLACK.stroke_width(1)))?;
            }
            for (a, segments) in &data {
                let (color, width, mark) = style(*a);
                for pts in segments {
                    chart.draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.0, p.1)),
                        color.stroke_width(width),
                    ))?;
                    chart.draw_series(pts.iter().map(|p| {
                        ErrorBar::new_vertical(p.0, p.2, p.1, p.3, color.stroke_width(1), 8)
                    }))?;
                    for p in pts {
                        draw_mark!(chart.plotting_area(), mark, (p.0, p.1), color);
                    }
                }
            }
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(alloc: AllocKind, threads: usize, rep: usize, ops: u64) -> Sample {
        Sample {
            workload: Workload::Pair64,
            alloc,
            threads,
            rep,
            status: Status::Done,
            outcome: Outcome {
                ops,
                errors: 0,
                elapsed: Duration::from_secs(1),
                frag: None,
                lat: Some(Latency {
                    samples: 100,
                    p50: 20 + threads as u64,
                    p99: 300,
                    p999: 4_000,
                    max: ops / 1000,
                }),
            },
        }
    }

    fn stalled(alloc: AllocKind, threads: usize, rep: usize) -> Sample {
        Sample {
            status: Status::Stalled,
            outcome: Outcome::default(),
            ..sample(alloc, threads, rep, 0)
        }
    }

    #[test]
    fn medians_spreads_and_ratios() {
        let samples = vec![
            sample(AllocKind::BallocLocal, 1, 0, 10_000_000),
            sample(AllocKind::BallocLocal, 1, 1, 30_000_000),
            sample(AllocKind::BallocLocal, 1, 2, 20_000_000),
            sample(AllocKind::System, 1, 0, 5_000_000),
        ];
        let cells = summarize(&samples);
        let c = &cells[&(Workload::Pair64, AllocKind::BallocLocal, 1)];
        assert_eq!(
            c.value,
            Some(Spread {
                median: 20.0,
                min: 10.0,
                max: 30.0
            })
        );
        let r = Report {
            cells: &cells,
            workloads: &[Workload::Pair64],
            allocs: &[AllocKind::BallocLocal, AllocKind::System],
            threads: &[1, 2],
            cpus: 1,
        };
        let text = r.text();
        assert!(text.contains("20.0 [10.0–30.0] 1.00×"), "{text}");
        assert!(text.contains("5.00 [5.00–5.00] 0.25×"), "{text}");
        assert!(r
            .markdown()
            .contains("| system (glibc) | 5.00 [5.00–5.00] 0.25× | - |"));
        assert_eq!(csv(&samples).lines().count(), 5);
    }

    #[test]
    fn wide_tables_are_split_to_fit() {
        let threads = [1, 2, 4, 8, 16, 32, 64];
        let samples: Vec<Sample> = threads
            .iter()
            .flat_map(|&n| {
                [
                    sample(AllocKind::LockedHeap, n, 0, 1_234_567 * n as u64),
                    sample(AllocKind::System, n, 0, 987_654_321 * n as u64),
                ]
            })
            .collect();
        let cells = summarize(&samples);
        let r = Report {
            cells: &cells,
            workloads: &[Workload::Pair64],
            allocs: &[AllocKind::LockedHeap, AllocKind::System],
            threads: &threads,
            cpus: 4,
        };
        for text in [r.text(), r.markdown()] {
            for line in text.lines() {
                assert!(line.chars().count() <= WIDTH, "{line}\n{text}");
            }
            // Every thread count still has its column, in some part.
            for n in threads {
                assert!(text.contains(&format!("{n} thr")), "{text}");
            }
            assert!(text.contains("pair-64: throughput (continued)"), "{text}");
        }
        let md = r.markdown();
        assert!(
            md.contains("| bsa LockedHeap\\<32> | 1 | 21 | 300 | 4000 | 1234 |"),
            "{md}"
        );
    }

    #[test]
    fn wrap_keeps_words_and_width() {
        let lines = wrap("aaa bbb ccc dddddddddd e", 7);
        assert_eq!(lines, ["aaa bbb", "ccc", "dddddddddd", "e"]);
    }

    #[test]
    fn scaling_pairs_repetitions_by_number() {
        // Repetition 0 ran in a slow phase for both thread counts, repetition 1 in a fast one:
        // paired, each shows 1.5×; the ratio of the medians would say 2.0×.
        let samples = vec![
            sample(AllocKind::BallocLocal, 1, 0, 10_000_000),
            sample(AllocKind::BallocLocal, 2, 0, 15_000_000),
            sample(AllocKind::BallocLocal, 1, 1, 20_000_000),
            sample(AllocKind::BallocLocal, 2, 1, 30_000_000),
            sample(AllocKind::BallocLocal, 1, 2, 10_000_000),
            sample(AllocKind::BallocLocal, 2, 2, 30_000_000),
            // No 1-thread run: no scaling figure.
            sample(AllocKind::System, 2, 0, 5_000_000),
        ];
        let cells = summarize(&samples);
        assert_eq!(
            cells[&(Workload::Pair64, AllocKind::BallocLocal, 1)].scaling,
            None
        );
        assert_eq!(
            cells[&(Workload::Pair64, AllocKind::BallocLocal, 2)].scaling,
            Some(Spread {
                median: 1.5,
                min: 1.5,
                max: 3.0
            })
        );
        let r = Report {
            cells: &cells,
            workloads: &[Workload::Pair64],
            allocs: &[AllocKind::BallocLocal, AllocKind::System],
            threads: &[1, 2],
            cpus: 1,
        };
        let text = r.text();
        assert!(text.contains("pair-64: speedup"), "{text}");
        assert!(text.contains("1.50× [1.50–3.00]"), "{text}");
        let md = r.markdown();
        assert!(md.contains("| system (glibc) | - | - |"), "{md}");
        assert!(
            md.contains("| balloc LocalCache | 1 | 1.50× [1.50–3.00] |"),
            "{md}"
        );
    }

    #[test]
    fn stalled_runs_are_marked_and_left_out() {
        let samples = vec![
            sample(AllocKind::BallocLocal, 1, 0, 10_000_000),
            sample(AllocKind::BallocLocal, 1, 1, 20_000_000),
            // Every 2-thread run of balloc stalled.
            stalled(AllocKind::BallocLocal, 2, 0),
            stalled(AllocKind::BallocLocal, 2, 1),
            // One of system's 1-thread runs stalled: the other is its median, alone.
            stalled(AllocKind::System, 1, 0),
            sample(AllocKind::System, 1, 1, 5_000_000),
            sample(AllocKind::System, 2, 0, 8_000_000),
            sample(AllocKind::System, 2, 1, 12_000_000),
        ];
        let cells = summarize(&samples);
        let c = &cells[&(Workload::Pair64, AllocKind::BallocLocal, 2)];
        assert_eq!((c.value, c.runs, c.stalled, c.crashed), (None, 2, 2, 0));
        let c = &cells[&(Workload::Pair64, AllocKind::System, 1)];
        assert_eq!(c.value.map(|v| v.median), Some(5.0));
        // Only repetition 1 has both thread counts finished: 12 / 5.
        let c = &cells[&(Workload::Pair64, AllocKind::System, 2)];
        assert_eq!(c.scaling.map(|s| s.median), Some(2.4));
        let r = Report {
            cells: &cells,
            workloads: &[Workload::Pair64],
            allocs: &[AllocKind::BallocLocal, AllocKind::System],
            threads: &[1, 2],
            cpus: 1,
        };
        let md = r.markdown();
        assert!(
            md.contains("| balloc LocalCache | 15.0 [10.0–20.0] 1.00× | stalled |"),
            "{md}"
        );
        // No ratio against a reference that has no number.
        assert!(
            md.contains(
                "| system (glibc) | 5.00 [5.00–5.00] 0.33× (1/2 stalled) | 10.0 [8.00–12.0] |"
            ),
            "{md}"
        );
        assert!(md.contains("| balloc LocalCache | 1 | stalled |"), "{md}");
        assert!(
            md.contains("| system (glibc) | 1 (1/2 stalled) | 2.40× [2.40–2.40] |"),
            "{md}"
        );
        assert!(md.contains("left out of the medians"), "{md}");
        assert!(r.text().contains("stalled"));
        let csv = csv(&samples);
        assert!(csv.lines().next().unwrap().ends_with(",status"));
        assert!(
            csv.contains("\npair-64,balloc-local,2,0,,,,,,,,,,,,stalled\n"),
            "{csv}"
        );
        assert!(
            csv.contains(
                "\npair-64,system,1,1,5000000,0,1.000000,5.0000,,,100,21,300,4000,5000,ok\n"
            ),
            "{csv}"
        );
        // The chart leaves the stalled cells out and still draws.
        let dir = std::env::temp_dir().join(format!("balloc-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        svg(&r, &dir.join("scaling.svg"), "test").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
