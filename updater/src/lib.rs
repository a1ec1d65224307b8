//! The terminal side of the calling-code directory.
//!
//! ```text
//!  identity ─ netlink: the card's MAC ─▶ zones::identity::Mid (raw or derived rule)
//!  run/once ─ daemon::Terminal::new: key bound to this card's MID?
//!           ─ discover: fixed + client::whoami + netlink::addresses ─▶ filter
//!           ─ client::published (what the directory answers) ─ differ or lease due?
//!           ─ client::publish: one signed UPDATE (A and AAAA replaced, lease option)
//!           ─ exchange: UDP (TCP if truncated), TSIG sign and verify, typed errors
//!  dial     ─ dial::resolve (AAAA, A) ─▶ dial::connect (TCP) ─▶ pipe stdin/stdout
//! ```
//!
//! Modules:
//! - [`config`]: settings from flags and TOML.
//! - [`daemon`]: the waiting registration loop (M1): events, timers, leases, backoff, exit.
//! - [`client`]: the directory conversations: publish, withdraw, published, whoami.
//! - [`exchange`]: one DNS request/answer with TSIG and clear errors.
//! - [`discover`]: address sources and the filter of what may be published.
//! - [`netlink`]: cards, MACs, addresses and change events from the kernel.
//! - [`backoff`]: retry timing.
//! - [`dial`]: calling another terminal by code (M2).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod config;
pub mod daemon;
pub mod dial;
pub mod discover;
pub mod exchange;
pub mod netlink;
