#![doc = include_str!("../README.md")]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(all(balloc_loom_mutants, not(balloc_loom)))]
compile_error!(
    "`--cfg balloc_loom_mutants` breaks balloc-concurrent on purpose and is only meant for the \
     loom models: add `--cfg balloc_loom` (see ci/loom.sh)"
);

pub mod check;
#[cfg(balloc_loom)]
pub mod model;
pub mod scenarios;
pub mod sync;
