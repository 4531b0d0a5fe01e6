//! Placeholder until the bench issue lands.
fn main() {}
