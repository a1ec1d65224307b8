//! The directory's data: registered terminals, their addresses and their presence.
//!
//! Plain values with no behaviour beyond reading them; the [`crate::directory`] changes
//! them, the [`crate::store`] persists them, the [`crate::index`] serves them to queries.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::identity::{CallingCode, Kid, Mid};
use crate::key::TsigKey;

/// A registered terminal: calling code, customer, machine and its TSIG key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terminal {
    pub code: CallingCode,
    pub kid: Kid,
    pub mid: Mid,
    pub key: TsigKey,
    /// Unix seconds.
    pub registered_at: u64,
}

/// One family's addresses, with the RRset's TTL; `N` of them fit inline, so the common
/// terminal costs the index no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de>"))]
pub struct AddressSet<T, const N: usize = 2> {
    pub ttl: u32,
    pub addrs: SmallVec<[T; N]>,
}

impl<T, const N: usize> Default for AddressSet<T, N> {
    fn default() -> Self {
        Self {
            ttl: 0,
            addrs: SmallVec::new(),
        }
    }
}

/// A terminal's published addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// Two IPv4 addresses inline (8 bytes).
    pub v4: AddressSet<Ipv4Addr, 2>,
    /// One IPv6 address inline (16 bytes): terminals rarely have more than one.
    pub v6: AddressSet<Ipv6Addr, 1>,
}

impl Addresses {
    /// True when the terminal publishes no address at all (offline).
    pub fn is_empty(&self) -> bool {
        self.v4.addrs.is_empty() && self.v6.addrs.is_empty()
    }

    /// The addresses as text, for logs and listings: `192.0.2.1 2001:db8::1`.
    pub fn describe(&self) -> String {
        let v4 = self.v4.addrs.iter().map(ToString::to_string);
        let v6 = self.v6.addrs.iter().map(ToString::to_string);
        let all: Vec<String> = v4.chain(v6).collect();
        if all.is_empty() {
            "-".into()
        } else {
            all.join(" ")
        }
    }
}

/// No addresses: what an offline terminal publishes.
static OFFLINE: Addresses = Addresses {
    v4: AddressSet {
        ttl: 0,
        addrs: SmallVec::new_const(),
    },
    v6: AddressSet {
        ttl: 0,
        addrs: SmallVec::new_const(),
    },
};

/// A terminal's changing state: addresses, lease, last update, and replay memory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Presence {
    pub addresses: Addresses,
    /// Unix seconds when the lease runs out; `None`: no expiry.
    pub lease_expires: Option<u64>,
    /// Unix seconds of the last accepted update.
    pub updated_at: Option<u64>,
    /// Replay memory: the newest Time Signed accepted (never later than the server's time
    /// when it was accepted) and the MACs that may not be accepted again.
    pub last_signed: u64,
    /// MACs accepted with a Time Signed at or after `last_signed`, with that time, each
    /// kept as its [`MacPrint`].
    #[serde(deserialize_with = "mac_prints")]
    pub recent_macs: Vec<(u64, MacPrint)>,
}

/// How many leading bytes of an accepted MAC the replay memory keeps.
pub const MAC_PRINT_BYTES: usize = 8;

/// The leading bytes of a MAC, which is all replay memory needs: a replay carries the same
/// MAC, so the same print, while a new message's MAC (the output of a keyed hash) shares
/// its first 64 bits with one remembered for the same key with a chance of 2^-64. A replay
/// whose MAC was truncated (RFC 8945 §5.2.2.1) shares the print too. Keeping 8 bytes of a
/// 32-byte HMAC-SHA256 keeps each terminal's stored replay memory small.
pub type MacPrint = [u8; MAC_PRINT_BYTES];

/// The [`MacPrint`] of a MAC (a shorter MAC, which no TSIG algorithm produces, is padded
/// with zeros).
pub fn mac_print(mac: &[u8]) -> MacPrint {
    let mut print = [0; MAC_PRINT_BYTES];
    let kept = mac.len().min(MAC_PRINT_BYTES);
    print[..kept].copy_from_slice(&mac[..kept]);
    print
}

/// Reads replay memory as backups hold it: whole MACs in files written before prints were
/// kept, prints since.
fn mac_prints<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(u64, MacPrint)>, D::Error> {
    let macs: Vec<(u64, Vec<u8>)> = Deserialize::deserialize(deserializer)?;
    Ok(macs
        .into_iter()
        .map(|(t, mac)| (t, mac_print(&mac)))
        .collect())
}

/// True once a lease ending at `end` (Unix seconds; `None`: no expiry) has run out.
fn lease_over(end: Option<u64>, now: u64) -> bool {
    end.is_some_and(|t| t <= now)
}

/// The addresses to answer queries with: none once the lease has run out.
fn live_or_offline(addresses: &Addresses, over: bool) -> &Addresses {
    if over { &OFFLINE } else { addresses }
}

impl Presence {
    /// True once the lease has run out: the terminal is offline.
    pub fn expired(&self, now: u64) -> bool {
        lease_over(self.lease_expires, now)
    }

    /// The addresses to answer queries with at `now`: none once the lease has run out.
    ///
    /// Zone transfers and journal deltas use `addresses` instead: the zone's content at
    /// its serial, which the expiry sweep changes with a serial increase of its own.
    pub fn live(&self, now: u64) -> &Addresses {
        live_or_offline(&self.addresses, self.expired(now))
    }

    /// What the in-memory index keeps of it.
    pub fn hot(&self) -> Hot {
        Hot {
            addresses: self.addresses.clone(),
            lease_expires: self.lease_expires.and_then(NonZeroU64::new),
        }
    }
}

/// What a query needs of a terminal, and all the in-memory index holds: its addresses
/// (inline) and the end of its lease. Key material, identity and replay memory stay in the
/// store, read when a signed request arrives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hot {
    pub addresses: Addresses,
    /// Unix seconds when the lease runs out; `None`: no expiry (8 bytes: never zero).
    pub lease_expires: Option<NonZeroU64>,
}

impl Hot {
    /// True once the lease has run out: the terminal is offline.
    pub fn expired(&self, now: u64) -> bool {
        lease_over(self.lease_expires.map(NonZeroU64::get), now)
    }

    /// The addresses to answer queries with at `now`: none once the lease has run out.
    pub fn live(&self, now: u64) -> &Addresses {
        live_or_offline(&self.addresses, self.expired(now))
    }
}

/// A registered terminal and its presence, as a writer reads them from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub terminal: Terminal,
    pub presence: Presence,
}

/// An enrollment token as the directory keeps it: never the token's text, only its
/// [`crate::enroll::Verifier`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenEntry {
    /// The customer whose terminals it enrolls.
    pub kid: Kid,
    pub verifier: crate::enroll::Verifier,
    /// How many enrollments it allows, and how many it has made.
    pub uses: u32,
    pub used: u32,
    /// Unix seconds after which it enrolls nothing.
    pub expires_at: u64,
    /// The codes it may enroll; `None`: any free code.
    pub codes: Option<crate::enroll::CodeRange>,
    /// Terminals it enrolls wait for `nameserver approve` before they may update.
    pub approve: bool,
    pub created_at: u64,
    /// Unix seconds when it was revoked.
    pub revoked_at: Option<u64>,
}

impl TokenEntry {
    /// Whether it may enroll one more terminal at `now`.
    pub fn usable(&self, now: u64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at && self.used < self.uses
    }

    /// Its state in a word, for `token list`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.used >= self.uses {
            "used-up"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "active"
        }
    }
}

/// What the directory keeps of a customer (KID) besides its terminals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The most terminals it may have registered; `None`: no limit.
    pub limit: Option<u32>,
    /// While suspended, every key of the customer is refused and its tokens enroll nothing.
    pub suspended: bool,
}
