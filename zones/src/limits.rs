//! Caps on what terminals may publish and how much history is kept.

use crate::lease::LeasePolicy;

/// Caps on what terminals may publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest TTL of a terminal's records; larger TTLs are clamped to it.
    pub max_ttl: u32,
    /// Most addresses per family (A, AAAA) a terminal may have; more is refused.
    pub max_addresses_per_family: usize,
    /// TSIG time window in seconds (RFC 8945 "fudge"), also the replay-memory window.
    pub fudge: u16,
    /// Update leases (RFC 9664).
    pub leases: LeasePolicy,
    /// How many recent changes are kept for incremental transfers (IXFR).
    pub journal_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_ttl: 60,
            max_addresses_per_family: 8,
            fudge: 300,
            leases: LeasePolicy::default(),
            journal_depth: 1000,
        }
    }
}
