#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod alloc;
pub mod balloc;
pub mod exhaust;
pub mod latency;
pub mod machine;
pub mod memory;
pub mod registry;
pub mod report;
pub mod rng;
pub mod worker;
pub mod workload;

/// The Rust snippets of the workspace's `README.md`, compiled and run as this crate's doctests
/// (the README is no crate's documentation, and a snippet that does not compile is a bug).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;
