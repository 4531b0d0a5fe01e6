//! Placeholder until the loom issue lands.
