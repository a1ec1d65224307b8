//! The terminal side of the calling-code directory.
//!
//! ```text
//!  identity ─ netlink: the card's MAC ─▶ zones::identity::Mid (raw or derived rule)
//!  enroll   ─ the MID (derived with the token's KID) ─▶ enroll::enroll: X25519 key pair,
//!             one UPDATE signed with the token's key ─▶ the key derived (HKDF), written 0600
//!  run/once ─ daemon::Terminal::new: key bound to this card's MID?
//!           ─ discover: fixed + client::whoami + network::addresses ─▶ filter
//!           ─ client::published (what the directory answers) ─ differ or lease due?
//!           ─ client::publish: one signed UPDATE (A and AAAA replaced, lease option)
//!           ─ exchange: UDP (TCP if truncated), or TLS to a pinned key (tls), TSIG sign
//!             and verify, typed errors
//!  dial     ─ dial::resolve (AAAA, A; with a trust anchor, validate::{validate_keys,
//!             validate_rrset}, denial::prove for a negative answer)
//!           ─▶ dial::connect (TCP) ─▶ pipe stdin/stdout
//! ```
//!
//! Modules:
//! - [`config`]: settings from flags and TOML.
//! - [`sample`]: the sample config file, written from those defaults.
//! - [`daemon`]: the waiting registration loop (M1): events, timers, leases, backoff, exit.
//! - [`client`]: the directory conversations: publish, withdraw, published, whoami.
//! - [`enroll`]: enrolling with a customer's token: key agreement, the key file.
//! - [`exchange`]: one DNS request/answer with TSIG and clear errors.
//! - [`tls`]: DNS over TLS to the directory, trusting one pinned public key.
//! - [`discover`]: address sources and the filter of what may be published.
//! - [`network`]: cards, MACs, addresses and change wake-ups, from one of two sources:
//!   - [`netlink`] (Linux): the kernel's interface and its events;
//!   - [`ifaddrs`] (portable): `getifaddrs(3)`, polled.
//! - [`interface`]: what both address sources report: cards, and why they cannot be read.
//! - [`backoff`]: retry timing.
//! - [`dial`]: calling another terminal by code (M2).
//! - [`validate`]: DNSSEC validation of dial's answers from a trust anchor.
//! - [`denial`]: proving dial's negative answers (NSEC3 or compact denial) with those keys.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod client;
pub mod config;
pub mod daemon;
pub mod denial;
pub mod dial;
pub mod discover;
pub mod enroll;
pub mod exchange;
pub mod ifaddrs;
pub mod interface;
#[cfg(target_os = "linux")]
pub mod netlink;
pub mod network;
pub mod sample;
pub mod tls;
pub mod validate;
