#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod alloc;
pub mod balloc;
pub mod exhaust;
pub mod latency;
pub mod machine;
pub mod registry;
pub mod report;
pub mod rng;
pub mod worker;
pub mod workload;
