//! What the numbers were measured on.

use std::fmt;

/// The machine a report ran on.
#[derive(Clone, Debug)]
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cpus: usize,
    /// The CPU's model name from `/proc/cpuinfo` ("unknown" where there is none).
    pub model: String,
}

impl Machine {
    /// Reads this machine's description.
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self { cpus, model }
    }

    /// A note for thread counts above the core count, if any.
    pub fn oversubscription(&self, threads: &[usize]) -> Option<String> {
        let over: Vec<String> = threads
            .iter()
            .filter(|&&n| n > self.cpus)
            .map(usize::to_string)
            .collect();
        (!over.is_empty()).then(|| {
            format!(
                "this machine has {} CPUs: runs with {} threads are oversubscribed \
                 (threads share cores and are preempted, lock holders included)",
                self.cpus,
                over.join(", ")
            )
        })
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} CPUs, {}", self.cpus, self.model)
    }
}
