//! The calling-code directory's data and rules. No sockets: the nameserver feeds it
//! parsed DNS messages and sends what it returns.
//!
//! ```text
//!   nameserver ──query──▶ Directory::view() ──▶ Zone (static) + View (terminals)
//!              ──update─▶ Directory::update() ─▶ update::plan (RFC 2136 steps)
//!                                              ─▶ Store::commit (one sled transaction)
//!                                              ─▶ Store::flush  (fsync) ─▶ View, then reply
//!   control  ──register / unregister / rotate-key─▶ Directory ─▶ Store ─▶ View
//! ```
//!
//! Modules:
//! - [`identity`]: calling codes, customer ids (KID), machine ids (MID) and the MID rule.
//! - [`key`]: TSIG keys, their names, and BIND's key-file format.
//! - [`lease`]: update leases (RFC 9664): granting, encoding, refresh timing.
//! - [`zone`]: the static zone (SOA, NS, glue) from a zone file or the embedded default.
//! - [`directory`]: registered terminals and their addresses; every change goes through it.
//! - [`journal`]: recent deltas of the zone, for incremental transfers (IXFR).
//! - [`update`]: the RFC 2136 update engine and the terminal update policy.
//! - [`store`]: the sled store: one transaction per change, flushed before acknowledging.
//! - [`serial`]: SOA serial arithmetic (RFC 1982).
#![forbid(unsafe_code)]

pub mod directory;
pub mod identity;
pub mod journal;
pub mod key;
pub mod lease;
pub mod serial;
pub mod store;
pub mod update;
pub mod zone;

pub use directory::{Directory, DirectoryError, Limits};
pub use zone::Zone;

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
