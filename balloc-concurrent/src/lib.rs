//! Placeholder until the balloc-concurrent issue lands.
