//! Runs in a worker process, so that a run that never ends can be stopped.
//!
//! A run whose threads hang (a deadlock or livelock inside an allocator) cannot be stopped from
//! inside its process: a thread cannot be cancelled. So the report does not run workloads
//! itself. It starts a **worker**, the same binary with the hidden `--worker` flag, sends it one
//! [`Request`] a line on its stdin, and reads one answer a line from its stdout. [`Worker::run`]
//! waits for the answer up to a time limit; past it, it kills the worker (`SIGKILL` takes every
//! thread with it), calls the run [`Ended::Stalled`], and the next request starts a fresh worker.
//!
//! A worker keeps its allocators ([`Instances`]) and thread pools ([`ThreadPools`]) for as long
//! as it lives, and the report sends the runs in the order it always did, so while nothing stalls
//! the runs are the ones a single process would do: same order, same long-lived allocators, the
//! measured loop untouched (the pipe is used only between runs). After a stall or a crash, the
//! next worker's allocators are new, and the report warms each cell up again before its next
//! measured run (see `main.rs`).
//!
//! Protocol, one line each way per run: `run <workload> <allocator> <threads> <duration ns>
//! <seed> <rep or warmup>`, answered by `done <ops> <errors> <elapsed ns> <requested share>
//! <allocated share> <latency>` (the shares `-` outside `fragmentation`; the latency
//! `<samples>/<p50>/<p99>/<p99.9>/<max>` in ns, or `-` for a run that sampled none). Other lines on
//! stdout are ignored.
//!
//! Test hook: a worker whose environment has `BALLOC_BENCH_STALL` set to a comma-separated list
//! of `workload/allocator/threads[/rep]` blocks the threads of every matching run forever, as a
//! hung allocator would (without `/rep`: every run of that cell, warm-ups included). The report
//! itself never reads it; `tests/stall.rs` uses it to prove that a stalled run cannot hang the
//! report.

use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::latency::Latency;
use crate::registry::{AllocKind, Instances, Run, ThreadPools, Workload};
use crate::workload::{Budget, Frag, Outcome};

/// The hidden flag that makes the binary a worker.
pub const WORKER_FLAG: &str = "--worker";

/// The test hook's environment variable (see the module docs).
pub const STALL_ENV: &str = "BALLOC_BENCH_STALL";

/// One run for a worker to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// What to run.
    pub workload: Workload,
    /// On which allocator.
    pub alloc: AllocKind,
    /// On how many threads.
    pub threads: usize,
    /// How long (ignored by `fragmentation`).
    pub duration: Duration,
    /// Seed for the random workloads.
    pub seed: u64,
    /// The repetition, or `None` for the unmeasured warm-up.
    pub rep: Option<usize>,
}

impl Request {
    /// The request as one protocol line (without the newline).
    pub fn to_line(&self) -> String {
        format!(
            "run {} {} {} {} {} {}",
            self.workload.id(),
            self.alloc.id(),
            self.threads,
            self.duration.as_nanos(),
            self.seed,
            self.rep.map_or("warmup".to_owned(), |r| r.to_string())
        )
    }

    /// Parses [`Request::to_line`]'s output.
    ///
    /// # Errors
    /// A description of what is wrong with the line.
    pub fn parse(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ["run", workload, alloc, threads, duration, seed, rep] = f[..] else {
            return Err(format!("not a run request: {line:?}"));
        };
        let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
        Ok(Self {
            workload: value_enum(workload)?,
            alloc: value_enum(alloc)?,
            threads: num(threads)? as usize,
            duration: Duration::from_nanos(num(duration)?),
            seed: num(seed)?,
            rep: match rep {
                "warmup" => None,
                r => Some(num(r)? as usize),
            },
        })
    }
}

fn value_enum<T: clap::ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s, false)
}

/// The answer line for `o`.
fn answer(o: &Outcome) -> String {
    let (req, alloc) = o.frag.map_or(("-".to_owned(), "-".to_owned()), |f| {
        // `f64`'s `Display` prints the shortest string that parses back to the same value
        // (`NaN` included), so nothing is lost on the way.
        (f.requested_share.to_string(), f.allocated_share.to_string())
    });
    let lat = o.lat.map_or("-".to_owned(), |l| {
        format!("{}/{}/{}/{}/{}", l.samples, l.p50, l.p99, l.p999, l.max)
    });
    format!(
        "done {} {} {} {req} {alloc} {lat}",
        o.ops,
        o.errors,
        o.elapsed.as_nanos()
    )
}

/// Parses the latency field of an answer: `Some(None)` for `-`.
fn parse_latency(field: &str) -> Option<Option<Latency>> {
    if field == "-" {
        return Some(None);
    }
    let v: Vec<u64> = field
        .split('/')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [samples, p50, p99, p999, max] = v[..] else {
        return None;
    };
    Some(Some(Latency {
        samples,
        p50,
        p99,
        p999,
        max,
    }))
}

/// Parses [`answer`]'s output; `None` for any other line.
fn parse_answer(line: &str) -> Option<Outcome> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let ["done", ops, errors, elapsed, req, alloc, lat] = f[..] else {
        return None;
    };
    let frag = match (req, alloc) {
        ("-", "-") => None,
        (r, a) => Some(Frag {
            requested_share: r.parse().ok()?,
            allocated_share: a.parse().ok()?,
        }),
    };
    Some(Outcome {
        ops: ops.parse().ok()?,
        errors: errors.parse().ok()?,
        elapsed: Duration::from_nanos(elapsed.parse().ok()?),
        frag,
        lat: parse_latency(lat)?,
    })
}

/// The cells the test hook stalls (see the module docs).
#[derive(Debug, Default)]
struct StallHook(Vec<(Workload, AllocKind, usize, Option<usize>)>);

impl StallHook {
    fn from_env() -> Result<Self, String> {
        let Some(spec) = std::env::var_os(STALL_ENV) else {
            return Ok(Self::default());
        };
        let spec = spec.to_string_lossy();
        let parse = |item: &str| {
            let f: Vec<&str> = item.split('/').collect();
            let bad = || format!("{STALL_ENV}: {item:?} is not workload/allocator/threads[/rep]");
            let (w, a, n, rep) = match f[..] {
                [w, a, n] => (w, a, n, None),
                [w, a, n, r] => (w, a, n, Some(r.parse().map_err(|_| bad())?)),
                _ => return Err(bad()),
            };
            Ok((
                value_enum(w)?,
                value_enum(a)?,
                n.parse().map_err(|_| bad())?,
                rep,
            ))
        };
        spec.split(',')
            .filter(|s| !s.is_empty())
            .map(parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn matches(&self, r: &Request) -> bool {
        self.0.iter().any(|&(w, a, n, rep)| {
            (w, a, n) == (r.workload, r.alloc, r.threads) && (rep.is_none() || rep == r.rep)
        })
    }
}

/// The worker's main loop: answers requests on stdin until it closes.
///
/// # Errors
/// When stdin or stdout fail, or a request (or the test hook's variable) does not parse.
pub fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let stall = StallHook::from_env()?;
    let instances = Instances::new();
    let pools = ThreadPools::new();
    let mut out = io::stdout().lock();
    for line in io::stdin().lock().lines() {
        let req = Request::parse(&line?)?;
        let pool = pools.get(req.threads);
        if stall.matches(&req) {
            // Every thread of the run blocks for good, as a hung allocator's would.
            pool.broadcast(|_| loop {
                std::thread::park();
            });
        }
        let outcome = Run {
            workload: req.workload,
            pool,
            budget: Budget::Time(req.duration),
            seed: req.seed,
        }
        .on(&instances, req.alloc);
        writeln!(out, "{}", answer(&outcome))?;
        out.flush()?;
    }
    Ok(())
}

/// How a run sent to a worker ended.
#[derive(Clone, Debug)]
pub enum Ended {
    /// It finished and was measured.
    Done(Outcome),
    /// No answer within the time limit: the worker was killed.
    Stalled,
    /// The worker died before answering (a panic or an abort; its message went to stderr).
    Crashed(ExitStatus),
}

/// A live worker process.
struct Live {
    child: Child,
    stdin: ChildStdin,
    /// The worker's stdout, line by line, from a reader thread (so that waiting can time out).
    /// It disconnects when the worker's stdout closes or cannot be read.
    lines: Receiver<String>,
}

/// The report's side: starts workers, sends them runs, kills them when a run stalls.
pub struct Worker {
    exe: PathBuf,
    live: Option<Live>,
    lost: u64,
}

impl Worker {
    /// A worker that runs `exe` (this binary) with [`WORKER_FLAG`]; started on the first run.
    pub fn new(exe: PathBuf) -> Self {
        Self {
            exe,
            live: None,
            lost: 0,
        }
    }

    /// Workers killed or found dead so far. When it changes, the next worker's allocators are
    /// new (not warmed up).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    fn start(&self) -> io::Result<Live> {
        let mut child = Command::new(&self.exe)
            .arg(WORKER_FLAG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("worker-stdout".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Live {
            child,
            stdin,
            lines,
        })
    }

    /// Sends `req` to the worker (starting one if none is alive) and waits up to `limit` for
    /// its answer. On a stall the worker is killed; on a stall or a crash the next run starts a
    /// new one.
    ///
    /// # Errors
    /// When no worker can be started or its pipes fail while it is alive.
    pub fn run(&mut self, req: &Request, limit: Duration) -> io::Result<Ended> {
        if self.live.is_none() {
            self.live = Some(self.start()?);
        }
        let live = self.live.as_mut().expect("just started");
        let deadline = Instant::now() + limit;
        // A failed write means the worker is gone; its stdout then closes, and the wait below
        // reports the crash.
        let _ = writeln!(live.stdin, "{}", req.to_line()).and_then(|()| live.stdin.flush());
        let stalled = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match live.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(outcome) = parse_answer(&line) {
                        return Ok(Ended::Done(outcome));
                    }
                }
                Err(RecvTimeoutError::Timeout) => break true,
                Err(RecvTimeoutError::Disconnected) => break false,
            }
        };
        let mut live = self.live.take().expect("alive");
        self.lost += 1;
        // SIGKILL ends every thread of a stalled worker; a worker that has already exited is
        // unaffected (its exit status stays the one it died with), so the error is ignored.
        let _ = live.child.kill();
        let status = live.child.wait()?;
        Ok(if stalled {
            Ended::Stalled
        } else {
            Ended::Crashed(status)
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            let Live {
                mut child, stdin, ..
            } = live;
            // End of input tells an idle worker to exit.
            drop(stdin);
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for rep in [None, Some(3)] {
            let r = Request {
                workload: Workload::ProducerConsumer,
                alloc: AllocKind::BallocGlobal,
                threads: 16,
                duration: Duration::from_millis(80),
                seed: 0x5EED,
                rep,
            };
            assert_eq!(Request::parse(&r.to_line()), Ok(r));
        }
        assert!(Request::parse("run pair-64 nope 1 1 1 0").is_err());
        assert!(Request::parse("run pair-64").is_err());
    }

    #[test]
    fn answers_round_trip() {
        let o = Outcome {
            ops: 123,
            errors: 4,
            elapsed: Duration::from_nanos(987_654_321),
            frag: None,
            lat: Some(Latency {
                samples: 1000,
                p50: 12,
                p99: 340,
                p999: 5_600,
                max: 7_800_000,
            }),
        };
        let back = parse_answer(&answer(&o)).unwrap();
        assert_eq!((back.ops, back.errors, back.elapsed), (123, 4, o.elapsed));
        assert!(back.frag.is_none());
        assert_eq!(back.lat, o.lat);
        assert_eq!(parse_latency("-"), Some(None));
        assert_eq!(parse_latency("1/2/3/4"), None);
        let f = Outcome {
            frag: Some(Frag {
                requested_share: 0.1 + 0.2,
                allocated_share: f64::NAN,
            }),
            lat: None,
            ..o
        };
        let back = parse_answer(&answer(&f)).unwrap().frag.unwrap();
        assert_eq!(back.requested_share, 0.1 + 0.2);
        assert!(back.allocated_share.is_nan());
        assert!(parse_answer("something else").is_none());
    }

    #[test]
    fn stall_hook_matches_cells_and_repetitions() {
        let hook = StallHook(vec![
            (Workload::Pair64, AllocKind::BallocLocal, 2, None),
            (Workload::Batch, AllocKind::System, 1, Some(1)),
        ]);
        let req = |workload, alloc, threads, rep| Request {
            workload,
            alloc,
            threads,
            duration: Duration::ZERO,
            seed: 0,
            rep,
        };
        assert!(hook.matches(&req(Workload::Pair64, AllocKind::BallocLocal, 2, None)));
        assert!(hook.matches(&req(Workload::Pair64, AllocKind::BallocLocal, 2, Some(4))));
        assert!(!hook.matches(&req(Workload::Pair64, AllocKind::BallocLocal, 1, Some(0))));
        assert!(hook.matches(&req(Workload::Batch, AllocKind::System, 1, Some(1))));
        assert!(!hook.matches(&req(Workload::Batch, AllocKind::System, 1, Some(0))));
        assert!(!hook.matches(&req(Workload::Batch, AllocKind::System, 1, None)));
    }
}
