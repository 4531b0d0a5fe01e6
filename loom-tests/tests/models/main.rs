//! The loom models (`RUSTFLAGS="--cfg balloc_loom" cargo test -p loom-tests --release`), the
//! proof that they bite (`--cfg balloc_loom_mutants` as well), and, without the cfg, a smoke
//! run of the same scenarios on real threads. See the crate README.

#[cfg(all(balloc_loom, not(balloc_loom_mutants)))]
mod models;
#[cfg(all(balloc_loom, balloc_loom_mutants))]
mod mutants;
#[cfg(not(balloc_loom))]
mod smoke;
