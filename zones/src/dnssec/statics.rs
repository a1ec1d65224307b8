//! The static names of the signed zone: the apex (SOA, NS, DNSKEY, NSEC3PARAM and what the
//! zone file puts there), the zone file's other names, and the empty non-terminals above
//! them.
//!
//! `whoami` is not among them: its answers are made per query on the primary (and signed
//! then), and it is not in the zone that secondaries are sent, so the NSEC3 chain, which
//! they serve too, leaves it out.

use std::collections::BTreeMap;

use hickory_proto::rr::{LowerName, Name, Record, RecordType};
use serde::{Deserialize, Serialize};

use super::nsec3::{self, Hash};
use super::sign::{Sig, SignError, Signer};
use crate::zone::Zone;

/// One static name.
#[derive(Clone, Debug)]
pub struct StaticName {
    pub name: Name,
    pub hash: Hash,
    /// The types its NSEC3 lists.
    pub types: Vec<RecordType>,
}

/// Every static name, the apex first.
#[derive(Clone, Debug)]
pub struct Statics {
    pub names: Vec<StaticName>,
}

impl Statics {
    pub fn of(zone: &Zone) -> Self {
        let origin = zone.origin();
        let mut types: BTreeMap<LowerName, Vec<RecordType>> = BTreeMap::new();
        let apex = LowerName::new(origin);
        types.insert(
            apex.clone(),
            vec![RecordType::SOA, RecordType::DNSKEY, RecordType::NSEC3PARAM],
        );
        for (owner, rtype, _) in zone.static_rrsets() {
            types.entry(owner.clone()).or_default().push(rtype);
        }
        // Empty non-terminals between the apex and deeper names.
        let depth = origin.num_labels();
        let owners: Vec<Name> = types.keys().map(Name::from).collect();
        for name in owners {
            for labels in depth + 1..name.num_labels() {
                types
                    .entry(LowerName::new(&name.trim_to(labels as usize)))
                    .or_default();
            }
        }
        let mut names: Vec<StaticName> = types
            .into_iter()
            .map(|(name, mut types)| {
                if !types.is_empty() {
                    types.push(RecordType::RRSIG);
                }
                types.sort_by_key(|t| u16::from(*t));
                types.dedup();
                let name = Name::from(name);
                StaticName {
                    hash: nsec3::hash(&name),
                    name,
                    types,
                }
            })
            .collect();
        names.sort_by_key(|n| n.name != *origin);
        Self { names }
    }

    /// The place of `name` among the static names.
    pub fn find(&self, name: &Name) -> Option<usize> {
        self.names.iter().position(|n| n.name == *name)
    }
}

/// A static name's signatures: its RRsets' (SOA and dynamic answers apart) and its NSEC3's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedStatic {
    pub rrsets: Vec<(RecordType, Sig)>,
    pub next: Hash,
    pub nsec3: Sig,
}

impl SignedStatic {
    /// When the first of its signatures expires.
    pub fn expiration(&self) -> u32 {
        self.rrsets
            .iter()
            .map(|(_, sig)| sig.expiration)
            .chain([self.nsec3.expiration])
            .min()
            .unwrap_or(u32::MAX)
    }
}

/// True when `signed`, the static names' signatures by place in `statics`, name the next
/// hashes of a chain (`next`: the hash after one in it) and all hold until `until`: stored
/// ones that can be served again with that chain.
pub fn fit_chain(
    signed: &[SignedStatic],
    statics: &Statics,
    next: impl Fn(&Hash) -> Option<Hash>,
    until: u32,
) -> bool {
    (signed.iter().zip(&statics.names))
        .all(|(s, name)| next(&name.hash) == Some(s.next) && s.expiration() >= until)
}

/// The static names' signatures as the store keeps them (`meta` `static_sigs`), with what
/// they were made for: a restart serves them again, rather than new ones under the same
/// serial, when they still fit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatics {
    /// The static zone's fingerprint.
    pub zone: String,
    /// The signer's [`Signer::identity`].
    pub keys: Vec<u16>,
    /// Each static name's hash, in the order of [`Statics::names`].
    pub hashes: Vec<Hash>,
    /// Each static name's signatures.
    pub signed: Vec<StoredStatic>,
}

/// One static name's RRsets' signatures (by type number), next hash and NSEC3's signature.
pub type StoredStatic = (Vec<(u16, Sig)>, Hash, Sig);

impl StoredStatics {
    pub fn new(zone: &str, signer: &Signer, statics: &Statics, signed: &[SignedStatic]) -> Self {
        Self {
            zone: zone.to_owned(),
            keys: signer.identity(),
            hashes: statics.names.iter().map(|n| n.hash).collect(),
            signed: signed
                .iter()
                .map(|s| {
                    let rrsets = s.rrsets.iter().map(|(t, sig)| (u16::from(*t), *sig));
                    (rrsets.collect(), s.next, s.nsec3)
                })
                .collect(),
        }
    }

    /// The signatures, when they were made for `zone` (its fingerprint) and `statics` by
    /// `signer`'s keys; `None` otherwise.
    pub fn fitting(
        self,
        zone: &str,
        signer: &Signer,
        statics: &Statics,
    ) -> Option<Vec<SignedStatic>> {
        let same_names = self.hashes.len() == statics.names.len()
            && self
                .hashes
                .iter()
                .zip(&statics.names)
                .all(|(h, n)| *h == n.hash);
        if self.zone != zone || self.keys != signer.identity() || !same_names {
            return None;
        }
        let signed = self
            .signed
            .into_iter()
            .map(|(rrsets, next, nsec3)| SignedStatic {
                rrsets: rrsets
                    .into_iter()
                    .map(|(t, sig)| (RecordType::from(t), sig))
                    .collect(),
                next,
                nsec3,
            })
            .collect::<Vec<_>>();
        (signed.len() == statics.names.len()).then_some(signed)
    }
}

/// The RRsets at `name` that are signed once and stored: the zone file's, and at the apex
/// the DNSKEY and NSEC3PARAM RRsets.
pub fn stored_rrsets(zone: &Zone, signer: &Signer, name: &Name) -> Vec<Vec<Record>> {
    let lower = LowerName::new(name);
    let mut rrsets: Vec<Vec<Record>> = zone.rrsets_at(&lower).map(<[Record]>::to_vec).collect();
    if name == zone.origin() {
        rrsets.push(signer.dnskey_records(dnskey_ttl(zone)));
        rrsets.push(vec![nsec3::param_record(zone.origin())]);
    }
    rrsets
}

/// The TTL of the DNSKEY RRset: the SOA's.
pub fn dnskey_ttl(zone: &Zone) -> u32 {
    zone.soa_record(0).ttl
}

/// Signs a static name's stored RRsets.
pub fn sign_rrsets(
    zone: &Zone,
    signer: &Signer,
    name: &Name,
    now: u64,
) -> Result<Vec<(RecordType, Sig)>, SignError> {
    stored_rrsets(zone, signer, name)
        .iter()
        .filter(|set| !set.is_empty())
        .map(|set| Ok((set[0].record_type(), signer.sign(set, now)?)))
        .collect()
}
