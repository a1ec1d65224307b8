//! DNSSEC: the zone signed with one ECDSA P-256 key (a CSK), NSEC3 for denial.
//!
//! ```text
//!  Directory::open ─▶ keys from the store (generated at the first start with DNSSEC on)
//!                  ─▶ warm_start::preview: after a clean stop, the copy saved then answers with DO in
//!                     place from the end of the terminals' read, until resume's zone is in
//!                     force
//!                  ─▶ warm_start::resume: the stored signatures (that copy, read whole after the
//!                     terminals; or the store's table, beside them), with their chain and
//!                     index built on a second core, checked against the terminals in one
//!                     walk
//!                  ─▶ or, when the terminals are not those they are for (or the zone was
//!                     changed while served unsigned), whole::sign_zone: joined with the
//!                     terminals that publish addresses, the chain sorted once;
//!                  both sign what the store lacks or no longer holds right (the first
//!                  signing, a restore, signatures come due)
//!  shutdown ─▶ SignedZone's terminals saved for the next start (Store::save_signatures)
//!  each change, under the writer lock:
//!     zone changes ─▶ Staging::sign ─▶ SignedDelta (terminals' RRSIGs and NSEC3s, the
//!                     NSEC3s of neighbours whose next hash moved, what they replaced)
//!                  ─▶ Store (`signed` table, same transaction) ─▶ published with the change
//!  each second ─▶ refresh: signed without the writer lock, checked and staged with it
//!  queries with DO ─▶ SignedZone (in the View): RRSIGs, NSEC3 proofs; the SOA's RRSIG
//!                     made once per published serial
//!  IXFR ─▶ SignedZone's history (what each change replaced, the SOA RRSIGs served)
//!       ─▶ one condensed difference
//!  a cluster: the leader signs as above; each log entry carries the signatures as rows
//!     (and the SOA's RRSIG at the serial it moves to) ─▶ every node: SignedDelta from the
//!     rows ─▶ SignedZone, and Staging::follow (to sign from, should it lead); a node's
//!     start signs and stores nothing (SignedStart::following_a_log)
//! ```
//!
//! A terminal is in the signed zone while it publishes an address: a registered code with
//! none has no records, so a query with DO gets NXDOMAIN with its proof, as a secondary
//! serving the transferred zone would answer.
//!
//! Modules:
//! - [`key`]: the zone key, its DNSKEY and DS.
//! - [`sign`]: RRSIGs, stored compactly.
//! - [`nsec3`]: hashes, NSEC3 records.
//! - [`chain`]: the NSEC3 chain, in runs.
//! - [`statics`]: the names of the static zone, their types and signatures.
//! - [`staging`]: signing changes as they are staged.
//! - [`signed`]: the published signatures that answers read.
//! - [`terminals`]: the published terminals' signatures, a slab indexed by code.
//! - [`whole`]: signing the whole zone (first signing, repairs, refresh at open).
//! - [`warm_start`]: a signed start made fast, behind one seam: the signatures taken up
//!   again from those stored (`resume`), and answers in place meanwhile (`preview`).

use serde::{Deserialize, Serialize};

use crate::identity::CodeKey;

pub mod chain;
pub mod key;
pub mod nsec3;
pub mod sign;
pub mod signed;
pub mod staging;
pub mod statics;
pub mod terminals;
pub mod warm_start;
pub mod whole;

pub use key::{KeyError, KeyRole, KeyState, ZoneKey};
pub use nsec3::Hash;
pub use sign::{Sig, SignError, Signer};
pub use signed::SignedZone;
pub use staging::{SignedDelta, Staging};

/// What owns a hash of the NSEC3 chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A terminal that publishes an address.
    Terminal(CodeKey),
    /// A static name (by its place in [`statics::Statics`]).
    Static(u32),
}

/// A terminal's signatures, as stored (table `signed`) and served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSigs {
    /// The hash of the terminal's name.
    pub hash: Hash,
    /// The next hash of the chain when its NSEC3 was signed.
    pub next: Hash,
    /// Over the A RRset, when it has IPv4 addresses.
    pub a: Option<Sig>,
    /// Over the AAAA RRset, when it has IPv6 addresses.
    pub aaaa: Option<Sig>,
    /// Over its NSEC3 record.
    pub nsec3: Sig,
}

impl TerminalSigs {
    /// When the first of its signatures expires.
    pub fn expiration(&self) -> u32 {
        [self.a, self.aaaa, Some(self.nsec3)]
            .iter()
            .flatten()
            .map(|sig| sig.expiration)
            .min()
            .unwrap_or(self.nsec3.expiration)
    }

    /// True when every one of its signatures is by the key with tag `tag`.
    pub fn signed_only_by(&self, tag: u16) -> bool {
        [self.a, self.aaaa, Some(self.nsec3)]
            .iter()
            .flatten()
            .all(|sig| sig.key_tag == tag)
    }

    /// The types its NSEC3 lists.
    pub fn types(&self) -> Vec<hickory_proto::rr::RecordType> {
        nsec3::terminal_types(self.a.is_some(), self.aaaa.is_some())
    }
}
