//! Turning runs into the report: medians and spreads, the text and Markdown tables, the CSV and
//! the SVG chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;

use crate::registry::{AllocKind, Workload};
use crate::workload::Outcome;

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
            let cell = Cell {
                value: Spread::of(ss.iter().filter_map(|s| s.value()).collect()),
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
                "{}: Mops/s, median [min–max] of the repetitions, and ratio to the first row",
                w.id()
            )
        } else {
            format!(
                "{}: bytes live at the first out-of-memory, as a share of the pool (requested \
                 bytes; 'blocks' = in allocated blocks, as the allocator counts them)",
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

    /// Every table: per workload its main table, then for a throughput workload run at more than
    /// one thread count its scaling table. Each is a title, rows of cells (a header row first),
    /// and a note on runs that did not finish, if any.
    fn tables(&self) -> Vec<(String, Vec<Vec<String>>, Option<String>)> {
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
            out.push((
                Self::title(w),
                table(&|a, n| self.cell_text(w, a, n, reference)),
                note.clone(),
            ));
            if w.is_throughput() && self.threads.len() > 1 {
                let n0 = self.threads.iter().min().copied().unwrap_or(1);
                out.push((
                    format!(
                        "{}: scaling, throughput over the same allocator's at {n0} thread(s), \
                         median [min–max] of the ratios of runs of the same repetition",
                        w.id()
                    ),
                    table(&|a, n| self.scaling_text(w, a, n)),
                    note,
                ));
            }
        }
        out
    }

    /// Plain-text tables, columns aligned.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (title, table, note) in self.tables() {
            let widths: Vec<usize> = (0..table[0].len())
                .map(|i| {
                    table
                        .iter()
                        .map(|r| r[i].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let _ = writeln!(out, "\n{title}");
            for row in &table {
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
                let _ = writeln!(out, "  {}", line.join("  "));
            }
            if let Some(note) = note {
                let _ = writeln!(out, "  {note}");
            }
        }
        out
    }

    /// Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for (title, table, note) in self.tables() {
            let _ = writeln!(out, "\n#### {title}\n");
            for (i, row) in table.iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|c| c.replace('<', "\\<")).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
                if i == 0 {
                    let _ = writeln!(out, "|---|{}", "---:|".repeat(row.len() - 1));
                }
            }
            if let Some(note) = note {
                let _ = writeln!(out, "\n{note}");
            }
        }
        out
    }
}

/// Every sample, one line each. A run that did not finish has its `status` (`stalled`,
/// `crashed`) and empty measurement columns.
pub fn csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "workload,allocator,threads,rep,ops,errors,seconds,mops,live_requested_share,\
         live_allocated_share,status\n",
    );
    for s in samples {
        if s.status != Status::Done {
            let _ = writeln!(
                out,
                "{},{},{},{},,,,,,,{}",
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
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.6},{},{},{},{}",
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
            s.status.word()
        );
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

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 9] = [
        RGBColor(214, 39, 40),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(127, 127, 127),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(23, 190, 207),
        RGBColor(188, 189, 34),
    ];
    COLORS[i % COLORS.len()]
}

/// One line of a chart: the allocator's palette index, the allocator, and its (x, y) points
/// as runs of neighbouring thread counts (a line is not drawn across a cell left out).
type Series = (usize, AllocKind, Vec<Vec<(f64, f64)>>);

/// Draws each series as lines with dots, and the legend.
macro_rules! draw_lines {
    ($chart:ident, $series:ident) => {
        for (idx, a, segments) in &$series {
            let c = color(*idx);
            // The legend entry, on a series of its own: a line may have no point at all.
            $chart
                .draw_series(LineSeries::new(std::iter::empty(), c.stroke_width(2)))?
                .label(a.label())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                });
            for pts in segments {
                $chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?;
                $chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
        }
        $chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()?;
    };
}

/// Draws one chart per workload (throughput vs threads, one line per allocator; for
/// `fragmentation`, live share vs threads) into one SVG file. A cell with a run that did not
/// finish is left out: its median would leave out exactly the runs that went wrong.
///
/// # Errors
/// When the file cannot be written.
pub fn svg(
    report: &Report<'_>,
    path: &Path,
    subtitle: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let charts = report.workloads.len().max(1);
    let cols = 2;
    let rows = charts.div_ceil(cols);
    let root = SVGBackend::new(path, (1300, 80 + 460 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(80);
    top.titled("balloc scaling report", ("sans-serif", 28).into_font())?;
    top.draw(&Text::new(
        subtitle.to_owned(),
        (20, 50),
        ("sans-serif", 15).into_font(),
    ))?;
    let areas = body.split_evenly((rows, cols));
    let threads = report.threads;
    let last_x = threads.len().saturating_sub(1) as f64;
    for (&w, area) in report.workloads.iter().zip(areas.iter()) {
        let allocs = report.rows(w);
        let series: Vec<Series> = allocs
            .iter()
            .map(|&a| {
                let idx = AllocKind::ALL.iter().position(|&k| k == a).unwrap_or(0);
                let mut segments = vec![Vec::new()];
                for (i, &n) in threads.iter().enumerate() {
                    let point = report
                        .cells
                        .get(&(w, a, n))
                        .filter(|c| c.unfinished() == 0)
                        .and_then(|c| c.value);
                    match point {
                        Some(v) => segments.last_mut().expect("one").push((i as f64, v.median)),
                        None if segments.last().is_some_and(|s| !s.is_empty()) => {
                            segments.push(Vec::new())
                        }
                        None => {}
                    }
                }
                (idx, a, segments)
            })
            .collect();
        let values = series
            .iter()
            .flat_map(|s| s.2.iter().flat_map(|seg| seg.iter().map(|p| p.1)));
        let (lo, hi) = values.fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if !lo.is_finite() {
            continue;
        }
        let x_fmt = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 && (i as usize) < threads.len() {
                threads[i as usize].to_string()
            } else {
                String::new()
            }
        };
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(w.id(), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64);
        if w.is_throughput() {
            let mut chart = builder.build_cartesian_2d(
                -0.2..last_x + 0.2,
                (lo.max(1e-3) * 0.7..hi * 1.5).log_scale(),
            )?;
            chart
                .configure_mesh()
                .x_labels(threads.len() * 4)
                .x_label_formatter(&x_fmt)
                .x_desc("threads")
                .y_desc("Mops/s (log)")
                .draw()?;
            draw_lines!(chart, series);
        } else {
            let mut chart = builder.build_cartesian_2d(-0.2..last_x + 0.2, 0f64..100f64)?;
            chart
                .configure_mesh()
                .x_labels(threads.len() * 4)
                .x_label_formatter(&x_fmt)
                .x_desc("threads")
                .y_desc("live at first OOM, % of pool")
                .draw()?;
            draw_lines!(chart, series);
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
        };
        let text = r.text();
        assert!(text.contains("pair-64: scaling"), "{text}");
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
            csv.contains("\npair-64,balloc-local,2,0,,,,,,,stalled\n"),
            "{csv}"
        );
        assert!(
            csv.contains("\npair-64,system,1,1,5000000,0,1.000000,5.0000,,,ok\n"),
            "{csv}"
        );
        // The chart leaves the stalled cells out and still draws.
        let dir = std::env::temp_dir().join(format!("balloc-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        svg(&r, &dir.join("scaling.svg"), "test").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
