//! The calling-code directory's data and rules. No sockets: the nameserver feeds it
//! parsed DNS messages and sends what it returns.
//!
//! ```text
//!   nameserver ──query──▶ Directory::view() ──▶ Zone (static) + View (durable terminals)
//!              ──update─▶ Directory::update() ─▶ replay::check_fresh, update::plan (RFC 2136)
//!                                              ─▶ commit::Committer: stage a store Change
//!                                                 (TerminalWrites, ZoneWrites, DnssecWrites)
//!                                              ─▶ durable: one flush per group ─▶ View, reply
//!   control  ──register / import / unregister / rotate-key─▶ Directory ─▶ (same pipeline)
//!            ──backup─▶ Store::snapshot ─▶ backup::Record lines;  restore::restore ─▶ Store
//!   cluster  ──flush─▶ store::replicated::Replicator (the consensus log: a majority durable)
//!            ─▶ on every node: Directory::apply_replicated ─▶ rows + log position ─▶ View
//!               (a signed zone: the leader's signatures, and its SOA's RRSIG, with them)
//!            ──far behind─▶ backup::write_lines (a snapshot) ─▶ Directory::install_backup
//! ```
//!
//! Modules, with dependencies pointing down the list's order of use:
//! - [`endpoint`]: `IP:PORT` as typed on a command line, with errors that say the form.
//! - [`identity`]: calling codes, customer ids (KID), machine ids (MID) and the MID rule.
//! - [`enroll`]: enrollment tokens, and the key agreement a terminal enrolls with.
//! - [`key`]: TSIG keys, their names, and BIND's key-file format.
//! - [`lease`]: update leases (RFC 9664): granting, encoding, refresh timing.
//! - [`limits`]: caps on what terminals publish and on the journal.
//! - [`zone`]: the static zone (SOA, NS, glue) from a zone file or the embedded default.
//! - [`model`]: terminals, addresses and presence: the directory's data.
//! - [`pin`]: the SPKI pin of a TLS certificate (DNS over TLS).
//! - [`policy`]: the address policy shared by updates and imports.
//! - [`replay`]: replay memory for signed updates (RFC 8945 §5.2.3).
//! - [`update`]: the RFC 2136 update engine; reads the zone through a trait.
//! - [`journal`]: recent deltas of the zone, for incremental transfers (IXFR).
//! - [`index`]: the published, durable view that queries read.
//! - [`observe`]: what the commit pipeline reports (group-commit sizes and times).
//! - [`store`]: the redb store: changes staged, then one transaction and one fdatasync per
//!   group of them before publishing.
//! - [`commit`]: the committer: from staged to durable to published; it owns the store,
//!   the view, what is pending, the writer lock and the poisoned state.
//! - [`dnssec`]: the zone key, RRSIGs and the NSEC3 chain, signed as changes are staged.
//! - [`directory`]: every change to the directory goes through it.
//! - [`backup`]: the backup file's format (versioned JSON lines, keys included).
//! - [`restore`]: rebuilds a store from a backup.
//! - [`secret_file`]: files that hold secrets, written 0600 and atomically.
//! - [`serial`]: SOA serial arithmetic (RFC 1982).
//! - [`log_writer`]: standard error for both binaries' logs, that never fails.
//! - [`manual`] (feature `manual`): both binaries' man pages and shell completions.
//!
//! `index`, `commit`, `store`, `dnssec`, `directory`, `backup` and `restore` need the default `store`
//! feature (redb);
//! without it the crate is the rules and formats alone, as the updater uses it.
#![forbid(unsafe_code)]

#[cfg(feature = "store")]
pub mod backup;
#[cfg(feature = "store")]
mod commit;
#[cfg(feature = "store")]
pub mod directory;
#[cfg(feature = "store")]
pub mod dnssec;
pub mod endpoint;
pub mod enroll;
pub mod identity;
#[cfg(feature = "store")]
pub mod index;
pub mod journal;
pub mod key;
pub mod lease;
pub mod limits;
pub mod log_writer;
#[cfg(feature = "manual")]
pub mod manual;
pub mod model;
pub mod observe;
pub mod pin;
pub mod policy;
pub mod replay;
#[cfg(feature = "store")]
pub mod restore;
pub mod secret_file;
pub mod serial;
#[cfg(feature = "store")]
pub mod store;
pub mod update;
pub mod zone;

#[cfg(feature = "store")]
pub use directory::{Directory, DirectoryError};
pub use limits::Limits;
pub use zone::Zone;

/// Seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
