//! What the commit pipeline reports while it works, for whoever watches it (the server's
//! metrics). The store calls an observer after each group commit; no observer, no cost.

use std::time::Duration;

/// Told about every group commit that reached the disk.
pub trait FlushObserver: Send + Sync + std::fmt::Debug {
    /// One transaction and one sync made `changes` staged changes durable in `took`.
    fn flushed(&self, took: Duration, changes: usize);
}
