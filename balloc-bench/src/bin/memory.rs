//! The memory workload alone (see `balloc_bench::memory`), with settings of your choice; the
//! scaling report runs it with the defaults.
//!
//! ```text
//! cargo run --release -p balloc-bench --bin memory [-- --threads 4 --objects 4000 --waves 6]
//! ```

use balloc_bench::memory::{self, Params, ALLOCATORS};
use clap::Parser;

/// Memory use of each allocator under a service-like workload, one child process each.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Threads allocating and freeing at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Blocks per thread in a wave of multiplier 1.
    #[arg(long, default_value_t = 4000)]
    objects: usize,
    /// Waves.
    #[arg(long, default_value_t = 6)]
    waves: usize,
    /// Allocations (each freed at once) made by one thread after the waves, the light use.
    #[arg(long, default_value_t = 400)]
    light: usize,
    /// Size mix: `service` (85% small, 14% 4–64 KiB buffers, 1% large) or `small` (16–512 B
    /// only: where rounding costs most).
    #[arg(long, default_value = "service")]
    mix: String,
    /// Allocators to run (comma-separated); default all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the markdown table here too.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if memory::serve_child(&argv) {
        return;
    }
    let args = Args::parse();
    let names: Vec<&str> = if args.only.is_empty() {
        ALLOCATORS.to_vec()
    } else {
        args.only.iter().map(String::as_str).collect()
    };
    let params = Params {
        threads: args.threads,
        objects: args.objects,
        waves: args.waves,
        light: args.light,
        mix: args.mix.clone(),
    };
    let exe = std::env::current_exe().expect("own path");
    let table = memory::table(&exe, &names, &params);
    print!("{table}");
    if let Some(path) = &args.out {
        std::fs::write(path, &table).expect("write the table");
    }
}
